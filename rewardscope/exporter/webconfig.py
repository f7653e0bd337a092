"""TLS and basic authentication for /metrics, from a web configuration file.

The file has the format of the Prometheus exporter-toolkit (what node_exporter reads
with ``--web.config.file``), so one file serves every exporter of a host::

    tls_server_config:
      cert_file: /etc/rewardscope/tls.crt
      key_file: /etc/rewardscope/tls.key
      client_auth_type: NoClientCert        # or RequireAndVerifyClientCert (with client_ca_file)
      client_ca_file: /etc/rewardscope/ca.crt
      min_version: TLS12                    # TLS10 .. TLS13
    basic_auth_users:
      prometheus: $2y$10$...                # bcrypt hash: htpasswd -nbB user password

Paths are relative to the file. Unknown keys are errors (a typo must not silently
turn authentication off). bcrypt checks are slow on purpose (~50-300 ms), so a
successful check is cached by a keyed digest of the credentials, as exporter-toolkit does.

Usage::

    config = WebConfig.load("web-config.yml")
    config.ssl_context()                    # None without tls_server_config
    config.authorized("Basic cHJvbWV0aGV1czpzZWNyZXQ=")
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
                "RequireAnyClientCert": ssl.CERT_OPTIONAL, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}


class WebConfigError(ValueError):
    """The web configuration file cannot be used; the message names the file and the key."""


@dataclass
class WebConfig:
    """TLS settings and bcrypt-hashed users; see the module docstring."""

    source: str
    tls: dict[str, str] = field(default_factory=dict)
    users: dict[str, bytes] = field(default_factory=dict)
    _cache_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    _verified: set[bytes] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WebConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise WebConfigError(f"cannot read web config {path}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise WebConfigError(f"web config {path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise WebConfigError(f"web config {path} must be a mapping")
        unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
        if unknown:
            raise WebConfigError(f"web config {path}: unknown key(s) {sorted(unknown)}")
        return cls(str(path), _tls_settings(path, data.get("tls_server_config")), _users(path, data.get("basic_auth_users")))

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side TLS context, or None when the file configures no TLS."""
        if not self.tls:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _VERSIONS[self.tls.get("min_version", "TLS12")]
        if "max_version" in self.tls:
            context.maximum_version = _VERSIONS[self.tls["max_version"]]
        try:
            context.load_cert_chain(self.tls["cert_file"], self.tls["key_file"])
            if "client_ca_file" in self.tls:
                context.load_verify_locations(self.tls["client_ca_file"])
        except (OSError, ssl.SSLError) as error:
            raise WebConfigError(f"web config {self.source}: cannot load the TLS certificate or key: {error}") from None
        context.verify_mode = _CLIENT_AUTH[self.tls.get("client_auth_type", "NoClientCert")]
        return context

    def authorized(self, header: str | None) -> bool:
        """True when no users are configured, or the Authorization header names one with the right password."""
        if not self.users:
            return True
        user, password = _basic_credentials(header)
        hashed = self.users.get(user or "")
        if user is None or password is None or hashed is None:
            return False
        digest = hmac.new(self._cache_key, user.encode() + b"\0" + password.encode() + b"\0" + hashed, hashlib.sha256).digest()
        with self._lock:
            if digest in self._verified:
                return True
        import bcrypt  # the `auth` extra; checked at load time

        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            if len(self._verified) > 1024:
                self._verified.clear()
            self._verified.add(digest)
        return True


def _tls_settings(path: Path, section: Any) -> dict[str, str]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise WebConfigError(f"web config {path}: tls_server_config must be a mapping")
    unknown = set(section) - _TLS_KEYS
    if unknown:
        raise WebConfigError(f"web config {path}: unknown tls_server_config key(s) {sorted(unknown)}")
    for key in ("cert_file", "key_file"):
        if not section.get(key):
            raise WebConfigError(f"web config {path}: tls_server_config needs {key}")
    settings = {k: str(v) for k, v in section.items() if v is not None}
    for key in ("cert_file", "key_file", "client_ca_file"):
        if key in settings:
            settings[key] = str((path.parent / settings[key]).resolve())
    if settings.get("client_auth_type", "NoClientCert") not in _CLIENT_AUTH:
        raise WebConfigError(f"web config {path}: client_auth_type must be one of {sorted(_CLIENT_AUTH)}")
    if settings.get("client_auth_type") == "RequireAndVerifyClientCert" and "client_ca_file" not in settings:
        raise WebConfigError(f"web config {path}: RequireAndVerifyClientCert needs client_ca_file")
    for key in ("min_version", "max_version"):
        if key in settings and settings[key] not in _VERSIONS:
            raise WebConfigError(f"web config {path}: {key} must be one of {sorted(_VERSIONS)}")
    return settings


def _users(path: Path, section: Any) -> dict[str, bytes]:
    if section is None:
        return {}
    if not isinstance(section, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in section.items()):
        raise WebConfigError(f"web config {path}: basic_auth_users must map user names to bcrypt hashes")
    for user, hashed in section.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"web config {path}: the password of {user!r} is not a bcrypt hash (htpasswd -nbB)")
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        raise WebConfigError(f"web config {path}: basic_auth_users needs the bcrypt package "
                             "(pip install 'rewardscope[auth]')") from None
    return {user: hashed.encode() for user, hashed in section.items()}


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)
