"""The landing page at ``/``: links, and the state of each watched workspace at a glance (no API call)."""

from __future__ import annotations

import html
import time
from urllib.parse import urlsplit, urlunsplit

from census_exporter import __version__
from census_exporter.snapshot import DiscoveryStatus, FleetView, Snapshot, SyncState

#: Syncs listed by name under "Newest run failed"; the rest are counted.
MAX_LISTED_FAILURES = 20
#: What to do about a failed sync (the runbook section of the CensusSyncFailed alert).
RUNBOOK_URL = "https://github.com/census-exporter/census-exporter/blob/main/docs/runbook.md#censussyncfailed"
#: The Census app that shows a sync, per API host (other hosts, such as a proxy, get no links).
_APP_BY_API_HOST = {
    "app.getcensus.com": "https://app.getcensus.com",
    "app-eu.getcensus.com": "https://app-eu.getcensus.com",
}


def render_landing_page(
    view: FleetView,
    telemetry_path: str,
    *,
    cache_ttl_seconds: float | None = None,
    demo: bool = False,
) -> bytes:
    """The HTML of ``/`` for ``view``: a table per workspace (and per discovery entry), then the links.

    ``demo`` says on the page that the data is the built-in simulator's. Everything from the API (labels,
    names, error codes) is escaped: it is hostile input.
    """
    path = html.escape(telemetry_path)
    sections = [_discovery_table(status) for status in view.discoveries]
    sections += [_workspace_section(snapshot, cache_ttl_seconds) for snapshot in view.snapshots]
    if not view.snapshots:
        sections.append("<p>No workspace is watched yet.</p>")
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Census Exporter</title></head><body>"
        "<h1>Census Exporter</h1>"
        f"<p>Version {html.escape(__version__)}</p>"
        f"{_DEMO_NOTE if demo else ''}"
        f"{''.join(sections)}<ul>"
        f'<li><a href="{path}">Metrics</a></li>'
        '<li><a href="/healthz">Health</a></li>'
        '<li><a href="/readyz">Readiness</a></li>'
        "</ul></body></html>\n"
    ).encode()


_DEMO_NOTE = (
    "<p><strong>Demo:</strong> started with <code>--demo</code>, this exporter watches the built-in "
    "simulated Census workspace on loopback. None of this is real data; give a token "
    "(docs/configuration.md) to watch a real workspace.</p>"
)


def _workspace_section(snapshot: Snapshot, cache_ttl_seconds: float | None) -> str:
    failing = _failing(snapshot)
    rows: list[tuple[str, str]] = [("Workspace", html.escape(snapshot.workspace))]
    if snapshot.api_url is not None:
        rows.append(("Census API base URL", html.escape(_without_credentials(snapshot.api_url))))
    rows.append(("Census API", html.escape(_state(snapshot))))
    if cache_ttl_seconds is not None:
        rows.append(("Cache TTL", f"{cache_ttl_seconds:g} s"))
    rows += [
        ("Last refresh", html.escape(_last_refresh(snapshot))),
        ("Last error-free refresh", _utc(snapshot.last_success_timestamp) or "none yet"),
        ("Syncs", str(len(snapshot.syncs)) if snapshot.listed else "unknown"),
        ("Newest run failed", str(len(failing)) if snapshot.listed else "unknown"),
    ]
    return _table(rows) + _failing_list(snapshot.workspace, failing, _app_url(snapshot.api_url))


def _discovery_table(status: DiscoveryStatus) -> str:
    if not status.attempted:
        state = "first listing in progress"
    elif status.up:
        state = "up"
    else:
        state = f"down: {status.last_error or 'the last listing had errors (see the log)'}"
    found = "unknown" if status.workspaces is None else str(status.workspaces)
    rows = [
        ("Discovery", html.escape(status.name)),
        ("Listing", html.escape(state)),
        ("Workspaces found", found),
    ]
    return _table(rows)


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table style="text-align:left">{cells}</table>'


def _state(snapshot: Snapshot) -> str:
    if not snapshot.refreshed:
        return "first refresh in progress"
    if snapshot.up:
        return "up"
    return f"down: {snapshot.last_error or 'the last refresh had errors (see the log)'}"


def _last_refresh(snapshot: Snapshot) -> str:
    if snapshot.started_monotonic is None or not snapshot.refreshed:
        return "none yet"
    took = snapshot.refresh_duration_seconds or 0.0
    # The snapshot keeps monotonic time (immune to clock steps); the page shows wall-clock time.
    finished = time.time() - (time.monotonic() - (snapshot.started_monotonic + took))
    return f"{_utc(finished)} (took {took:.1f} s)"


def _utc(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _failing(snapshot: Snapshot) -> list[SyncState]:
    failing = [s for s in snapshot.syncs.values() if s.latest_run and s.latest_run.status == "failed"]
    return sorted(failing, key=lambda state: (state.sync.label, state.sync.id))


def _failing_list(workspace: str, failing: list[SyncState], app_url: str | None) -> str:
    if not failing:
        return ""
    items = []
    for state in failing[:MAX_LISTED_FAILURES]:
        label = html.escape(state.sync.label or f"sync {state.sync.id}")
        if app_url:
            label = f'<a href="{html.escape(app_url)}/syncs/{state.sync.id}">{label}</a>'
        code = state.latest_run.error_code if state.latest_run else None
        error = f"<code>{html.escape(code)}</code>" if code else "no error code"
        items.append(f"<li>{label} (sync id {state.sync.id}): {error}</li>")
    if len(failing) > MAX_LISTED_FAILURES:
        items.append(f"<li>and {len(failing) - MAX_LISTED_FAILURES} more</li>")
    title = f"Syncs of {html.escape(workspace)} whose newest run failed"
    runbook = f'<p>What the error codes mean and what to do: <a href="{RUNBOOK_URL}">the runbook</a>.</p>'
    return f"<h2>{title}</h2><ul>{''.join(items)}</ul>{runbook}"


def _app_url(api_url: str | None) -> str | None:
    if api_url is None:
        return None
    try:
        parts = urlsplit(api_url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme != "https" or parts.port not in (None, 443):
        return None
    return _APP_BY_API_HOST.get(host or "")


def _without_credentials(api_url: str) -> str:
    # The CLI refuses credentials in the URL; this page must not show them even if a caller did not.
    try:
        parts = urlsplit(api_url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(invalid URL)"
