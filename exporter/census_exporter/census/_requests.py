"""One GET against the Census API, from token to parsed envelope: the transport layer of the client.

Every attempt first waits for its token of the process's :class:`~census_exporter.census.budget.RequestBudget`
(one that cannot get it before the deadline is not sent), is bounded as a whole, body included, by the
request timeout and the caller's deadline, and its body by ``max_response_bytes`` (the streaming reader
lives in :mod:`census_exporter.census._body`, the wall-clock bound of every socket operation in
:mod:`census_exporter.census._transport`). Transient failures are retried with backoff; every attempt is
reported to a :class:`RequestObserver`. It knows nothing of endpoints, dialects or paging: the client and
:mod:`census_exporter.census.listing` build on :meth:`Requester.get`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from census_exporter import __version__, defaults
from census_exporter.census._body import (
    ACCEPTED_ENCODINGS,
    BODY_READ_INTERVAL_SECONDS,
    BodyStalled,
    BodyTimedOut,
    BodyTooLarge,
    BodyUndecodable,
    read_bounded_body,
)
from census_exporter.census._transport import DeadlineTransport, request_deadline
from census_exporter.census.budget import RequestBudget
from census_exporter.census.errors import (
    AuthError,
    CensusAPIError,
    ForbiddenError,
    MalformedResponseError,
    NotFoundError,
    ResponseTooLargeError,
    TransientError,
)

#: The client's log lines keep the logger name they had before the client was split into layers.
log = logging.getLogger("census_exporter.census.client")

DEFAULT_MAX_RESPONSE_BYTES = defaults.MAX_RESPONSE_BYTES
"""Largest response body accepted, after decompression: a page of 100 syncs is a few hundred KB."""

MAX_JSON_CONTAINERS = 200_000
"""Most JSON objects and arrays one response may hold, counted (as an upper bound) before it is parsed.

The byte limit alone does not bound memory: each ``{}`` of 3 bytes becomes a dict of about 60, so 16 MiB of
them parse to hundreds of MB. 200,000 allows 2,000 per sync on a page of 100 and caps such a response at about
15 MB of parsed containers.
"""

LONGEST_INTEGER_DIGITS = 30
"""Integers in a response with more characters than this parse as ``inf``, which the models reject as out of
range: Python refuses to parse integers of more than 4,300 digits, and one such value must not sink the
whole response."""

PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))
_NOT_PRINTABLE_ASCII_MESSAGE = "the API token contains characters that are not printable ASCII"


_DEFAULT_PORTS = {"http": 80, "https": 443}

_NO_URL_AUTH = httpx.Auth()
"""Passed as ``auth`` on every request: without it httpx turns ``user:password@`` in a URL into Basic auth."""


class RequestObserver(Protocol):
    """Receives one call per HTTP attempt; the self-metrics implement it."""

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        """Record an attempt at ``endpoint`` (a template) that ended with ``code`` after ``seconds``."""


class _NoObserver:
    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; ``Retry-After`` is honoured up to a cap."""

    max_attempts: int = 4
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 8.0
    max_retry_after_seconds: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``None`` when unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        # str.isdigit() also accepts digits such as "²" that float() refuses: only ASCII digits are seconds.
        return float(value) if value.isascii() else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, moment.timestamp() - now)


