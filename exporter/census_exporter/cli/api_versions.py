"""What the CLI tells users about Census API versions: V1's retirement date and the unconfirmed EU V2 host."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from census_exporter.config import Config

log = logging.getLogger("census_exporter")

V1_RETIREMENT_DATE = "2027-01-15"
MIGRATION_DOC = "docs/census-api-versions.md"


EU_HOST = "app-eu.getcensus.com"


def log_api_version_notice(config: Config) -> None:
    """Log, once at start, that the V1 workspaces must move to V2 before V1 is retired, and that the EU V2
    host is unconfirmed."""
    if config.demo:
        return
    eu_v2 = sorted(
        {d.api_url for d in config.discoveries if d.api_version == "v2"}
        | {w.api_url for w in config.watched() if w.api_version == "v2"}
    )
    eu_v2 = [url for url in eu_v2 if urlsplit(url).hostname == EU_HOST]
    if eu_v2:
        log.warning(
            "Census has not confirmed that API V2 is served on the EU host (%s); if it does not answer, give "
            "the URL Census names with --census.api-url (or api_url: in the workspaces file), see %s",
            ", ".join(eu_v2),
            MIGRATION_DOC,
        )
    on_v1 = [workspace.name for workspace in config.watched() if workspace.api_version == "v1"]
    on_v1 += [f"discovery {d.name}" for d in config.discoveries if d.api_version == "v1"]
    if not on_v1:
        return
    how = "api_version: v2 in the workspaces file" if config.config_file else "--census.api-version v2"
    log.warning(
        "Census API V1 is retired on %s; move %s %s to V2 (%s), see %s",
        V1_RETIREMENT_DATE,
        "workspace" if len(on_v1) == 1 else "workspaces",
        ", ".join(on_v1),
        how,
        MIGRATION_DOC,
    )
