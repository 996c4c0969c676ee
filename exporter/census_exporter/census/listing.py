"""Reading a whole paged list: every page in turn, re-read while the list visibly shifts, within a bound.

Census pages lists by page number; a list that changes while it is read shifts records between pages. The
functions here walk the pages through a ``fetch`` callable (one page per call, :class:`PageFetch`), drop
repeated records by id, detect the shift from ``pagination.total_records`` (hints read by
:mod:`census_exporter.census._paging`), and stop reading once ``limit`` records are kept. Nothing here
sends a request, names an endpoint of its own or knows the API dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from census_exporter.census import _paging
from census_exporter.census.errors import MalformedResponseError, TransientError

MAX_LIST_PAGES = 1000
"""Safety bound on pages of one list: 100,000 syncs is far beyond any real workspace."""

LIST_PAGE_SIZE = 100
"""Records asked for per page of a list (syncs, connections, workspaces)."""

MAX_LIST_REREADS = 2
"""Whole re-reads of a list that shifted while it was paged, before it is returned marked incomplete."""


PAGE_SLACK = 2
"""A page may hold up to this many times the records asked for (``per_page``) before it is refused."""

#: One page of a list: called with the paging parameters, returns the page's JSON envelope.
PageFetch = Callable[[Mapping[str, str | int]], Mapping[str, Any]]


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


def consistent_listing(
    fetch: PageFetch,
    endpoint: str,
    *,
    limit: int | None = None,
    on_first_page: Callable[[Mapping[str, Any]], None] | None = None,
) -> Listing:
    """The whole list, re-read up to MAX_LIST_REREADS times while it visibly shifts under paging.

    A re-read that fails for lack of time or a transient error ends the attempts: the records seen so far
    come back marked incomplete rather than as an error. At most ``limit`` records are kept (the first ones
    listed); ``on_first_page`` sees each pass's first page; ``endpoint`` names the list in errors.
    """
    seen: dict[int | str, Any] = {}
    unkeyed: list[Any] = []
    left_out = 0
    for reread in range(MAX_LIST_REREADS + 1):
        try:
            items, consistent, left_out = _read_all_pages(fetch, endpoint, limit, on_first_page)
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
    fetch: PageFetch,
    endpoint: str,
    limit: int | None,
    on_first_page: Callable[[Mapping[str, Any]], None] | None,
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
        body = fetch(params)
        if page == 1 and on_first_page is not None:
            on_first_page(body)
        items = page_items(body, endpoint, per_page)
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


def page_items(body: Mapping[str, Any], endpoint: str, per_page: int) -> list[Any]:
    """The page's records, refused as malformed when there are far more than the ``per_page`` asked for."""
    items = _data_list(body, endpoint)
    if len(items) > per_page * PAGE_SLACK:
        raise MalformedResponseError(endpoint, f"page holds {len(items)} records, {per_page} were asked for")
    return items


def _data_list(body: Mapping[str, Any], endpoint: str) -> list[Any]:
    data = body.get("data")
    if not isinstance(data, list):
        raise MalformedResponseError(endpoint, "'data' is not a list")
    return data
