"""The default of every setting, in one place: the CLI, --help, the docs table and Config read them here."""

from __future__ import annotations

from typing import Final

CACHE_TTL_SECONDS = 60.0
CONCURRENCY = 8
REQUEST_TIMEOUT_SECONDS = 10.0
REFRESH_TIMEOUT_SECONDS = 60.0
#: Census publishes no rate limit and the token is shared with the customer's orchestrators: 10 requests a
#: second (600 a minute) reads about 500 syncs per 60 s TTL, which covers most workspaces, while a large one
#: is read by priority instead of at 80+ requests a second. 0 turns the budget off.
MAX_REQUESTS_PER_SECOND = 10.0
#: Largest API response body read; a bigger one is a failed request, not an out-of-memory kill.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Buckets of census_sync_run_duration_seconds: 10 s to 6 h, as Census runs take.
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0)
#: Run durations as one histogram per workspace: per sync they would be 15 of a sync's ~30 series.
DURATION_HISTOGRAM: Final = "workspace"
#: Record totals per workspace: nothing per sync reads them (alerts use the newest run's counts).
RECORD_TOTALS: Final = "workspace"
#: The newest run's id, completed and scheduled times and the last failure time: nothing reads them.
RUN_DETAILS = False
API_VERSION: Final = "v1"
WORKSPACE = "default"
LISTEN_ADDRESS = ":10049"
LISTEN_PORT = 10049
TELEMETRY_PATH = "/metrics"
#: How long a web config change that drops basic auth or TLS must stay unchanged before it applies.
WEB_CONFIG_SETTLE_SECONDS = 30.0
LOG_LEVEL = "info"
LOG_FORMAT = "logfmt"
#: While webhooks are healthy, a sync no event announced is still read this often (docs/webhooks.md).
WEBHOOK_RECONCILE_INTERVAL_SECONDS = 3600.0
#: How long after polling found a run its webhook event may still arrive before it counts as unannounced.
WEBHOOK_ANNOUNCEMENT_GRACE_SECONDS = 300.0
#: Webhook deliveries a second from one source address (an Ingress is one address for all of Census).
WEBHOOK_MAX_REQUESTS_PER_SECOND = 50.0
DEMO_SEED = 0
DEMO_SYNCS = 25
