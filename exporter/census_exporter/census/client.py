"""CensusClient: HTTP only. Auth header, paging, retries with backoff, and per-request observations.

It returns the envelope's ``data`` as plain JSON for :mod:`census_exporter.census.models` to parse; it knows
nothing about metrics families, ledgers or snapshots. Every attempt is bounded as a whole, body included, by
the request timeout and the caller's deadline, and every body by ``max_response_bytes`` (the streaming reader
lives in :mod:`census_exporter.census._body`, paging hints in :mod:`census_exporter.census._paging`). Given
the process's :class:`~census_exporter.census.budget.RequestBudget`, every attempt, retries included, first
waits for its token, and one that cannot get it before the deadline is not sent.
Errors are raised as :class:`CensusAPIError` subclasses whose messages name the endpoint template, the host
and the cause, never a URL with credentials or a query, and never the token.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import SplitResult, urlsplit

import httpx

from census_exporter import __version__, defaults
from census_exporter.census import _paging, _scope
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
from census_exporter.logs import RedactingFilter

log = logging.getLogger(__name__)

MAX_LIST_PAGES = 1000
"""Safety bound on pages of one list: 100,000 syncs is far beyond any real workspace."""

LIST_PAGE_SIZE = 100
"""Records asked for per page of a list (syncs, connections, workspaces)."""

MAX_LIST_REREADS = 2
"""Whole re-reads of a list that shifted while it was paged, before it is returned marked incomplete."""

US_API_URL = "https://app.getcensus.com/api/v1"
EU_API_URL = "https://app-eu.getcensus.com/api/v1"
US_API_V2_URL = "https://app.getcensus.com/api/v2"
EU_API_V2_URL = "https://app-eu.getcensus.com/api/v2"
"""UNCONFIRMED: Census has not said whether V2 is served on the EU host (docs/census-api-versions.md)."""

ApiVersion = Literal["v1", "v2"]
API_VERSIONS: tuple[ApiVersion, ...] = ("v1", "v2")

GROUP_PARAMETER = "group_id"
"""ASSUMED: the query parameter naming the Fivetran group on V2 list calls (the simulator assumes it too).
Sent while the API accepts it; whether it filters is never trusted: records are scoped by their own
``group_id`` too (:mod:`census_exporter.census._scope`)."""

REFUSED_PARAMETER_STATUSES = frozenset({400, 422})
"""Answers to a V2 list call that mean "a parameter is not accepted": the call is repeated once without
the parameter Census has not documented (``group_id``; ``order`` on a runs list, whose default it is)."""

GROUPS_ROUTE_ABSENT_STATUSES = frozenset({400, 404, 405, 422, 501})
"""Answers to the groups listing that mean "no such route here" (discovery then derives the groups)."""

GROUPS_PATH = "groups"
"""ASSUMED: where a V2 personal access token lists the Fivetran groups it can see. Census has not published
it; the simulator's ``GROUPS_ROUTE`` assumes the same. Its endpoint template is ``/v2/groups``."""

LONGEST_API_KEY = 1024
"""Longest workspace API key accepted from ``/workspaces/{id}/api_key``: keys are ``secret-token:`` and a
short secret, so a longer answer is not a key."""

DEFAULT_MAX_RESPONSE_BYTES = defaults.MAX_RESPONSE_BYTES
"""Largest response body accepted, after decompression: a page of 100 syncs is a few hundred KB."""

MAX_JSON_CONTAINERS = 200_000
"""Most JSON objects and arrays one response may hold, counted (as an upper bound) before it is parsed.

The byte limit alone does not bound memory: each ``{}`` of 3 bytes becomes a dict of about 60, so 16 MiB of
them parse to hundreds of MB. 200,000 allows 2,000 per sync on a page of 100 and caps such a response at about
15 MB of parsed containers.
"""

PAGE_SLACK = 2
"""A page may hold up to this many times the records asked for (``per_page``) before it is refused."""

LONGEST_INTEGER_DIGITS = 30
"""Integers in a response with more characters than this parse as ``inf``, which the models reject as out of
range: Python refuses to parse integers of more than 4,300 digits, and one such value must not sink the
whole response."""

_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))
_NOT_PRINTABLE_ASCII_MESSAGE = "the API token contains characters that are not printable ASCII"


