"""The web config in force, read again when it or a certificate it names changes; never weakened at once.

A reload never weakens what is in force at once: a file that does not parse, or is empty, keeps the
running config (a rewrite in place passes through both states), and one that drops basic auth or TLS,
or relaxes the client-certificate requirement or the minimum TLS version (:func:`weakenings`), is applied
only after the same content has been read again after a settle period (``--web.config.settle-period``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from census_exporter.web_config import (
    TLS_VERSIONS,
    WebConfig,
    WebConfigError,
    bcrypt_cost,
    load_web_config,
    parse_web_config,
    read_web_config,
)

# The name the web config has always logged under (logfmt and json print it).
log = logging.getLogger("census_exporter.web_config")

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


def weakenings(running: WebConfig, new: WebConfig) -> list[str]:
    """What ``new`` gives up of the ``running`` config's protection (empty when it keeps all of it).

    Removing some users, adding users, new passwords and rotated certificates are not weakenings:
    they are how an administrator rotates, and a file cut short can only drop users, never add one.
    """
    found = []
    if running.users and not new.users:
        found.append("drops basic auth")
    if running.tls is not None and new.tls is None:
        found.append("drops TLS")
    if running.tls is not None and new.tls is not None:
        old_auth, new_auth = running.tls.client_auth_type, new.tls.client_auth_type
        if CLIENT_AUTH_STRENGTH[new_auth] < CLIENT_AUTH_STRENGTH[old_auth]:
            found.append(f"relaxes client_auth_type from {old_auth} to {new_auth}")
        if TLS_VERSIONS[new.tls.min_version] < TLS_VERSIONS[running.tls.min_version]:
            found.append(f"lowers min_version from {running.tls.min_version} to {new.tls.min_version}")
    return found


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
    distinct problem. A valid file that weakens it (:func:`weakenings`) is applied only when the
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
        reasons = weakenings(self._config, config)
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


def _warn_mixed_costs(path: Path, config: WebConfig) -> None:
    costs = sorted({bcrypt_cost(hashed) for hashed in config.users.values()})
    if len(costs) > 1:
        log.warning(
            "web config %s: basic_auth_users have different bcrypt costs (%s): a wrong password for a user "
            "with a lower cost fails faster than one for an unknown user, which tells user names apart; "
            "hash every password at the same cost",
            path,
            ", ".join(map(str, costs)),
        )
