"""The landing page at ``/``: links, and the state of the current snapshot at a glance (no API call)."""

from __future__ import annotations

import html
import time

from census_exporter import __version__
from census_exporter.snapshot import Snapshot


def render_landing_page(snapshot: Snapshot, telemetry_path: str) -> bytes:
    """The HTML of ``/`` for ``snapshot``."""
    path = html.escape(telemetry_path)
    if not snapshot.refreshed:
        state = "first refresh in progress"
    else:
        state = "up" if snapshot.up else "down: the last refresh had errors (see the log)"
    last = snapshot.last_success_timestamp
    failing = sum(
        1 for sync in snapshot.syncs.values() if sync.latest_run and sync.latest_run.status == "failed"
    )
    rows = [
        ("Workspace", snapshot.workspace),
        ("Census API", state),
        (
            "Last error-free refresh",
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last)) if last else "none yet",
        ),
        ("Syncs", str(len(snapshot.syncs))),
        ("Newest run failed", str(failing)),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Census Exporter</title></head><body>"
        "<h1>Census Exporter</h1>"
        f"<p>Version {html.escape(__version__)}</p>"
        f'<table style="text-align:left">{table}</table><ul>'
        f'<li><a href="{path}">Metrics</a></li>'
        '<li><a href="/healthz">Health</a></li>'
        '<li><a href="/readyz">Readiness</a></li>'
        "</ul></body></html>\n"
    ).encode()
