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

This module parses and validates it into a :class:`WebConfig`. Unknown keys are errors, as in
exporter-toolkit: a misspelt ``client_auth_type`` must not silently leave a port open.

:class:`~census_exporter.web_config_reload.WebConfigSource` re-reads the file, and the certificate files it
names, when any of them changes, so certificates and users rotate without a restart;
:class:`~census_exporter.basic_auth.BasicAuth` checks credentials against its users.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from census_exporter.config import FileTooLargeError, read_small_file

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
#: A whole bcrypt hash: a truncated one (a file cut short mid-line) is an error, not a user who cannot log in.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
MAX_WEB_CONFIG_BYTES = 1024 * 1024


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


def read_web_config(path: Path) -> bytes:
    """The file's bytes (at most 1 MiB); WebConfigError when it cannot be read."""
    try:
        return read_small_file(str(path), MAX_WEB_CONFIG_BYTES)
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        raise WebConfigError(f"web config {path}: cannot read: {reason}") from None
    except FileTooLargeError:
        raise WebConfigError(f"web config {path}: larger than {MAX_WEB_CONFIG_BYTES // 1024} KiB") from None


def load_web_config(path: str | Path) -> WebConfig:
    """Parse and validate the file, and build its SSLContext; raises WebConfigError naming the field."""
    path = Path(path)
    return parse_web_config(path, read_web_config(path))


def parse_web_config(path: Path, data: bytes) -> WebConfig:
    """Validate ``data``, the content of ``path`` (relative certificate paths are resolved against it)."""
    try:
        document = yaml.safe_load(data.decode("utf-8"))
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
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            raise WebConfigError(
                f"web config {path}: field {name}.{user}: expected a whole bcrypt hash ($2b$<cost>$ and 53 "
                "characters)"
            )
        users[user] = hashed.encode()
    return users


def bcrypt_cost(hashed: bytes) -> int:
    """The cost of a hash ``BCRYPT_HASH`` accepted (``$2b$12$...`` -> 12)."""
    return int(hashed[4:6])
