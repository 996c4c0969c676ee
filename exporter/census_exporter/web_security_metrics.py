"""The web config's reloads and basic auth's checks as metric families, for the exporter's own registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from census_exporter.basic_auth import BasicAuth
from census_exporter.web_config_reload import WebConfigSource


class WebSecurityCollector:
    """The web config's reloads and basic auth's checks, for the exporter's registry."""

    def __init__(self, source: WebConfigSource, basic_auth: BasicAuth) -> None:
        self._source = source
        self._basic_auth = basic_auth

    def collect(self) -> Iterator[Metric]:
        """The families as they are now."""
        reloads = CounterMetricFamily(
            "census_exporter_web_config_reloads",
            "Changes of the --web.config.file seen, by result: applied, rejected (unreadable, invalid or "
            "empty: the running config stays), weakening_deferred (drops protection: waits for the settle "
            "period), weakening_applied (such a change, unchanged for the settle period).",
            labels=["result"],
        )
        for result, count in self._source.reloads.items():
            reloads.add_metric([result], count)
        yield reloads
        yield GaugeMetricFamily(
            "census_exporter_web_config_weakening_pending",
            "1 while a web config change that drops basic auth or TLS (or relaxes TLS) waits for its settle "
            "period, else 0.",
            value=1 if self._source.weakening_pending else 0,
        )
        checks = CounterMetricFamily(
            "census_exporter_basic_auth_checks",
            "Requests checked against basic_auth_users, by result: cached (a credential verified recently), "
            "verified, failed (wrong password or unknown user), busy (refused 429: too many bcrypt checks in "
            "progress), missing (no or malformed credentials).",
            labels=["result"],
        )
        for outcome, count in self._basic_auth.checks.items():
            checks.add_metric([outcome], count)
        yield checks
        yield CounterMetricFamily(
            "census_exporter_basic_auth_password_verifications",
            "bcrypt verifications run (one per check not answered from the cache, busy or missing).",
            value=self._basic_auth.verifications,
        )
