"""CensusClient: the calls of the Census Management API, in its V1 or V2 dialect, as plain JSON.

It returns the envelope's ``data`` as plain JSON for :mod:`census_exporter.census.models` to parse; it knows
nothing about metrics families, ledgers or snapshots. Beneath it, each layer has one job: one GET with its
retries, budget and bounds (:mod:`census_exporter.census._requests`), walking a list's pages
(:mod:`census_exporter.census.listing`), the V1/V2 differences and V2's group scoping
(:mod:`census_exporter.census._dialect`). Errors are the :mod:`census_exporter.census.errors`, whose
messages name the endpoint template, the host and the cause, never a URL with credentials or a query, and
never the token.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from census_exporter import defaults
from census_exporter.census import _paging, _scope
from census_exporter.census._dialect import ApiVersion, Dialect
from census_exporter.census._requests import (
    DEFAULT_MAX_RESPONSE_BYTES,
    PRINTABLE_ASCII,
    Requester,
    RequestObserver,
    RetryPolicy,
)
from census_exporter.census.budget import RequestBudget
from census_exporter.census.errors import (
    CensusAPIError,
    ForbiddenError,
    MalformedResponseError,
)
from census_exporter.census.listing import Listing, RunsPage, consistent_listing, page_items
from census_exporter.logs import RedactingFilter

US_API_URL = "https://app.getcensus.com/api/v1"
EU_API_URL = "https://app-eu.getcensus.com/api/v1"
US_API_V2_URL = "https://app.getcensus.com/api/v2"
EU_API_V2_URL = "https://app-eu.getcensus.com/api/v2"
"""UNCONFIRMED: Census has not said whether V2 is served on the EU host (docs/census-api-versions.md)."""


API_VERSIONS: tuple[ApiVersion, ...] = ("v1", "v2")


GROUPS_ROUTE_ABSENT_STATUSES = frozenset({400, 404, 405, 422, 501})
"""Answers to the groups listing that mean "no such route here" (discovery then derives the groups)."""

GROUPS_PATH = "groups"
"""ASSUMED: where a V2 personal access token lists the Fivetran groups it can see. Census has not published
it; the simulator's ``GROUPS_ROUTE`` assumes the same. Its endpoint template is ``/v2/groups``."""

LONGEST_API_KEY = 1024
"""Longest workspace API key accepted from ``/workspaces/{id}/api_key``: keys are ``secret-token:`` and a
short secret, so a longer answer is not a key."""


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


