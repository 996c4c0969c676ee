"""The ``--web.config.file``: TLS and basic auth in the Prometheus exporter-toolkit format.

The file is YAML with two sections, both optional::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to the file itself
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12              # the default; TLS13 refuses older clients
    basic_auth_users:
      prometheus: $2b$12$...          # bcrypt hashes, never plain passwords

:class:`WebConfigSource` re-reads the file, and the certificate files it names, when any of them changes,
so certificates and users rotate without a restart. Unknown keys are errors, as in exporter-toolkit:
a misspelt ``client_auth_type`` must not silently leave a port open.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from cachetools import LRUCache

log = logging.getLogger(__name__)

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's client_auth_type values. Python's ssl module verifies every client certificate it asks
# for, so "RequestClientCert" (ask, never verify, never require) grants what NoClientCert grants, and
# "RequireAnyClientCert" (require, never verify) cannot be offered honestly.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED_CLIENT_AUTH_TYPES = {"RequireAnyClientCert"}
TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
TOP_LEVEL_KEYS = {"tls_server_config", "basic_auth_users"}
BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
VERIFIED_CREDENTIALS_CACHE_SIZE = 256


class WebConfigError(Exception):
    """The web config file is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class TLSSettings:
    """The ``tls_server_config`` section, with paths resolved against the config file's directory."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the TLS context is built from (watched for rotation)."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)

    def context(self) -> ssl.SSLContext:
        """A server SSLContext; raises OSError or ssl.SSLError when a file is missing or invalid."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=str(self.client_ca_file))
        return context


@dataclass(frozen=True)
class WebConfig:
    """A validated web config: TLS (``None`` for plain HTTP) and basic-auth users (empty for none)."""

    tls: TLSSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)


