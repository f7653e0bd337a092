"""Fixtures for every test folder; plain helpers live in tests/support.py."""

from __future__ import annotations

import pytest
from support import require_binary


@pytest.fixture
def promtool() -> str:
    return require_binary("promtool")


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the current output")
