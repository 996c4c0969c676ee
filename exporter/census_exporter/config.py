"""Config: the validated settings of one exporter process, and the API token source."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from census_exporter.logs import RedactingFilter
from census_exporter.state import DEFAULT_DURATION_BUCKETS


class TokenError(Exception):
    """The token cannot be read; the message never contains the token."""


class TokenSource:
    """The Census API token, from a value or from a file re-read when it changes (secret rotation).

    ``repr()`` never shows the token, so a Config can be logged or appear in a traceback safely.
    """

    def __init__(self, value: str | None = None, path: str | None = None) -> None:
        self._value = _clean(value) if value is not None else None
        self._path = path
        self._file_stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        if self._value:
            RedactingFilter.register(self._value)

    def __repr__(self) -> str:
        where = f"file {self._path!r}" if self._path else "environment"
        return f"TokenSource({where})"

    @property
    def path(self) -> str | None:
        """The token file, if the token comes from one."""
        return self._path

    def __call__(self) -> str:
        """The current token; a changed file is read again."""
        if self._path is None:
            return self._value or ""
        with self._lock:
            try:
                info = os.stat(self._path)
            except OSError as error:
                if self._value is not None:
                    return self._value
                raise TokenError(f"cannot read token file {self._path!r}: {error.strerror}") from None
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if stamp != self._file_stamp or self._value is None:
                try:
                    with open(self._path, encoding="utf-8") as handle:
                        token = _clean(handle.read())
                except (OSError, UnicodeDecodeError) as error:
                    raise TokenError(f"cannot read token file {self._path!r}: {error}") from None
                self._file_stamp = stamp
                self._value = token
                RedactingFilter.register(token)
            return self._value


def _clean(token: str) -> str:
    token = token.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in token):
        raise TokenError("the token contains control characters")
    return token


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the CLI parsed and validated."""

    api_url: str
    token: TokenSource
    workspace: str = "default"
    cache_ttl_seconds: float = 60.0
    concurrency: int = 8
    request_timeout_seconds: float = 10.0
    refresh_timeout_seconds: float = 60.0
    listen_host: str = ""
    listen_port: int = 10049
    telemetry_path: str = "/metrics"
    log_level: str = "info"
    log_format: str = "logfmt"
    duration_buckets: tuple[float, ...] = field(default=DEFAULT_DURATION_BUCKETS)
    demo: bool = False
    demo_seed: int | None = None
    demo_syncs: int = 25
    web_config_file: str | None = None
