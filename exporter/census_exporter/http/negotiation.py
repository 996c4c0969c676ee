"""Content negotiation of a scrape: which of two formats ``Accept`` asks for, and whether gzip is accepted.

prometheus_client copies the requested version into the content type; the exporter answers one of exactly
two formats, each rendered once per view (:mod:`census_exporter.http.view_cache`).
"""

from __future__ import annotations

OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def canonical_accept(accept: str) -> str:
    """One of the two formats the exporter serves: OpenMetrics when ``Accept`` lists it with a q-value
    above 0, else the text format.

    prometheus_client copies the requested version into the content type; a client sending ever new
    versions must still get one of two answers, each rendered once per view.
    """
    qualities = _qualities(accept)
    return OPENMETRICS_ACCEPT if qualities.get("application/openmetrics-text", 0.0) > 0 else ""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` admits gzip: named with a q-value above 0 or, when not named at all,
    covered by a ``*`` above 0 (RFC 9110 12.5.3)."""
    qualities = _qualities(accept_encoding)
    return qualities.get("gzip", qualities.get("*", 0.0)) > 0


def _qualities(header: str) -> dict[str, float]:
    """Each media range or coding of an ``Accept``-style header with its q-value (the highest when one is
    listed twice); a q-value that is not a number from 0 to 1 counts as 0."""
    qualities: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:  # also NaN
                    quality = 0.0
        qualities[name] = max(quality, qualities.get(name, 0.0))
    return qualities