class CensusAPIError(Exception):
    """A request that did not produce usable data. ``str()`` is one log-ready line."""

    def __init__(self, endpoint: str, detail: str, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        super().__init__(f"GET {endpoint}: {detail}")


class AuthError(CensusAPIError):
    """401 or 403: the token is wrong, expired or lacks access. Never retried."""


class ForbiddenError(AuthError):
    """403: the token is valid but may not read this resource (a workspace whose key its user cannot read).

    An :class:`AuthError` like any rejection, so callers that stop on a rejected token still do; discovery
    catches it first to skip the one workspace and keep the others.
    """


class NotFoundError(CensusAPIError):
    """404: the resource is gone (a deleted sync or run)."""


class MalformedResponseError(CensusAPIError):
    """The body was not the JSON envelope the API documents."""


class TransientError(CensusAPIError):
    """429, 5xx, timeout or connection failure that outlasted the retries or the deadline."""


class ResponseTooLargeError(CensusAPIError):
    """The body (declared, on the wire or decompressed) exceeded ``max_response_bytes``. Never retried."""


class UnsupportedCallError(CensusAPIError):
    """The call does not exist in this client's dialect (``list_groups`` on V1); raised before any request."""


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


@dataclass(frozen=True, slots=True)
class Listing:
    """Every record of a paged list, and whether it was read consistently from start to end.

    ``complete`` is False when the list visibly changed while its pages were read (records shifted between
    pages), so a record may be missing from ``items``: absence from such a listing proves nothing.
    """

    items: list[Any]
    complete: bool = True
    #: Records the list held beyond the client's ``max_listed`` bound, left unread (0: none). From the API's
    #: ``pagination.total_records`` when it gives one, else a lower bound (the records seen beyond it).
    left_out: int = 0


@dataclass(frozen=True, slots=True)
class RunsPage:
    """One page of a sync's runs, newest first, and whether an older page exists."""

    items: list[Any]
    has_more: bool


def default_api_url(api_version: ApiVersion, region: str | None = None) -> str:
    """The Census API base URL of ``api_version`` in ``region`` (``us`` unless ``eu``)."""
    if api_version == "v2":
        return EU_API_V2_URL if region == "eu" else US_API_V2_URL
    return EU_API_URL if region == "eu" else US_API_URL


def validate_base_url(url: str) -> str:
    """``url`` if it can serve as the API base URL, else ValueError with a message safe to print.

    Credentials in the URL are refused: httpx would send them as Basic auth instead of the Bearer token,
    and an error message quoting the URL would print the password. The URL is judged by both the standard
    parser and httpx's, so no spelling that one of them reads as credentials slips through. Messages never
    quote the URL or any part of it.
    """
    parts = _parse_url(url)
    if parts is None:
        raise ValueError("is not a valid URL")
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in url):
        raise ValueError("must not contain spaces or control characters")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not contain credentials (user:password@); the token is sent as a header")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("must not contain a query or fragment")
    return url


def _parse_url(url: str) -> SplitResult | None:
    """``url`` split by the standard parser, or None when it or httpx cannot parse it or holds user info."""
    try:
        parts = urlsplit(url)
        _ = parts.port
        userinfo = httpx.URL(url).userinfo
    except (ValueError, httpx.InvalidURL):
        return None  # the parsers' messages may quote the URL, credentials included
    if userinfo:
        return parts._replace(netloc="@" + parts.netloc)  # reported as credentials below
    return parts


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


