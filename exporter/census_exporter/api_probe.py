"""The start-up probe: what the Census API showed each client, as one log line and ``census_api_info``.

Census has not published how V2 lists treat the Fivetran group, so the exporter says what it saw: the API
version, whether records carry ``group_id``, what the group parameter did (honoured, ignored, refused, or
unverifiable when no record names a group), whether a groups listing answered, and the paging form. The
line is logged once when a client's first sync listing (a discovery's first groups listing) is done, and
once more for each different picture later. It also renders ``census_v2_group_overlap_syncs``: the syncs
without a group that a workspace leaves to another group (see ``census._scope.SyncClaims``).
"""

from __future__ import annotations

import logging
import threading

from census_exporter.census._scope import (
    GroupCarriers,
    GroupParameter,
    GroupsRoute,
    Pagination,
    SyncClaims,
)
from census_exporter.rendering import Family, FamilyBlocks, RenderedFamilies, label_text, sample

log = logging.getLogger(__name__)

PROBE_DOC = 'docs/census-api-versions.md, section "Reading the probe"'

INFO = Family(
    "census_api_info",
    "gauge",
    "What the Census API showed this workspace's client (1): api_version, objects_carry_group_id "
    "(yes/connections/no/unknown), group_parameter (honoured/ignored/refused/unverifiable/not_sent), "
    "groups_route (listed/absent/not_asked) and pagination (pagination_block/next_link/none).",
)
OVERLAP = Family(
    "census_v2_group_overlap_syncs",
    "gauge",
    "V2 syncs this workspace's list returned without any group_id that another watched group already "
    "watches; left out here so that no sync or run is counted twice.",
)


class ApiProbes:
    """Every client's probe; renders the two families. One per process (its claims are shared)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[int, ApiProbe] = {}
        self.claims = SyncClaims()
        self._generation = 0
        self._rendered: tuple[int, RenderedFamilies] | None = None

    def probe(self, workspace: str, api_version: str, title: str, *, claims: bool = True) -> ApiProbe:
        """The probe of one client: ``workspace`` is its label ('' for discovery), ``title`` its log name."""
        probe = ApiProbe(self, workspace, api_version, title, self.claims if claims else None)
        with self._lock:
            self._probes[id(probe)] = probe
            self._generation += 1
        return probe

    def render(self) -> RenderedFamilies:
        """Both families as they are now."""
        with self._lock:
            if self._rendered is not None and self._rendered[0] == self._generation:
                return self._rendered[1]
            blocks = FamilyBlocks((INFO, OVERLAP))
            for probe in sorted(self._probes.values(), key=lambda p: (p.workspace, p.title)):
                if probe.reported is not None:
                    labels = label_text([("workspace", probe.workspace), *probe.reported])
                    blocks.add([(0, sample(INFO.name, labels, 1))])
                if probe.overlap is not None:
                    blocks.add(
                        [
                            (
                                1,
                                sample(
                                    OVERLAP.name, label_text([("workspace", probe.workspace)]), probe.overlap
                                ),
                            )
                        ]
                    )
            # Unknown is absent: a family no probe has a sample for (V1 only, nothing listed yet) is left out.
            rendered = blocks.rendered(omit_empty=True)
            self._rendered = (self._generation, rendered)
            return rendered

    def _changed(self) -> None:
        with self._lock:
            self._generation += 1

    def _forget(self, probe: ApiProbe) -> None:
        with self._lock:
            self._probes.pop(id(probe), None)
            self._generation += 1
        if probe.claims is not None:
            probe.claims.release_all(probe.name)


class ApiProbe:
    """One client's probe (a :class:`~census_exporter.census._scope.ScopeObserver`)."""

    def __init__(
        self, probes: ApiProbes, workspace: str, api_version: str, title: str, claims: SyncClaims | None
    ) -> None:
        self._probes = probes
        self._lock = threading.Lock()
        self.workspace = workspace
        self.name = workspace or title
        self.title = title
        self.api_version = api_version
        self.claims = claims
        self._pagination: Pagination | None = None
        self._groups_route: GroupsRoute = "not_asked"
        self._carried: GroupCarriers = "unknown"
        self._parameter: GroupParameter = "not_sent"
        self._complete = False
        self._logged: set[tuple[tuple[str, str], ...]] = set()
        #: The label pairs of ``census_api_info`` once the probe has something to say; None before.
        self.reported: tuple[tuple[str, str], ...] | None = None
        self.overlap: int | None = None

    # ScopeObserver

    def pagination(self, form: Pagination) -> None:
        """The paging form of a list's first page."""
        with self._lock:
            self._pagination = form
        self._update()

    def groups_route(self, route: GroupsRoute) -> None:
        """Whether the groups listing answered; a listed one completes a discovery's probe."""
        with self._lock:
            self._groups_route = route
            self._complete = self._complete or route == "listed"
        self._update()

    def shape(self, carried: GroupCarriers, parameter: GroupParameter, complete: bool) -> None:
        """What the client's lists showed so far."""
        with self._lock:
            self._carried = carried
            self._parameter = parameter
            self._complete = self._complete or complete
        self._update()

    def shared_syncs(self, count: int) -> None:
        """The syncs without a group this workspace leaves to another group."""
        with self._lock:
            self.overlap = count
        self._probes._changed()

    def close(self) -> None:
        """Remove this client's series and release its claims (it is no longer watched)."""
        self._probes._forget(self)

    # ------------------------------------------------------------------ helpers

    def _update(self) -> None:
        with self._lock:
            if not self._complete:
                return
            labels = (
                ("api_version", self.api_version),
                ("objects_carry_group_id", self._carried),
                ("group_parameter", self._parameter),
                ("groups_route", self._groups_route),
                ("pagination", self._pagination or "none"),
            )
            if labels == self.reported:
                return
            self.reported = labels
            first = labels not in self._logged
            self._logged.add(labels)
        self._probes._changed()
        if first:
            log.info(
                "Census API probe, %s: %s (how to read it, and what to send if it looks wrong: %s)",
                self.title,
                " ".join(f"{key}={value}" for key, value in labels),
                PROBE_DOC,
            )