class Requester:
    """Sends the GETs of one client: one pooled httpx client, its retries, budget, timeouts and observer."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        request_timeout: float,
        retry: RetryPolicy | None,
        observer: RequestObserver | None,
        max_connections: int,
        max_response_bytes: int,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], object],
        clock: Callable[[], float],
        rng: random.Random | None,
        budget: RequestBudget | None,
    ) -> None:
        self._token = token
        self._request_timeout = request_timeout
        self._max_response_bytes = max_response_bytes
        self._retry = retry or RetryPolicy()
        #: Shared by every client of the process; None: no limit.
        self._budget = budget
        self._observer: RequestObserver = observer or _NoObserver()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers={
                "Accept": "application/json",
                "Accept-Encoding": ACCEPTED_ENCODINGS,
                "User-Agent": f"census-exporter/{__version__}",
            },
            limits=limits,
            transport=transport or DeadlineTransport(limits),
            follow_redirects=False,
        )
        self._hostname = self._http.base_url.host
        host = f"[{self._hostname}]" if ":" in self._hostname else self._hostname
        self._host = f"{host}:{self._http.base_url.port or _DEFAULT_PORTS[self._http.base_url.scheme]}"

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def get(
        self,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        deadline: float,
    ) -> Mapping[str, Any]:
        """The JSON envelope at ``path``, retried while transient; ``endpoint`` is its template for errors."""
        attempt = 0
        while True:
            attempt += 1
            remaining = self._remaining_after_budget(endpoint, deadline)
            try:
                reply = self._attempt(path, endpoint, params, min(self._request_timeout, remaining))
            except TransientError as error:
                failure: TransientError = error
                retry_after = None
            else:
                status = reply.status
                if reply.body is not None:
                    envelope = _parse_envelope(reply.body)
                    # The error below must not keep the body alive through this frame's traceback.
                    del reply
                    if isinstance(envelope, str):
                        raise MalformedResponseError(endpoint, envelope)
                    return envelope
                if status == 403:
                    raise ForbiddenError(endpoint, f"Census API rejected the token ({status})", status)
                if status == 401:
                    raise AuthError(endpoint, f"Census API rejected the token ({status})", status)
                if status == 404:
                    raise NotFoundError(endpoint, "not found (404)", status)
                if status != 429 and status < 500:
                    raise CensusAPIError(endpoint, f"unexpected HTTP {status}", status)
                failure = TransientError(endpoint, f"HTTP {status}", status)
                retry_after = parse_retry_after(reply.retry_after, time.time())
            if attempt >= self._retry.max_attempts:
                raise TransientError(endpoint, f"{failure.detail} after {attempt} attempts", failure.status)
            delay = self._retry.backoff(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self._retry.max_retry_after_seconds))
            if self._clock() + delay >= deadline:
                raise TransientError(endpoint, f"{failure.detail}; no time left to retry", failure.status)
            self._sleep(delay)

    def _remaining_after_budget(self, endpoint: str, deadline: float) -> float:
        """Wait for this attempt's token of the request budget; the time then left before ``deadline``.

        An attempt that cannot get its token before the deadline is not sent: it fails like a timeout.
        """
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise TransientError(endpoint, "refresh deadline reached before the request")
        if self._budget is None:
            return remaining
        wait = self._budget.reserve(remaining)
        if wait is None:
            limit = f"{self._budget.requests_per_second:g}"
            raise TransientError(endpoint, f"request budget ({limit}/s) has no room before the deadline")
        if wait > 0:
            if self._sleep(wait) is True:  # ``stopping.wait``: the exporter is closing
                raise TransientError(endpoint, "stopped while waiting for the request budget")
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TransientError(endpoint, "refresh deadline reached waiting for the request budget")
        return remaining

    def _attempt(
        self,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        bound: float,
    ) -> _Reply:
        """One HTTP attempt, body included, ended by the clock ``bound`` seconds after it starts.

        Errors are raised outside ``except`` blocks on purpose: an exception's context keeps the frames of
        its traceback alive, and those frames hold the body being read.
        """
        token_failure: AuthError | None = None
        try:
            token = self._token()
        except Exception as error:  # noqa: BLE001 - any token-source failure means "no credentials"
            token_failure = AuthError(endpoint, f"no usable API token: {error}")
        if token_failure is None and not PRINTABLE_ASCII.issuperset(token):
            # An HTTP header cannot carry it, and httpx's encoding error would quote its characters.
            token_failure = AuthError(endpoint, _NOT_PRINTABLE_ASCII_MESSAGE)
        if token_failure is not None:
            raise token_failure
        started = self._clock()
        outcome = "connection_error"
        failure: TransientError | None = None
        try:
            reply, body_problem = self._exchange(path, params, token, started + bound)
        except httpx.TimeoutException as error:
            outcome = "timeout"
            failure = TransientError(endpoint, self._timeout_detail(error, bound))
        except httpx.TransportError as error:
            failure = TransientError(endpoint, self._connection_detail(error))
        else:
            timed_out = body_problem in (BodyTimedOut, BodyStalled)
            outcome = "timeout" if timed_out else str(reply.status)
        finally:
            elapsed = self._clock() - started
            self._observer.observe(endpoint, outcome, elapsed)
            log.debug("GET %s: %s in %.0f ms", endpoint, outcome, elapsed * 1000)
        if failure is not None:
            raise failure
        if body_problem is BodyTooLarge:
            limit = _size(self._max_response_bytes)
            raise ResponseTooLargeError(endpoint, f"response larger than {limit} limit", reply.status)
        if body_problem is BodyUndecodable:
            raise MalformedResponseError(endpoint, "response body could not be decompressed", reply.status)
        if body_problem is BodyTimedOut:
            raise TransientError(endpoint, f"timed out after {bound:.1f}s (body still arriving)")
        if body_problem is BodyStalled:
            silence = f"{BODY_READ_INTERVAL_SECONDS:.1f}s"
            raise TransientError(endpoint, f"body stalled: no data for {silence} while it was arriving")
        return reply

    def _exchange(
        self, path: str, params: Mapping[str, str | int] | None, token: str, ends_at: float
    ) -> tuple[_Reply, type[Exception] | None]:
        """Send the request and, for a success, read its body; the second value names a body problem."""
        headers = {"Authorization": f"Bearer {token}"}
        timeout = max(0.001, ends_at - self._clock())
        with (
            request_deadline(time.monotonic() + timeout),
            self._http.stream(
                "GET", path, params=params, headers=headers, timeout=timeout, auth=_NO_URL_AUTH
            ) as response,
        ):
            if not 200 <= response.status_code < 300:
                return _Reply(response.status_code, response.headers.get("Retry-After"), None), None
            try:
                body = read_bounded_body(
                    response, limit=self._max_response_bytes, ends_at=ends_at, clock=self._clock
                )
            except (BodyTooLarge, BodyUndecodable, BodyStalled, BodyTimedOut) as problem:
                return _Reply(response.status_code, None, None), type(problem)
            return _Reply(response.status_code, None, body), None

    def _timeout_detail(self, error: httpx.TimeoutException, bound: float) -> str:
        if isinstance(error, httpx.ConnectTimeout):
            return f"timed out connecting to {self._host}"
        if isinstance(error, httpx.PoolTimeout):
            return f"timed out waiting for a free connection to {self._host}"
        return f"timed out after {bound:.1f}s"

    def _connection_detail(self, error: httpx.TransportError) -> str:
        """Where and why a connection failed, from the OS-level cause httpx chains beneath its error.

        Only the configured host and port are named: the error's own message may quote the request URL.
        """
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, socket.gaierror):
                return f"DNS lookup failed for {self._hostname}"
            if isinstance(cause, ConnectionRefusedError):
                return f"connection refused by {self._host}"
            if isinstance(cause, ssl.SSLError):
                reason = cause.reason or type(cause).__name__
                return f"TLS handshake with {self._host} failed: {reason}"
            cause = cause.__cause__ or cause.__context__
        return f"connection to {self._host} failed ({type(error).__name__})"


@dataclass(frozen=True, slots=True)
class _Reply:
    """What one attempt produced: the status, ``Retry-After``, and the body of a success."""

    status: int
    retry_after: str | None
    body: bytearray | None


def _parse_envelope(raw: bytearray) -> Mapping[str, Any] | str:
    """The JSON object in ``raw``, or why there is none.

    The caller raises, from a frame that no longer holds the body: a JSON error carries the whole document,
    and a traceback keeps every frame's locals alive for as long as the error is kept.
    """
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_CONTAINERS:
        return f"response has too many JSON objects (more than {MAX_JSON_CONTAINERS:,})"
    try:
        body = json.loads(raw, parse_int=_parse_int)
    except RecursionError:
        return "response is not JSON (nested too deeply)"
    except ValueError:
        return "response is not JSON"
    if not isinstance(body, Mapping):
        return "response is not a JSON object"
    return body


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= LONGEST_INTEGER_DIGITS else float("inf")


def _size(limit: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"
