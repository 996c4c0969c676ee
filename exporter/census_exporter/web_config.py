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

A reload never weakens what is in force at once: a file that does not parse, or is empty, keeps the
running config (a rewrite in place passes through both states), and one that drops basic auth or TLS,
or relaxes the client-certificate requirement or the minimum TLS version, is applied only after the
same content has been read again after a settle period (``--web.config.settle-period``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from cachetools import TTLCache
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from census_exporter.config import FileTooLargeError, read_small_file

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
#: A whole bcrypt hash: a truncated one (a file cut short mid-line) is an error, not a user who cannot log in.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
MAX_WEB_CONFIG_BYTES = 1024 * 1024
VERIFIED_CREDENTIALS_CACHE_SIZE = 256
#: How long a verified credential is trusted without bcrypt (a changed file forgets them all at once).
VERIFIED_CREDENTIALS_TTL_SECONDS = 900.0
#: bcrypt checks running at once; more are answered 429 at once, so a wrong-password flood costs at most
#: this many cores and leaves the server's workers to scrapes whose credentials are cached.
MAX_CONCURRENT_PASSWORD_CHECKS = 2
DEFAULT_SETTLE_SECONDS = 30.0
#: While a weakening change waits, the file is read again at least this often (not only when stat() changes).
PENDING_RECHECK_SECONDS = 1.0
#: Distinct problems logged before the next successful reload (each once).
MAX_LOGGED_PROBLEMS = 64
#: client_auth_type from weakest to strongest.
CLIENT_AUTH_STRENGTH = {
    "NoClientCert": 0,
    "RequestClientCert": 0,
    "VerifyClientCertIfGiven": 1,
    "RequireAndVerifyClientCert": 2,
}


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

    def weakenings(self, new: WebConfig) -> list[str]:
        """What ``new`` gives up of this config's protection (empty when it keeps all of it).

        Removing some users, adding users, new passwords and rotated certificates are not weakenings:
        they are how an administrator rotates, and a file cut short can only drop users, never add one.
        """
        found = []
        if self.users and not new.users:
            found.append("drops basic auth")
        if self.tls is not None and new.tls is None:
            found.append("drops TLS")
        if self.tls is not None and new.tls is not None:
            old_auth, new_auth = self.tls.client_auth_type, new.tls.client_auth_type
            if CLIENT_AUTH_STRENGTH[new_auth] < CLIENT_AUTH_STRENGTH[old_auth]:
                found.append(f"relaxes client_auth_type from {old_auth} to {new_auth}")
            if TLS_VERSIONS[new.tls.min_version] < TLS_VERSIONS[self.tls.min_version]:
                found.append(f"lowers min_version from {self.tls.min_version} to {new.tls.min_version}")
        return found


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


ReloadResult = Literal["applied", "rejected", "weakening_deferred", "weakening_applied"]
RELOAD_RESULTS: tuple[ReloadResult, ...] = ("applied", "rejected", "weakening_deferred", "weakening_applied")


@dataclass
class _Pending:
    """A valid change that weakens the config in force, waiting to be read unchanged after settling."""

    digest: bytes
    reasons: list[str]
    since: float
    checked: float


class WebConfigSource:
    """The current web config, re-read when the file or a certificate file it names changes.

    A reload never weakens what is in force at once. A file that cannot be read, does not validate or is
    empty (a rewrite in place truncates it first) keeps the running config, logged at warning once per
    distinct problem. A valid file that weakens it (:meth:`WebConfig.weakenings`) is applied only when the
    same bytes are read again ``settle_seconds`` after they were first seen; until then the running
    config stays and :attr:`weakening_pending` is true. Every outcome is counted in :attr:`reloads`.
    """

    def __init__(
        self,
        path: str | Path,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._config = load_web_config(self.path)
        self._stamp = self._files_stamp(self._config)
        self._pending: _Pending | None = None
        self._logged: set[str] = set()
        #: Bumped whenever a config is put in force: caches derived from the old one must be dropped.
        self.generation = 0
        self.reloads: dict[ReloadResult, int] = dict.fromkeys(RELOAD_RESULTS, 0)
        _warn_mixed_costs(self.path, self._config)

    @property
    def weakening_pending(self) -> bool:
        """Whether a weakening change is waiting for its settle period."""
        return self._pending is not None

    def current(self) -> WebConfig:
        """The config in force now (cheap: a few stat() calls when nothing changed)."""
        with self._lock:
            stamp = self._files_stamp(self._config)
            pending = self._pending
            due = pending is not None and self._clock() >= min(
                pending.checked + PENDING_RECHECK_SECONDS, pending.since + self.settle_seconds
            )
            if stamp != self._stamp or due:
                self._examine(stamp)
            return self._config

    def reload(self) -> WebConfig:
        """Read the file now, changed or not (SIGHUP), under the same rules as a change seen by stat()."""
        with self._lock:
            self._examine(self._files_stamp(self._config))
            return self._config

    def _examine(self, stamp: tuple[tuple[int, int, int], ...]) -> None:
        self._stamp = stamp
        now = self._clock()
        try:
            data = read_web_config(self.path)
            if not data.strip():
                raise WebConfigError(f"web config {self.path}: is empty")
            config = parse_web_config(self.path, data)
        except WebConfigError as error:
            self._pending = None
            self.reloads["rejected"] += 1
            self._log_once(f"{error}; keeping the running web config")
            return
        reasons = self._config.weakenings(config)
        if not reasons:
            self._put_in_force(config, "applied")
            log.info("web config %s reloaded", self.path)
            return
        digest = hashlib.sha256(data).digest()
        pending = self._pending
        if pending is None or pending.digest != digest:
            self._pending = _Pending(digest, reasons, since=now, checked=now)
            self.reloads["weakening_deferred"] += 1
            self._log_once(
                f"web config {self.path}: the new file {' and '.join(reasons)}; keeping the running web "
                f"config until the file has been unchanged for {self.settle_seconds:g}s"
            )
            return
        pending.checked = now
        if now - pending.since >= self.settle_seconds:
            self._put_in_force(config, "weakening_applied")
            log.warning(
                "web config %s: applied after %gs unchanged, although it %s",
                self.path,
                self.settle_seconds,
                " and ".join(reasons),
            )

    def _put_in_force(self, config: WebConfig, result: ReloadResult) -> None:
        self._config, self._pending = config, None
        self._stamp = self._files_stamp(config)
        self._logged.clear()
        self.generation += 1
        self.reloads[result] += 1
        _warn_mixed_costs(self.path, config)

    def _log_once(self, message: str) -> None:
        if message in self._logged:
            return
        if len(self._logged) >= MAX_LOGGED_PROBLEMS:
            self._logged.clear()
        self._logged.add(message)
        log.warning("%s", message)

    def _files_stamp(self, config: WebConfig) -> tuple[tuple[int, int, int], ...]:
        files = (self.path, *(config.tls.files if config.tls else ()))
        return tuple(_stamp(p) for p in files)


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _cost(hashed: bytes) -> int:
    return int(hashed[4:6])


def _warn_mixed_costs(path: Path, config: WebConfig) -> None:
    costs = sorted({_cost(hashed) for hashed in config.users.values()})
    if len(costs) > 1:
        log.warning(
            "web config %s: basic_auth_users have different bcrypt costs (%s): a wrong password for a user "
            "with a lower cost fails faster than one for an unknown user, which tells user names apart; "
            "hash every password at the same cost",
            path,
            ", ".join(map(str, costs)),
        )


AuthResult = Literal["allowed", "denied", "busy"]
CHECK_RESULTS = ("cached", "verified", "failed", "busy", "missing")


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, each credential once in a while.

    bcrypt is deliberately slow (tens to hundreds of milliseconds); a scrape every few seconds must not
    pay it every time, so a verified credential is remembered for :data:`VERIFIED_CREDENTIALS_TTL_SECONDS`
    by an HMAC (with a key made at start, never stored) of user, password and stored hash, never the
    password itself, in a bounded cache that is emptied whenever another web config is put in force.

    Every other check costs exactly one bcrypt verification: an unknown user's against a dummy hash at
    the highest cost among the configured users, so a failure takes as long whether the user exists or
    not. At most :data:`MAX_CONCURRENT_PASSWORD_CHECKS` run at once; a check beyond that is answered
    ``busy`` without hashing, so a flood of wrong passwords cannot take every core or every worker.
    """

    def __init__(self, max_concurrent: int = MAX_CONCURRENT_PASSWORD_CHECKS) -> None:
        self._verified: TTLCache[bytes, bool] = TTLCache(
            maxsize=VERIFIED_CREDENTIALS_CACHE_SIZE, ttl=VERIFIED_CREDENTIALS_TTL_SECONDS
        )
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._generation: int | None = None
        self._dummies: dict[int, bytes] = {}
        #: Outcomes by result (see :data:`CHECK_RESULTS`) and bcrypt verifications run.
        self.checks: dict[str, int] = dict.fromkeys(CHECK_RESULTS, 0)
        self.verifications = 0

    def check(self, users: dict[str, bytes], authorization: str | None, generation: int = 0) -> AuthResult:
        """Whether the header carries a valid user and password for ``users`` (``busy``: not checked).

        ``generation`` identifies the config ``users`` came from: when it changes the cache is emptied.
        """
        credentials = _decode_basic(authorization)
        if credentials is None or not users:
            self._count("missing")
            return "denied"
        user, password = credentials
        stored = users.get(user)
        key = hmac.new(self._key, b"\0".join((user.encode(), password, stored or b"")), "sha256").digest()
        with self._lock:
            if generation != self._generation:
                self._verified.clear()
                self._generation = generation
            if stored is not None and key in self._verified:
                self.checks["cached"] += 1
                return "allowed"
        if not self._slots.acquire(blocking=False):
            self._count("busy")
            return "busy"
        try:
            with self._lock:
                self.verifications += 1
            try:
                valid = bcrypt.checkpw(password, stored or self._dummy(users))
            except ValueError:
                valid = False
        finally:
            self._slots.release()
        if valid and stored is not None:
            with self._lock:
                if generation == self._generation:
                    self._verified[key] = True
                self.checks["verified"] += 1
            return "allowed"
        self._count("failed")
        return "denied"

    def _count(self, result: str) -> None:
        with self._lock:
            self.checks[result] += 1

    def _dummy(self, users: dict[str, bytes]) -> bytes:
        """A hash no password matches, at the highest cost of ``users`` (checking it costs what theirs do)."""
        cost = max(_cost(hashed) for hashed in users.values())
        with self._lock:
            dummy = self._dummies.get(cost)
            if dummy is None:
                # A real salt at that cost and a digest part that no password produces: only the salt and
                # cost decide the work checkpw does.
                dummy = self._dummies[cost] = bcrypt.gensalt(rounds=cost) + b"." * 31
            return dummy


class WebSecurityCollector:
    """The web config's reloads and basic auth's checks, for the exporter's registry."""

    def __init__(self, source: WebConfigSource, basic_auth: BasicAuth) -> None:
        self._source = source
        self._basic_auth = basic_auth

    def collect(self) -> Iterator[Metric]:
        """The families as they are now."""
        reloads = CounterMetricFamily(
            "census_exporter_web_config_reloads",
            "Changes of the --web.config.file seen, by result: applied, rejected (unreadable, invalid or "
            "empty: the running config stays), weakening_deferred (drops protection: waits for the settle "
            "period), weakening_applied (such a change, unchanged for the settle period).",
            labels=["result"],
        )
        for result, count in self._source.reloads.items():
            reloads.add_metric([result], count)
        yield reloads
        yield GaugeMetricFamily(
            "census_exporter_web_config_weakening_pending",
            "1 while a web config change that drops basic auth or TLS (or relaxes TLS) waits for its settle "
            "period, else 0.",
            value=1 if self._source.weakening_pending else 0,
        )
        checks = CounterMetricFamily(
            "census_exporter_basic_auth_checks",
            "Requests checked against basic_auth_users, by result: cached (a credential verified recently), "
            "verified, failed (wrong password or unknown user), busy (refused 429: too many bcrypt checks in "
            "progress), missing (no or malformed credentials).",
            labels=["result"],
        )
        for outcome, count in self._basic_auth.checks.items():
            checks.add_metric([outcome], count)
        yield checks
        yield CounterMetricFamily(
            "census_exporter_basic_auth_password_verifications",
            "bcrypt verifications run (one per check not answered from the cache, busy or missing).",
            value=self._basic_auth.verifications,
        )


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