class CensusClient:
    """A synchronous, thread-safe client for the Census Management API, in its V1 or V2 dialect.

    How V2 differs (the group parameter, ``/activations``, ``/v2`` templates) and how a V2 client for a
    group keeps only that group's records is the :class:`~census_exporter.census._dialect.Dialect`'s
    business. A V2 client without a group lists every group's records unfiltered.

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
        realm = base_url.rstrip("/")
        self._requester = Requester(
            base_url,
            token,
            request_timeout=request_timeout,
            retry=retry,
            observer=observer,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            transport=transport,
            sleep=sleep,
            clock=clock,
            rng=rng,
            budget=budget,
        )
        self._get = self._requester.get
        self._dialect = Dialect(api_version, group_id, scope, realm, self._get)
        #: Most records kept of the syncs (or, for an organization client, workspaces or groups) listing:
        #: pages beyond it are not read, so one huge listing cannot exhaust memory. None: no bound.
        self._max_listed = max_listed
        #: The bound of a syncs listing, when it differs (an organization client derives groups from one).
        self._max_listed_syncs = max_listed if max_listed_syncs is None else max_listed_syncs

    def close(self) -> None:
        """Release pooled connections."""
        self._requester.close()

    # ------------------------------------------------------------------ endpoints

    def list_syncs(self, deadline: float) -> Listing:
        """Every sync in the workspace, across all pages; re-read when the list shifts while paged."""
        return self._dialect.scoped(
            self._consistent_listing("syncs", deadline, bounded=True, syncs=True), "syncs"
        )

    def list_sources(self, deadline: float) -> Listing:
        """Every source connection, across all pages."""
        return self._dialect.scoped(self._consistent_listing("sources", deadline), "sources")

    def list_destinations(self, deadline: float) -> Listing:
        """Every destination connection (V2: every activation), across all pages."""
        if self.api_version == "v2":
            return self._dialect.scoped(self._consistent_listing("activations", deadline), "activations")
        return self._consistent_listing("destinations", deadline)

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        """One page of a sync's runs, newest first."""
        endpoint = self._dialect.template("/syncs/{id}/sync_runs")
        params = self._dialect.runs_params(page, per_page)
        body = self._dialect.get_list(f"syncs/{sync_id}/sync_runs", endpoint, params, deadline)
        items = page_items(body, endpoint, per_page)
        next_page = _paging.next_page(body, page)
        has_more = next_page is not None if _paging.has_paging_hint(body) else len(items) >= per_page
        return RunsPage(items=items, has_more=has_more and bool(items))

    def list_workspaces(self, deadline: float) -> Listing:
        """V1: every workspace of the organization the personal access token can see, across all pages."""
        self._dialect.require("v1", "/workspaces", "V2 lists Fivetran groups instead (list_groups)")
        return self._consistent_listing("workspaces", deadline, bounded=True)

    def workspace_api_key(self, workspace_id: int, deadline: float) -> str:
        """V1: one workspace's API key, read with the personal access token; redacted from logs from now on.

        The answer is ``{"api_key": ...}``, bare or inside the usual ``data`` envelope. Raises
        :class:`ForbiddenError` (403) when the token's user is neither an organization admin nor the
        workspace's owner, so the caller can skip that workspace; errors never quote the key.
        """
        endpoint = "/workspaces/{id}/api_key"
        self._dialect.require("v1", endpoint, "V2 reads every group with the same token")
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
        self._dialect.require("v2", "/groups", "V1 lists workspaces instead (list_workspaces)")
        try:
            listing = self._consistent_listing(GROUPS_PATH, deadline, grouped=False, bounded=True)
        except CensusAPIError as error:
            if error.status in GROUPS_ROUTE_ABSENT_STATUSES and self._dialect.scope_observer is not None:
                self._dialect.scope_observer.groups_route("absent")
            raise
        if self._dialect.scope_observer is not None:
            self._dialect.scope_observer.groups_route("listed")
        return listing

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        """One run by its global id (V2 too needs no group here: ids are unique across groups)."""
        endpoint = self._dialect.template("/sync_runs/{id}")
        body = self._get(f"sync_runs/{run_id}", endpoint, None, deadline)
        if "data" not in body:
            raise MalformedResponseError(endpoint, "response has no 'data'")
        return body["data"]

    # ------------------------------------------------------------------ paging

    def _consistent_listing(
        self, path: str, deadline: float, *, grouped: bool = True, bounded: bool = False, syncs: bool = False
    ) -> Listing:
        """The whole list, re-read up to MAX_LIST_REREADS times while it visibly shifts under paging.

        A re-read that fails for lack of time or a transient error ends the attempts: the records seen so far
        come back marked incomplete rather than as an error. ``grouped`` lists name the V2 group; ``bounded``
        ones keep at most ``max_listed`` records (the first ones listed).
        """
        endpoint = self._dialect.template("/" + path)
        limit = (self._max_listed_syncs if syncs else self._max_listed) if bounded else None

        def fetch(params: Mapping[str, str | int]) -> Mapping[str, Any]:
            if grouped:
                return self._dialect.get_list(path, endpoint, params, deadline)
            return self._get(path, endpoint, params, deadline)

        observer = self._dialect.scope_observer

        def on_first_page(body: Mapping[str, Any]) -> None:
            if observer is not None:
                observer.pagination(_scope.pagination_form(body))

        return consistent_listing(fetch, endpoint, limit=limit, on_first_page=on_first_page)


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
    if len(key) > LONGEST_API_KEY or not PRINTABLE_ASCII.issuperset(key):
        # Mirrors the token checks: an HTTP header could not carry it. Never quoted, so not registered:
        # a server sending new junk on every call must not grow the redaction list without bound.
        return None, "'api_key' is not a usable key (too long, or not printable ASCII)"
    RedactingFilter.register(key)
    return key, ""