class CensusClient:
    """A synchronous, thread-safe client for the Census Management API, in its V1 or V2 dialect.

    V2 differs in three ways, all decided here: list calls name the Fivetran group (:meth:`_list_params`),
    destination names come from ``/activations``, and every endpoint template starts with ``/v2`` so
    ``census_api_requests_total{endpoint}`` shows the dialect. V1 templates keep their unprefixed form
    (``/syncs``), so existing series continue.

    Whatever V2 does with the group parameter, a V2 client for a group returns only that group's records
    (:meth:`_scoped`): a list that refuses the parameter (400/422) is read again without it, once, and from
    then on never sent it; records of another group are dropped, with one log line; a sync that names no
    group is watched by one group of the process only (``scope.claims``). What the API showed is reported to
    ``scope`` (the start-up probe). A V2 client without a group lists every group's records unfiltered.

    Discovery speaks each dialect's organization calls with a personal access token: V1 lists workspaces
    (:meth:`list_workspaces`) and reads each one's API key (:meth:`workspace_api_key`); V2 lists the Fivetran
    groups (:meth:`list_groups`). A V2 client built with ``organization=True`` names no group: it can list
    the groups, and refuses the calls that need one.
    """

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        request_timeout: float = defaults.REQUEST_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
        max_connections: int = defaults.CONCURRENCY,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        api_version: ApiVersion = "v1",
        group_id: str | None = None,
        organization: bool = False,
        budget: RequestBudget | None = None,
        max_listed: int | None = None,
        max_listed_syncs: int | None = None,
        scope: _scope.ScopeObserver | None = None,
    ) -> None:
        validate_base_url(base_url)
        if api_version not in API_VERSIONS:
            raise ValueError(f"api_version must be one of {', '.join(API_VERSIONS)}")
        if organization and group_id:
            raise ValueError("group_id is refused on an organization client (it lists the groups)")
        if api_version == "v1" and group_id:
            raise ValueError("group_id is refused with api_version v1 (it names a V2 Fivetran group)")
        self.api_version: ApiVersion = api_version
        self._group_id = group_id
        self._scope_observer = scope
        #: Set once the API refused the group parameter: lists are then read without it.
        self._group_parameter_refused = False
        #: Set once a runs list refused ``order``: runs lists are then read without it (desc is the default).
        self._order_refused = False
        self._connection_groups = _scope.ConnectionGroups()
        #: What the group parameter did, as the lists so far showed it (the probe's ``group_parameter``).
        self._parameter_seen: _scope.GroupParameter = "not_sent" if group_id is None else "unverifiable"
        #: Per kind of list ("syncs", "connections"): whether any record listed so far named its group.
        self._carried: dict[str, bool] = {}
        self._logged: set[object] = set()
        self._once_lock = threading.Lock()
        self._realm = base_url.rstrip("/")
        self._template_prefix = "/v2" if api_version == "v2" else ""
        self._token = token
        self._request_timeout = request_timeout
        self._max_response_bytes = max_response_bytes
        self._retry = retry or RetryPolicy()
        #: Shared by every client of the process; None: no limit.
        self._budget = budget
        #: Most records kept of the syncs (or, for an organization client, workspaces or groups) listing:
        #: pages beyond it are not read, so one huge listing cannot exhaust memory. None: no bound.
        self._max_listed = max_listed
        #: The bound of a syncs listing, when it differs (an organization client derives groups from one).
        self._max_listed_syncs = max_listed if max_listed_syncs is None else max_listed_syncs
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

    # ------------------------------------------------------------------ endpoints

    def list_syncs(self, deadline: float) -> Listing:
        """Every sync in the workspace, across all pages; re-read when the list shifts while paged."""
        return self._scoped(self._consistent_listing("syncs", deadline, bounded=True, syncs=True), "syncs")

    def list_sources(self, deadline: float) -> Listing:
        """Every source connection, across all pages."""
        return self._scoped(self._consistent_listing("sources", deadline), "sources")

    def list_destinations(self, deadline: float) -> Listing:
        """Every destination connection (V2: every activation), across all pages."""
        if self.api_version == "v2":
            return self._scoped(self._consistent_listing("activations", deadline), "activations")
        return self._consistent_listing("destinations", deadline)

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        """One page of a sync's runs, newest first."""
        endpoint = self._template("/syncs/{id}/sync_runs")
        params: dict[str, str | int] = {"page": page, "per_page": per_page}
        if not self._order_refused:
            params["order"] = "desc"
        body = self._get_list(f"syncs/{sync_id}/sync_runs", endpoint, params, deadline)
        items = _page_items(body, endpoint, per_page)
        next_page = _paging.next_page(body, page)
        has_more = next_page is not None if _paging.has_paging_hint(body) else len(items) >= per_page
        return RunsPage(items=items, has_more=has_more and bool(items))

    def list_workspaces(self, deadline: float) -> Listing:
        """V1: every workspace of the organization the personal access token can see, across all pages."""
        self._require_dialect("v1", "/workspaces", "V2 lists Fivetran groups instead (list_groups)")
        return self._consistent_listing("workspaces", deadline, bounded=True)

    def workspace_api_key(self, workspace_id: int, deadline: float) -> str:
        """V1: one workspace's API key, read with the personal access token; redacted from logs from now on.

        The answer is ``{"api_key": ...}``, bare or inside the usual ``data`` envelope. Raises
        :class:`ForbiddenError` (403) when the token's user is neither an organization admin nor the
        workspace's owner, so the caller can skip that workspace; errors never quote the key.
        """
        endpoint = "/workspaces/{id}/api_key"
        self._require_dialect("v1", endpoint, "V2 reads every group with the same token")
        try:
            body = self._get(f"workspaces/{workspace_id}/api_key", endpoint, None, deadline)
        except ForbiddenError:
            forbidden = ForbiddenError(
                endpoint,
                "not allowed to read this workspace's API key (403): the token's user is neither an"
                " organization admin nor the workspace's owner",
                403,
            )
        else:
            key, problem = _api_key(body)
            del body
            if key is not None:
                return key
            raise MalformedResponseError(endpoint, problem)
        raise forbidden

    def list_groups(self, deadline: float) -> Listing:
        """V2: every Fivetran group the personal access token can see, across all pages (no group named)."""
        self._require_dialect("v2", "/groups", "V1 lists workspaces instead (list_workspaces)")
        try:
            listing = self._consistent_listing(GROUPS_PATH, deadline, grouped=False, bounded=True)
        except CensusAPIError as error:
            if error.status in GROUPS_ROUTE_ABSENT_STATUSES and self._scope_observer is not None:
                self._scope_observer.groups_route("absent")
            raise
        if self._scope_observer is not None:
            self._scope_observer.groups_route("listed")
        return listing

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        """One run by its global id (V2 too needs no group here: ids are unique across groups)."""
        endpoint = self._template("/sync_runs/{id}")
        body = self._get(f"sync_runs/{run_id}", endpoint, None, deadline)
        if "data" not in body:
            raise MalformedResponseError(endpoint, "response has no 'data'")
        return body["data"]

    # ------------------------------------------------------------------ dialect

    def _template(self, template: str) -> str:
        """The endpoint template as errors and ``census_api_requests_total{endpoint}`` show it."""
        return self._template_prefix + template

    def _list_params(self, params: Mapping[str, str | int]) -> Mapping[str, str | int]:
        """``params`` of a list call, plus the Fivetran group while the API has not refused it."""
        if self._group_id is None or self._group_parameter_refused:
            return params
        return {**params, GROUP_PARAMETER: self._group_id}

    def _get_list(
        self, path: str, endpoint: str, params: Mapping[str, str | int], deadline: float
    ) -> Mapping[str, Any]:
        """One page of a list; a V2 400/422 to an undocumented parameter is asked once more without it.

        The parameter is switched off only when the request without it is answered: a 400 that was
        transient, or that was about something else, must not change how every later list is asked
        (an API that requires ``group_id`` would then refuse every list until a restart)."""
        sent = self._list_params(params)
        try:
            return self._get(path, endpoint, sent, deadline)
        except CensusAPIError as error:
            if self.api_version != "v2" or type(error) is not CensusAPIError:
                raise
            if error.status not in REFUSED_PARAMETER_STATUSES:
                raise
            refusal = error
        status = refusal.status
        if GROUP_PARAMETER in sent:
            dropped = GROUP_PARAMETER
        elif "order" in sent and path.endswith("/sync_runs"):
            dropped = "order"
        else:
            raise refusal  # nothing undocumented was sent: the request itself is wrong
        try:
            body = self._get(path, endpoint, {k: v for k, v in sent.items() if k != dropped}, deadline)
        except CensusAPIError as error:
            if type(error) is CensusAPIError and error.status in REFUSED_PARAMETER_STATUSES:
                # Refused without it too: the parameter was not the cause. Keep sending it; the next
                # list asks again.
                raise refusal from None
            raise
        if dropped == GROUP_PARAMETER:
            self._group_parameter_refused = True
            self._parameter_seen = "refused"
            self._report()
        else:
            self._order_refused = True
        self._once(
            ("refused", dropped),
            logging.WARNING,
            "GET %s: the API refused the %s parameter (HTTP %s); reading lists without it from now on%s",
            endpoint,
            dropped,
            status,
            f" and keeping group {self._group_id}'s records by their group_id"
            if dropped == GROUP_PARAMETER
            else "",
        )
        return body

    # ------------------------------------------------------------------ group scoping

    def _scoped(self, listing: Listing, what: str) -> Listing:
        """A V2 ``listing`` reduced to this client's group; V1 listings are returned as they are.

        Either way the probe hears what the records showed."""
        items = listing.items
        if items:
            kind = "syncs" if what == "syncs" else "connections"
            carried = any(_scope.record_group(item) is not None for item in items)
            self._carried[kind] = carried or self._carried.get(kind, False)
        if self.api_version != "v2":
            self._report(what == "syncs")
            return listing
        if what != "syncs":
            self._connection_groups.learn("source" if what == "sources" else "destination", items)
        observer = self._scope_observer
        if self._group_id is None:
            if what == "syncs" and observer is not None and observer.claims is not None:
                # Everything the token lists, watched as one: still never a sync another group watches.
                kept, _ = self._claim_untagged(listing.items, listing.complete, observer, observer.claims)
                listing = Listing(kept, listing.complete, left_out=listing.left_out)
            self._report(what == "syncs")
            return listing
        outcome = _scope.scope(items, self._group_id, self._connection_groups if what == "syncs" else None)
        kept = outcome.kept
        foreign = bool(outcome.foreign_groups)
        if foreign:
            others = sorted(outcome.foreign_groups)
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            self._once(
                ("foreign", what),
                logging.WARNING,
                "GET %s for group %s returned records of %d other groups (%s); keeping only group %s's",
                self._template("/" + what),
                self._group_id,
                len(others),
                shown,
                self._group_id,
            )
        shared = False
        if what == "syncs" and observer is not None and observer.claims is not None:
            kept, shared = self._claim_untagged(kept, listing.complete, observer, observer.claims)
        if self._parameter_seen != "refused":
            if foreign or shared:
                self._parameter_seen = "ignored"
            elif outcome.tagged and self._parameter_seen == "unverifiable":
                self._parameter_seen = "honoured"
        self._report(what == "syncs")
        return Listing(kept, listing.complete, left_out=listing.left_out)

    def _claim_untagged(
        self, kept: list[Any], complete: bool, observer: _scope.ScopeObserver, claims: _scope.SyncClaims
    ) -> tuple[list[Any], bool]:
        """``kept`` without the syncs naming no group that another group of the process already watches."""
        untagged = {
            key
            for item in kept
            if _scope.record_group(item) is None
            and self._connection_groups.group_of_sync(item) is None
            and (key := _paging.record_id(item)) is not None
        }
        elsewhere, owners = claims.claim(self._realm, observer.name, untagged, complete=complete)
        observer.shared_syncs(len(elsewhere))
        if not elsewhere:
            return kept, False
        self._once(
            ("shared",),
            logging.WARNING,
            "GET %s for %s listed %d syncs without a group_id that %s also lists; they are watched "
            "there only, so no run is counted twice (census_v2_group_overlap_syncs)",
            self._template("/syncs"),
            f"group {self._group_id}" if self._group_id else f"workspace {observer.name} (no group)",
            len(elsewhere),
            ", ".join(sorted(owners)),
        )
        return [item for item in kept if _paging.record_id(item) not in elsewhere], True

    def _report(self, complete: bool = False) -> None:
        """Tell the probe what the API has shown so far; ``complete`` once the syncs were listed."""
        if self._scope_observer is not None:
            self._scope_observer.shape(self._carriers(), self._parameter_seen, complete)

    def _carriers(self) -> _scope.GroupCarriers:
        if self._carried.get("syncs"):
            return "yes"
        if self._carried.get("connections"):
            return "connections"
        return "no" if self._carried else "unknown"

    def _once(self, key: object, level: int, message: str, *args: object) -> None:
        with self._once_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.log(level, message, *args)

    def _require_dialect(self, api_version: ApiVersion, template: str, instead: str) -> None:
        """Refuse, before any request, a call that exists only in ``api_version``'s dialect."""
        if self.api_version != api_version:
            endpoint = self._template(template)
            raise UnsupportedCallError(endpoint, f"not part of API {self.api_version}; {instead}")

    # ------------------------------------------------------------------ paging

    def _consistent_listing(
        self, path: str, deadline: float, *, grouped: bool = True, bounded: bool = False, syncs: bool = False
    ) -> Listing:
        """The whole list, re-read up to MAX_LIST_REREADS times while it visibly shifts under paging.

        A re-read that fails for lack of time or a transient error ends the attempts: the records seen so far
        come back marked incomplete rather than as an error. ``grouped`` lists name the V2 group; ``bounded``
        ones keep at most ``max_listed`` records (the first ones listed).
        """
        endpoint = self._template("/" + path)
        limit = (self._max_listed_syncs if syncs else self._max_listed) if bounded else None
        seen: dict[int | str, Any] = {}
        unkeyed: list[Any] = []
        left_out = 0
        for reread in range(MAX_LIST_REREADS + 1):
            try:
                items, consistent, left_out = self._read_all_pages(path, endpoint, deadline, grouped, limit)
            except TransientError:
                if reread == 0:
                    raise
                break
            if consistent:
                return Listing(items, left_out=left_out)
            unkeyed = []  # without an id, a record of an earlier read cannot be told from this read's copy
            for item in items:
                key = _paging.record_id(item)
                if key is None:
                    unkeyed.append(item)
                else:
                    seen.setdefault(key, item)
        merged = [*seen.values(), *unkeyed]
        if limit is not None and len(merged) > limit:
            left_out = max(left_out, len(merged) - limit)
            del merged[limit:]
        return Listing(merged, complete=False, left_out=left_out)

    def _read_all_pages(
        self, path: str, endpoint: str, deadline: float, grouped: bool, limit: int | None = None
    ) -> tuple[list[Any], bool, int]:
        """Every record of one pass over the pages, whether the pass saw a list that held still, and how many
        records it left out beyond ``limit`` (no page after the one that reaches it is read).

        Page-number paging over a list that changes while it is read shifts records between pages: one can
        repeat (dropped here by id) or be skipped. ``pagination.total_records`` that differs between pages, or
        disagrees with the records collected, betrays the shift. The legacy ``next`` link carries no total,
        so such lists are taken as they come.
        """
        page = 1
        records: list[Any] = []
        seen_ids: set[object] = set()
        totals: set[int] = set()
        per_page = LIST_PAGE_SIZE
        beyond = 0
        for _ in range(MAX_LIST_PAGES):
            params: Mapping[str, str | int] = {"page": page, "per_page": per_page}
            if grouped:
                body = self._get_list(path, endpoint, params, deadline)
            else:
                body = self._get(path, endpoint, params, deadline)
            if page == 1 and self._scope_observer is not None:
                self._scope_observer.pagination(_scope.pagination_form(body))
            items = _page_items(body, endpoint, per_page)
            total = _paging.total_records(body)
            if total is not None:
                totals.add(total)
            for item in items:
                key = _paging.record_id(item)
                if key is not None and key in seen_ids:
                    continue
                if key is not None:
                    seen_ids.add(key)
                if limit is not None and len(records) >= limit:
                    beyond += 1
                    continue
                records.append(item)
            next_page = _paging.next_page(body, page)
            last = not items or next_page is None or next_page <= page
            if limit is not None and len(records) >= limit and (beyond or not last):
                # The bound is reached: the rest of the list stays unread.
                counted = max(beyond, 1 if not last else 0)
                left_out = max(counted, total - len(records)) if total is not None else counted
                return records, len(totals) <= 1, left_out
            if not items or next_page is None or next_page <= page:
                consistent = len(totals) <= 1 and all(total == len(records) for total in totals)
                return records, consistent, 0
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
        if token_failure is None and not _PRINTABLE_ASCII.issuperset(token):
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


