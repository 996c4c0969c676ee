"""Reading the API's paging hints: the next page number, the total, a record's id.

Census pages lists by page number and describes the pages in a ``pagination`` block (preferred) or a legacy
``next`` link; both are read here, and nothing here sends a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit


def has_paging_hint(body: Mapping[str, Any]) -> bool:
    """Whether the body says anything about further pages (else a full page is the only hint)."""
    pagination = body.get("pagination")
    if isinstance(pagination, Mapping) and ("next_page" in pagination or "last_page" in pagination):
        return True
    return page_from_link(body.get("next")) is not None


def next_page(body: Mapping[str, Any], page: int) -> int | None:
    """The next page number, from ``pagination`` (preferred) or the legacy ``next`` link.

    The link is never followed as a URL: it names the public host, which may differ from the configured
    one (a proxy, the simulator), and following it would send the token there. Only its page number is used.
    """
    pagination = body.get("pagination")
    if isinstance(pagination, Mapping):
        following = pagination.get("next_page")
        if isinstance(following, int) and not isinstance(following, bool):
            return following
        if "next_page" in pagination:
            return None
        last_page = pagination.get("last_page")
        if isinstance(last_page, int) and not isinstance(last_page, bool):
            return page + 1 if page < last_page else None
    return page_from_link(body.get("next"))


def record_id(item: object) -> int | str | None:
    """The record's ``id`` if it is an integer or a string, else None (such records are never de-duplicated).

    Other ids (a list, an object) cannot be used as keys; the record is kept for the models to skip.
    """
    key = item.get("id") if isinstance(item, Mapping) else None
    return key if isinstance(key, int | str) and not isinstance(key, bool) else None


def total_records(body: Mapping[str, Any]) -> int | None:
    """``pagination.total_records``: the size of the whole list when this page was read, if given."""
    pagination = body.get("pagination")
    if not isinstance(pagination, Mapping):
        return None
    total = pagination.get("total_records")
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def page_from_link(link: object) -> int | None:
    """The ``page`` query parameter of a legacy ``next`` link, or None."""
    if not isinstance(link, str) or not link:
        return None
    values = parse_qs(urlsplit(link).query).get("page")
    if not values or not values[0].isdigit():
        return None
    return int(values[0])
