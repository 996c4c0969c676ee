"""The client's two dialects, V1 and V2: endpoint templates, list parameters, and V2's group scoping.

V2 differs from V1 in three ways, all decided here or by the client through :class:`Dialect`: list calls
name the Fivetran group (:meth:`Dialect.list_params`), destination names come from ``/activations``, and
every endpoint template starts with ``/v2`` so ``census_api_requests_total{endpoint}`` shows the dialect. V1
templates keep their unprefixed form (``/syncs``), so existing series continue.

Whatever V2 does with the group parameter, a V2 client for a group returns only that group's records
(:meth:`Dialect.scoped`, on top of :mod:`census_exporter.census._scope`): a list that refuses the parameter
(400/422) is read again without it, once, and from then on never sent it; records of another group are
dropped, with one log line; a sync that names no group is watched by one group of the process only
(``scope.claims``). What the API showed is reported to ``scope`` (the start-up probe). Requests are sent
through the ``get`` callable the client hands in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from census_exporter.census import _paging, _scope
from census_exporter.census.errors import CensusAPIError, UnsupportedCallError
from census_exporter.census.listing import Listing

#: The client's log lines keep the logger name they had before the client was split into layers.
log = logging.getLogger("census_exporter.census.client")

ApiVersion = Literal["v1", "v2"]
API_VERSIONS: tuple[ApiVersion, ...] = ("v1", "v2")

GROUP_PARAMETER = "group_id"
"""ASSUMED: the query parameter naming the Fivetran group on V2 list calls (the simulator assumes it too).
Sent while the API accepts it; whether it filters is never trusted: records are scoped by their own
``group_id`` too (:mod:`census_exporter.census._scope`)."""

REFUSED_PARAMETER_STATUSES = frozenset({400, 422})
"""Answers to a V2 list call that mean "a parameter is not accepted": the call is repeated once without
the parameter Census has not documented (``group_id``; ``order`` on a runs list, whose default it is)."""

#: One GET: ``(path, endpoint template, params, deadline)`` to the response's JSON envelope.
Get = Callable[[str, str, Mapping[str, str | int] | None, float], Mapping[str, Any]]


class Dialect:
    """What one client's API version changes about its calls, and the V2 group-scoping state it keeps."""

    def __init__(
        self,
        api_version: ApiVersion,
        group_id: str | None,
        scope: _scope.ScopeObserver | None,
        realm: str,
        get: Get,
    ) -> None:
        self.api_version: ApiVersion = api_version
        self._group_id = group_id
        #: Where what the API showed is reported (the start-up probe); None: nowhere.
        self.scope_observer = scope
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
        self._realm = realm
        self._template_prefix = "/v2" if api_version == "v2" else ""
        self._get = get

    def runs_params(self, page: int, per_page: int) -> dict[str, str | int]:
        """The parameters of one page of a runs list: newest first, unless the API refused ``order``."""
        params: dict[str, str | int] = {"page": page, "per_page": per_page}
        if not self._order_refused:
            params["order"] = "desc"
        return params

    def template(self, template: str) -> str:
        """The endpoint template as errors and ``census_api_requests_total{endpoint}`` show it."""
        return self._template_prefix + template

    def list_params(self, params: Mapping[str, str | int]) -> Mapping[str, str | int]:
        """``params`` of a list call, plus the Fivetran group while the API has not refused it."""
        if self._group_id is None or self._group_parameter_refused:
            return params
        return {**params, GROUP_PARAMETER: self._group_id}

    def get_list(
        self, path: str, endpoint: str, params: Mapping[str, str | int], deadline: float
    ) -> Mapping[str, Any]:
        """One page of a list; a V2 400/422 to an undocumented parameter is asked once more without it.

        The parameter is switched off only when the request without it is answered: a 400 that was
        transient, or that was about something else, must not change how every later list is asked
        (an API that requires ``group_id`` would then refuse every list until a restart)."""
        sent = self.list_params(params)
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

    def scoped(self, listing: Listing, what: str) -> Listing:
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
        observer = self.scope_observer
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
                self.template("/" + what),
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
            self.template("/syncs"),
            f"group {self._group_id}" if self._group_id else f"workspace {observer.name} (no group)",
            len(elsewhere),
            ", ".join(sorted(owners)),
        )
        return [item for item in kept if _paging.record_id(item) not in elsewhere], True

    def _report(self, complete: bool = False) -> None:
        """Tell the probe what the API has shown so far; ``complete`` once the syncs were listed."""
        if self.scope_observer is not None:
            self.scope_observer.shape(self._carriers(), self._parameter_seen, complete)

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

    def require(self, api_version: ApiVersion, template: str, instead: str) -> None:
        """Refuse, before any request, a call that exists only in ``api_version``'s dialect."""
        if self.api_version != api_version:
            endpoint = self.template(template)
            raise UnsupportedCallError(endpoint, f"not part of API {self.api_version}; {instead}")