def _page_items(body: Mapping[str, Any], endpoint: str, per_page: int) -> list[Any]:
    """The page's records, refused as malformed when there are far more than the ``per_page`` asked for."""
    items = _data_list(body, endpoint)
    if len(items) > per_page * PAGE_SLACK:
        raise MalformedResponseError(endpoint, f"page holds {len(items)} records, {per_page} were asked for")
    return items


def _api_key(body: Mapping[str, Any]) -> tuple[str | None, str]:
    """The ``api_key`` of a bare or enveloped answer, registered for redaction, or None and why not.

    The caller raises, from a frame that no longer holds the body: a traceback keeps every frame's locals.
    """
    data = body.get("data")
    record = data if isinstance(data, Mapping) and "api_key" in data else body
    key = record.get("api_key")
    if not isinstance(key, str) or not key.strip():
        return None, "response has no 'api_key' text"
    key = key.strip()
    if len(key) > LONGEST_API_KEY or not _PRINTABLE_ASCII.issuperset(key):
        # Mirrors the token checks: an HTTP header could not carry it. Never quoted, so not registered:
        # a server sending new junk on every call must not grow the redaction list without bound.
        return None, "'api_key' is not a usable key (too long, or not printable ASCII)"
    RedactingFilter.register(key)
    return key, ""


def _size(limit: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


def _data_list(body: Mapping[str, Any], endpoint: str) -> list[Any]:
    data = body.get("data")
    if not isinstance(data, list):
        raise MalformedResponseError(endpoint, "'data' is not a list")
    return data
