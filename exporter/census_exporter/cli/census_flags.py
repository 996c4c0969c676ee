"""The flags about Census: which workspace, how its API is read, and what is exported of it.

In the order --help and docs/configuration.md list them (:func:`census_exporter.cli.flags.build_parser`).
"""

from __future__ import annotations

from census_exporter import defaults
from census_exporter.census.client import API_VERSIONS, EU_API_URL, US_API_URL, US_API_V2_URL
from census_exporter.cli.api_versions import V1_RETIREMENT_DATE
from census_exporter.cli.parser import Parser
from census_exporter.cli.values import api_url, buckets, group_id, loaded_workspaces_file, workspace_label
from census_exporter.converters import Bytes, Choice, NumberRange, format_bytes


def add_workspace_flags(parser: Parser) -> None:
    """The workspace the flags describe, or the workspaces file that replaces them."""
    add = parser.add_argument
    add(
        "--config.file",
        dest="config_file",
        env="CENSUS_EXPORTER_CONFIG_FILE",
        legacy_env="CENSUS_CONFIG_FILE",
        convert=loaded_workspaces_file,
        metavar="PATH",
        help="The workspaces file: several workspaces (V1) and groups (V2), each with its own token, "
        "and discovery of every workspace a token can see (docs/configuration.md). Replaces the "
        "--census.api-url, --census.region, --census.token-file, --census.api-version, --census.group-id "
        "and --census.workspace flags, which define a single workspace.",
    )
    add(
        "--census.token-file",
        dest="token_file",
        env="CENSUS_API_TOKEN_FILE",
        metavar="PATH",
        help="Read the API token from this file instead of CENSUS_API_TOKEN; the file is read again whenever "
        "it changes (Kubernetes secret rotation). Surrounding whitespace is ignored.",
    )
    add(
        "--census.api-url",
        dest="api_url",
        env="CENSUS_API_URL",
        convert=api_url,
        shown_default=US_API_URL,
        metavar="URL",
        help=f"The Census API base URL; with --census.api-version v2 the default is {US_API_V2_URL}. No "
        "user:password@ in it: the token is sent as a header.",
    )
    add(
        "--census.api-version",
        dest="api_version",
        env="CENSUS_API_VERSION",
        convert=Choice(API_VERSIONS),
        default=defaults.API_VERSION,
        metavar="v1|v2",
        help=f"The Census API dialect. v1 takes a workspace API key and is retired on {V1_RETIREMENT_DATE}; "
        "v2 takes an Activations personal access token (and optionally --census.group-id).",
    )
    add(
        "--census.group-id",
        dest="group_id",
        env="CENSUS_GROUP_ID",
        convert=group_id,
        metavar="ID",
        help="The Fivetran group (the former workspace) to watch with --census.api-version v2, labelled "
        "--census.workspace; without it every group the token sees is watched, each labelled by its name "
        "or id. Refused with v1.",
    )
    add(
        "--census.region",
        dest="region",
        env="CENSUS_REGION",
        convert=Choice(["us", "eu"]),
        metavar="us|eu",
        help=f"Shortcut for the API URL of a data region: eu is {EU_API_URL} (with v2 the same host at "
        "/api/v2, UNCONFIRMED by Census: if it does not answer, give --census.api-url). Not together with "
        "--census.api-url.",
    )
    add(
        "--census.workspace",
        dest="workspace",
        env="CENSUS_WORKSPACE",
        convert=workspace_label,
        default=defaults.WORKSPACE,
        metavar="NAME",
        help="Value of the workspace label of the workspace these flags describe (--config.file: several).",
    )