def load_web_config(path: str | Path) -> WebConfig:
    """Parse and validate the file, and build its SSLContext; raises WebConfigError naming the field."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise WebConfigError(f"web config {path}: cannot read: {error.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0]
        raise WebConfigError(f"web config {path}: not valid YAML: {reason}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise WebConfigError(f"web config {path}: expected a mapping at the top level")
    _reject_unknown(path, "", document, TOP_LEVEL_KEYS)
    tls = _tls_settings(path, document.get("tls_server_config"))
    users = _users(path, document.get("basic_auth_users"))
    context = None
    if tls is not None:
        try:
            context = tls.context()
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
            raise WebConfigError(
                f"web config {path}: tls_server_config: cannot load the certificate, key or CA: {reason}"
            ) from None
    return WebConfig(tls=tls, users=users, ssl_context=context)


def _reject_unknown(path: Path, section: str, mapping: dict[Any, Any], known: set[str]) -> None:
    for key in mapping:
        if key not in known:
            where = f"{section}.{key}" if section else str(key)
            raise WebConfigError(f"web config {path}: field {where}: unknown (supported: {sorted(known)})")


def _tls_settings(path: Path, section: Any) -> TLSSettings | None:
    if section is None:
        return None
    name = "tls_server_config"
    if not isinstance(section, dict):
        raise WebConfigError(f"web config {path}: field {name}: expected a mapping")
    _reject_unknown(path, name, section, TLS_KEYS)
    for key, value in section.items():
        if not isinstance(value, str) or not value:
            raise WebConfigError(f"web config {path}: field {name}.{key}: expected a non-empty string")
    for required in ("cert_file", "key_file"):
        if required not in section:
            raise WebConfigError(f"web config {path}: field {name}.{required}: required")
    auth = section.get("client_auth_type", "NoClientCert")
    if auth in UNSUPPORTED_CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"web config {path}: field {name}.client_auth_type: {auth} is not supported "
            "(client certificates are always verified; use RequireAndVerifyClientCert)"
        )
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"web config {path}: field {name}.client_auth_type: unknown value {auth!r} "
            f"(one of {sorted(CLIENT_AUTH_TYPES | dict.fromkeys(UNSUPPORTED_CLIENT_AUTH_TYPES))})"
        )
    verifies = CLIENT_AUTH_TYPES[auth] != ssl.CERT_NONE
    if verifies and "client_ca_file" not in section:
        raise WebConfigError(f"web config {path}: field {name}.client_ca_file: required by {auth}")
    for key in ("min_version", "max_version"):
        if key in section and section[key] not in TLS_VERSIONS:
            raise WebConfigError(
                f"web config {path}: field {name}.{key}: unknown value {section[key]!r} "
                f"(one of {sorted(TLS_VERSIONS)})"
            )
    base = path.parent
    min_version = section.get("min_version", "TLS12")
    max_version = section.get("max_version")
    if max_version and TLS_VERSIONS[max_version] < TLS_VERSIONS[min_version]:
        raise WebConfigError(f"web config {path}: field {name}.max_version: lower than min_version")
    return TLSSettings(
        cert_file=base / section["cert_file"],
        key_file=base / section["key_file"],
        client_auth_type=auth,
        client_ca_file=base / section["client_ca_file"] if verifies else None,
        min_version=min_version,
        max_version=max_version,
    )


def _users(path: Path, section: Any) -> dict[str, bytes]:
    if section is None:
        return {}
    name = "basic_auth_users"
    if not isinstance(section, dict):
        raise WebConfigError(f"web config {path}: field {name}: expected a mapping of user to bcrypt hash")
    users = {}
    for user, hashed in section.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"web config {path}: field {name}: user {user!r} is not a valid name")
        if not isinstance(hashed, str) or not hashed.encode().startswith(BCRYPT_PREFIXES):
            raise WebConfigError(f"web config {path}: field {name}.{user}: expected a bcrypt hash ($2b$...)")
        users[user] = hashed.encode()
    return users


class WebConfigSource:
    """The current web config, re-read when the file or a certificate file it names changes.

    A change that does not validate is logged once and the previous config stays in force, so a
    half-written rotation never turns TLS or authentication off.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._config = load_web_config(self.path)
        self._stamp = self._files_stamp(self._config)
        self._failed_stamp: tuple[tuple[int, int, int], ...] | None = None

    def current(self) -> WebConfig:
        """The config in force now (cheap: a few stat() calls when nothing changed)."""
        with self._lock:
            stamp = self._files_stamp(self._config)
            if stamp not in (self._stamp, self._failed_stamp):
                try:
                    config = load_web_config(self.path)
                except WebConfigError as error:
                    self._failed_stamp = stamp
                    log.error("%s; keeping the previous web config", error)
                else:
                    self._config, self._failed_stamp = config, None
                    self._stamp = self._files_stamp(config)
                    log.info("web config %s reloaded", self.path)
            return self._config

    def _files_stamp(self, config: WebConfig) -> tuple[tuple[int, int, int], ...]:
        files = (self.path, *(config.tls.files if config.tls else ()))
        return tuple(_stamp(p) for p in files)


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, each credential once.

    bcrypt is deliberately slow (tens of milliseconds); a scrape every few seconds must not pay it every
    time, so a verified credential is remembered by a SHA-256 of user, password and stored hash (never the
    password itself) in a bounded LRU cache. A changed hash therefore never matches an old entry.
    """

    def __init__(self) -> None:
        self._verified: LRUCache[bytes, bool] = LRUCache(maxsize=VERIFIED_CREDENTIALS_CACHE_SIZE)
        self._lock = threading.Lock()

    def allows(self, users: dict[str, bytes], authorization: str | None) -> bool:
        """Whether the header carries a valid user and password for ``users``."""
        credentials = _decode_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        stored = users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password, stored or b""))).digest()
        with self._lock:
            if stored is not None and key in self._verified:
                return True
        if not users:
            return False
        # An unknown user is checked against some real hash (and fails), so it costs what a wrong password
        # costs and timing does not tell which user names exist.
        try:
            valid = bcrypt.checkpw(password, stored or next(iter(users.values())))
        except ValueError:
            valid = False
        if valid and stored is not None:
            with self._lock:
                self._verified[key] = True
            return True
        return False


def _decode_basic(authorization: str | None) -> tuple[str, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
