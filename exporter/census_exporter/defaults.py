"""The default of every setting, in one place: the CLI, --help, the docs table and Config read them here."""

from __future__ import annotations

CACHE_TTL_SECONDS = 60.0
CONCURRENCY = 8
REQUEST_TIMEOUT_SECONDS = 10.0
REFRESH_TIMEOUT_SECONDS = 60.0
#: Largest API response body read; a bigger one is a failed request, not an out-of-memory kill.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
WORKSPACE = "default"
LISTEN_ADDRESS = ":10049"
LISTEN_PORT = 10049
TELEMETRY_PATH = "/metrics"
LOG_LEVEL = "info"
LOG_FORMAT = "logfmt"
DEMO_SEED = 0
DEMO_SYNCS = 25
