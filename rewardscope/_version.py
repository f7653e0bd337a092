"""The package version, in one place: pyproject.toml reads it from here, and so does every module."""

__version__ = "0.1.0"
