"""The fleet's own health families: what the bounds left out and whether each workspace gets its share.

Rendered fresh on every scrape beside the request metrics (they change with each refresh and listing, and
are a handful of samples per workspace). docs/metrics.md describes each family; the alert
``CensusExporterTruncated`` reads the two ``*_left_out`` families.
"""

from __future__ import annotations

from census_exporter.refresh.fleet import Fleet
from census_exporter.rendering import Family, FamilyBlocks, RenderedFamilies, label_text, sample

SYNCS_LEFT_OUT = Family(
    "census_syncs_left_out",
    "gauge",
    "Syncs the workspace's last sync list held beyond --census.max-syncs-per-workspace: not watched.",
)
SYNCS_UNREAD = Family(
    "census_refresh_syncs_unread",
    "gauge",
    "Watched syncs the workspace's last refresh left unread: its share of the request budget did not cover "
    "them (they keep their previous data).",
)
DATA_WITHIN_BOUND = Family(
    "census_data_within_bound",
    "gauge",
    "1 if every watched sync's runs were read within the last 3 cache TTLs, as of the workspace's last "
    "refresh; 0 if some are older (its share of the request budget is too small) or were never read.",
)
DISCOVERY_LEFT_OUT = Family(
    "census_discovery_workspaces_left_out",
    "gauge",
    "Workspaces or groups this discovery entry listed but does not watch: beyond "
    "--census.max-workspaces-per-discovery or --census.max-workspaces.",
)

_FAMILIES = (SYNCS_LEFT_OUT, SYNCS_UNREAD, DATA_WITHIN_BOUND, DISCOVERY_LEFT_OUT)


def render_fleet(fleet: Fleet, cache_ttl_seconds: float) -> RenderedFamilies:
    """The fleet families as they are now; a workspace is absent from each until it has been listed."""
    blocks = FamilyBlocks(_FAMILIES)
    for member in fleet.members():
        refresher = member.refresher
        labels = label_text([("workspace", member.workspace.name)])
        lines: list[tuple[int, str]] = []
        if refresher.syncs_left_out is not None:
            lines.append((0, sample(SYNCS_LEFT_OUT.name, labels, refresher.syncs_left_out)))
        if refresher.syncs_unread is not None:
            lines.append((1, sample(SYNCS_UNREAD.name, labels, refresher.syncs_unread)))
        if refresher.syncs_behind is not None:
            lines.append((2, sample(DATA_WITHIN_BOUND.name, labels, refresher.syncs_behind == 0)))
        try:
            blocks.add(lines)
        except UnicodeEncodeError:
            continue  # the collector logs such a workspace name once; its other series are left out there too
    for discovery, left_out in sorted(fleet.left_out().items()):
        try:
            labels = label_text([("discovery", discovery)])
            blocks.add([(3, sample(DISCOVERY_LEFT_OUT.name, labels, left_out))])
        except UnicodeEncodeError:
            continue
    # A family with no sample is left out: no discovery configured means no discovery family at all.
    return RenderedFamilies(tuple((family, data) for family, data in blocks.rendered().blocks if data))