def add_api_reading_flags(parser: Parser) -> None:
    """How the Census API is read: the cache TTL, concurrency, timeouts, the request budget and the limits."""
    add = parser.add_argument
    add(
        "--census.cache-ttl",
        dest="cache_ttl",
        env="CENSUS_CACHE_TTL",
        convert=NumberRange(float, 1, 86400),
        default=defaults.CACHE_TTL_SECONDS,
        shown_default=f"{defaults.CACHE_TTL_SECONDS:g}",
        metavar="SECONDS",
        help="The oldest data a scrape may be served. Also the least time between two refreshes, so a "
        "failing API is not hammered.",
    )
    add(
        "--census.concurrency",
        dest="concurrency",
        env="CENSUS_CONCURRENCY",
        convert=NumberRange(int, 1, 64),
        default=defaults.CONCURRENCY,
        metavar="N",
        help="API requests in flight at once during a refresh.",
    )
    add(
        "--census.request-timeout",
        dest="request_timeout",
        env="CENSUS_REQUEST_TIMEOUT",
        convert=NumberRange(float, 0.1, 300),
        default=defaults.REQUEST_TIMEOUT_SECONDS,
        shown_default=f"{defaults.REQUEST_TIMEOUT_SECONDS:g}",
        metavar="SECONDS",
        help="Timeout of one HTTP request.",
    )
    add(
        "--census.max-requests-per-second",
        dest="max_requests_per_second",
        env="CENSUS_MAX_REQUESTS_PER_SECOND",
        convert=NumberRange(float, 0, 10000),
        default=defaults.MAX_REQUESTS_PER_SECOND,
        shown_default=f"{defaults.MAX_REQUESTS_PER_SECOND:g}",
        metavar="N",
        help="Request budget: HTTP requests per second to the Census API, over every workspace, discovery "
        "and retry of the process (a burst of one; 0: no budget). When it cannot read every sync within the "
        "cache TTL, syncs are read by priority (docs/configuration.md).",
    )
    add(
        "--census.max-syncs-per-workspace",
        dest="max_syncs_per_workspace",
        env="CENSUS_MAX_SYNCS_PER_WORKSPACE",
        convert=NumberRange(int, 1, 1_000_000),
        default=defaults.MAX_SYNCS_PER_WORKSPACE,
        metavar="N",
        help="Most syncs watched per workspace: the sync list is read up to this many (the first ones "
        "listed) and the rest is left out, counted in census_syncs_left_out (docs/sizing.md).",
    )
    add(
        "--census.max-syncs",
        dest="max_syncs",
        env="CENSUS_MAX_SYNCS",
        convert=NumberRange(int, 1, 10_000_000),
        default=defaults.MAX_SYNCS,
        metavar="N",
        help="Most syncs watched in all, over every workspace: each workspace's listing gets what the "
        "others' leave (first come, first served; a workspace keeps what it has); the rest is left out, "
        "counted in census_syncs_left_out (docs/sizing.md).",
    )
    add(
        "--census.max-workspaces-per-discovery",
        dest="max_workspaces_per_discovery",
        env="CENSUS_MAX_WORKSPACES_PER_DISCOVERY",
        convert=NumberRange(int, 1, 100_000),
        default=defaults.MAX_WORKSPACES_PER_DISCOVERY,
        metavar="N",
        help="Most workspaces or groups one `auto: true` entry watches (the first ones by Census id); the "
        "rest is counted in census_discovery_workspaces_left_out.",
    )
    add(
        "--census.max-workspaces",
        dest="max_workspaces",
        env="CENSUS_MAX_WORKSPACES",
        convert=NumberRange(int, 1, 100_000),
        default=defaults.MAX_WORKSPACES,
        metavar="N",
        help="Most workspaces watched in all: named ones first, then discovered ones as their entries list "
        "them; discovered ones beyond it are counted in census_discovery_workspaces_left_out.",
    )
    add(
        "--census.refresh-workers",
        dest="refresh_workers",
        env="CENSUS_REFRESH_WORKERS",
        convert=NumberRange(int, 1, 256),
        default=defaults.REFRESH_WORKERS,
        metavar="N",
        help="Workspace refreshes running at once over the whole fleet; more wait for a free worker. Bounds "
        "the threads (each refresh reads with up to --census.concurrency of its own), whatever the number "
        "of slow or dead workspaces.",
    )
    add(
        "--census.refresh-timeout",
        dest="refresh_timeout",
        env="CENSUS_REFRESH_TIMEOUT",
        convert=NumberRange(float, 1, 3600),
        default=defaults.REFRESH_TIMEOUT_SECONDS,
        shown_default=f"{defaults.REFRESH_TIMEOUT_SECONDS:g}",
        metavar="SECONDS",
        help="Deadline of a whole refresh, retries included. Syncs not read by then keep their previous "
        "values and census_up is 0.",
    )
    add(
        "--census.max-response-bytes",
        dest="max_response_bytes",
        env="CENSUS_MAX_RESPONSE_BYTES",
        convert=Bytes(64 * 1024, 1024**3),
        default=defaults.MAX_RESPONSE_BYTES,
        shown_default=format_bytes(defaults.MAX_RESPONSE_BYTES),
        metavar="BYTES",
        help="Largest API response read; a larger one fails that request instead of filling the memory. "
        "Bytes, or with a unit: KiB, MiB, GiB (also KB, MB, GB).",
    )


def add_exposition_flags(parser: Parser) -> None:
    """What is exported per workspace or per sync: the duration histogram, record totals and run details."""
    add = parser.add_argument
    add(
        "--census.duration-buckets",
        dest="duration_buckets",
        env="CENSUS_DURATION_BUCKETS",
        convert=buckets,
        default=defaults.DURATION_BUCKETS,
        shown_default=",".join(f"{b:g}" for b in defaults.DURATION_BUCKETS),
        metavar="S,S,...",
        help="Buckets of the run duration histogram, in seconds: finite, positive and strictly increasing "
        "(the +Inf bucket is always added).",
    )
    add(
        "--census.duration-histogram",
        dest="duration_histogram",
        env="CENSUS_DURATION_HISTOGRAM",
        convert=Choice(["workspace", "sync", "off"]),
        default=defaults.DURATION_HISTOGRAM,
        metavar="WHERE",
        help="Run durations as a histogram: workspace (census_workspace_run_duration_seconds, one per "
        "workspace), sync (census_sync_run_duration_seconds, 15 series per sync with the default buckets) "
        "or off.",
    )
    add(
        "--census.record-totals",
        dest="record_totals",
        env="CENSUS_RECORD_TOTALS",
        convert=Choice(["workspace", "sync"]),
        default=defaults.RECORD_TOTALS,
        metavar="WHERE",
        help="Record counters summed over counted runs: workspace (census_workspace_records_*_total) or "
        "sync (census_sync_records_*_total, 5 series per sync).",
    )
    add(
        "--census.run-details",
        dest="run_details",
        env="CENSUS_RUN_DETAILS",
        action="store_true",
        default=defaults.RUN_DETAILS,
        shown_default="false",
        help="Also export the newest run's id, completed and scheduled times and the last failure time "
        "(4 series per sync). The variable takes true/false, yes/no, on/off or 1/0.",
    )
