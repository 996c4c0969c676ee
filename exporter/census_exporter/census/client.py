"""CensusClient: HTTP only. Auth header, paging, retries with backoff, and per-request observations.

It returns the envelope's ``data`` as plain JSON for :mod:`census_exporter.census.models` to parse; it knows
nothing about metrics families, ledgers or snapshots. Errors are raised as :class:`CensusAPIError`
subclasses whose messages name the endpoint template and the status, never a URL with credentials and never
the token.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from census_exporter import __version__

MAX_LIST_PAGES = 1000
"""Safety bound on pages of one list: 100,000 syncs is far beyond any real workspace."""

US_API_URL = "https://app.getcensus.com/api/v1"
EU_API_URL = "https://app-eu.getcensus.com/api/v1"

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""Largest response body accepted, after decompression: a page of 100 syncs is a few hundred KB."""


class CensusAPIError(Exception):
    """A request that did not produce usable data. ``str()`` is one log-ready line."""

    def __init__(self, endpoint: str, detail: str, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        super().__init__(f"GET {endpoint}: {detail}")


class AuthError(CensusAPIError):
    """401 or 403: the token is wrong, expired or lacks access. Never retried."""


class NotFoundError(CensusAPIError):
    """404: the resource is gone (a deleted sync or run)."""


class MalformedResponseError(CensusAPIError):
    """The body was not the JSON envelope the API documents."""


class TransientError(CensusAPIError):
    """429, 5xx, timeout or connection failure that outlasted the retries or the deadline."""


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


@dataclass(frozen=True, slots=True)
class Listing:
    """Every record of a paged list, and whether it was read consistently from start to end.

    ``complete`` is False when the list visibly changed while its pages were read (records shifted between
    pages), so a record may be missing from ``items``: absence from such a listing proves nothing.
    """

    items: list[Any]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class RunsPage:
    """One page of a sync's runs, newest first, and whether an older page exists."""

    items: list[Any]
    has_more: bool


def validate_base_url(url: str) -> str:
    """``url`` if it can serve as the API base URL, else ValueError with a message safe to print.

    Credentials in the URL are refused: httpx would send them as Basic auth instead of the Bearer token,
    and an error message quoting the URL would print the password.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not contain credentials (user:password@); the token is sent as a header")
    return url


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``None`` when unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


class CensusClient:
    """A synchronous, thread-safe client for the Census Management API (v1)."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        request_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
        max_connections: int = 8,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._token = token
        self._request_timeout = request_timeout
        self._max_response_bytes = max_response_bytes
        self._retry = retry or RetryPolicy()
        self._observer: RequestObserver = observer or _NoObserver()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers={
                "Accept": "application/json",
                "User-Agent": f"census-exporter/{__version__}",
            },
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    # ------------------------------------------------------------------ endpoints

    def list_syncs(self, deadline: float) -> Listing:
        """Every sync in the workspace, across all pages."""
        return Listing(list(self._all_pages("syncs", "/syncs", deadline)))

    def list_sources(self, deadline: float) -> Listing:
        """Every source connection, across all pages."""
        return Listing(list(self._all_pages("sources", "/sources", deadline)))

    def list_destinations(self, deadline: float) -> Listing:
        """Every destination connection, across all pages."""
        return Listing(list(self._all_pages("destinations", "/destinations", deadline)))

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        """One page of a sync's runs, newest first."""
        body = self._get(
            f"syncs/{sync_id}/sync_runs",
            "/syncs/{id}/sync_runs",
            {"order": "desc", "page": page, "per_page": per_page},
            deadline,
        )
        items = _data_list(body, "/syncs/{id}/sync_runs")
        next_page = _next_page(body, page)
        has_more = next_page is not None if _has_paging_hint(body) else len(items) >= per_page
        return RunsPage(items=items, has_more=has_more and bool(items))

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        """One run by its global id."""
        body = self._get(f"sync_runs/{run_id}", "/sync_runs/{id}", None, deadline)
        if "data" not in body:
            raise MalformedResponseError("/sync_runs/{id}", "response has no 'data'")
        return body["data"]

    # ------------------------------------------------------------------ paging

    def _all_pages(self, path: str, endpoint: str, deadline: float) -> Iterator[Any]:
        page = 1
        seen_ids: set[object] = set()
        for _ in range(MAX_LIST_PAGES):
            body = self._get(path, endpoint, {"page": page, "per_page": 100}, deadline)
            items = _data_list(body, endpoint)
            for item in items:
                # Page-number paging over a list that changes while we read it can repeat a record.
                key = item.get("id") if isinstance(item, Mapping) else None
                if key is not None and key in seen_ids:
                    continue
                if key is not None:
                    seen_ids.add(key)
                yield item
            next_page = _next_page(body, page)
            if not items or next_page is None or next_page <= page:
                return
            page = next_page
        raise MalformedResponseError(endpoint, f"more than {MAX_LIST_PAGES} pages")

    # ------------------------------------------------------------------ transport

    def _get(
        self,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        deadline: float,
    ) -> Mapping[str, Any]:
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TransientError(endpoint, "refresh deadline reached before the request")
            try:
                response = self._attempt(path, endpoint, params, min(self._request_timeout, remaining))
            except TransientError as error:
                failure: TransientError = error
                retry_after = None
            else:
                status = response.status_code
                if status < 300:
                    return _decode_envelope(response, endpoint)
                if status in (401, 403):
                    raise AuthError(endpoint, f"Census API rejected the token ({status})", status)
                if status == 404:
                    raise NotFoundError(endpoint, "not found (404)", status)
                if status != 429 and status < 500:
                    raise CensusAPIError(endpoint, f"unexpected HTTP {status}", status)
                failure = TransientError(endpoint, f"HTTP {status}", status)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            if attempt >= self._retry.max_attempts:
                raise TransientError(endpoint, f"{failure.detail} after {attempt} attempts", failure.status)
            delay = self._retry.backoff(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self._retry.max_retry_after_seconds))
            if self._clock() + delay >= deadline:
                raise TransientError(endpoint, f"{failure.detail}; no time left to retry", failure.status)
            self._sleep(delay)

    def _attempt(
        self,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        timeout: float,
    ) -> httpx.Response:
        try:
            token = self._token()
        except Exception as error:  # noqa: BLE001 - any token-source failure means "no credentials"
            raise AuthError(endpoint, f"no usable API token: {error}") from None
        started = self._clock()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            response = self._http.get(path, params=params, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            self._observer.observe(endpoint, "timeout", self._clock() - started)
            raise TransientError(endpoint, f"timed out after {timeout:.1f}s") from None
        except httpx.TransportError as error:
            self._observer.observe(endpoint, "connection_error", self._clock() - started)
            # The class name says enough (ConnectError, ReadError...); the message may hold the URL.
            raise TransientError(endpoint, f"connection failed ({type(error).__name__})") from None
        self._observer.observe(endpoint, str(response.status_code), self._clock() - started)
        return response


def _decode_envelope(response: httpx.Response, endpoint: str) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise MalformedResponseError(endpoint, "response is not JSON") from None
    if not isinstance(body, Mapping):
        raise MalformedResponseError(endpoint, "response is not a JSON object")
    return body


def _data_list(body: Mapping[str, Any], endpoint: str) -> list[Any]:
    data = body.get("data")
    if not isinstance(data, list):
        raise MalformedResponseError(endpoint, "'data' is not a list")
    return data


def _has_paging_hint(body: Mapping[str, Any]) -> bool:
    pagination = body.get("pagination")
    if isinstance(pagination, Mapping) and ("next_page" in pagination or "last_page" in pagination):
        return True
    return _page_from_link(body.get("next")) is not None


def _next_page(body: Mapping[str, Any], page: int) -> int | None:
    """The next page number, from ``pagination`` (preferred) or the legacy ``next`` link.

    The link is never followed as a URL: it names the public host, which may differ from the configured
    one (a proxy, the simulator), and following it would send the token there. Only its page number is used.
    """
    pagination = body.get("pagination")
    if isinstance(pagination, Mapping):
        next_page = pagination.get("next_page")
        if isinstance(next_page, int) and not isinstance(next_page, bool):
            return next_page
        if "next_page" in pagination:
            return None
        last_page = pagination.get("last_page")
        if isinstance(last_page, int) and not isinstance(last_page, bool):
            return page + 1 if page < last_page else None
    return _page_from_link(body.get("next"))


def _page_from_link(link: object) -> int | None:
    if not isinstance(link, str) or not link:
        return None
    values = parse_qs(urlsplit(link).query).get("page")
    if not values or not values[0].isdigit():
        return None
    return int(values[0])
