"""The flags about the exporter's own process: listeners, web config, webhooks, storage, logging and the demo.

In the order --help and docs/configuration.md list them (:func:`census_exporter.cli.flags.build_parser`).
"""

from __future__ import annotations

from census_exporter import defaults
from census_exporter.cli.parser import Parser
from census_exporter.cli.tokens import WEBHOOK_SECRET_ENV
from census_exporter.cli.values import (
    comma_paths,
    listen_addresses,
    optional_listen_address,
    storage_path,
    telemetry_path,
    web_config_file,
)
from census_exporter.converters import Choice, NumberRange
from census_exporter.logs import LEVELS, parse_level


def add_web_flags(parser: Parser) -> None:
    """Where the metrics and the webhook receiver are served, and the web config that guards them."""
    add = parser.add_argument
    add(
        "--web.listen-address",
        dest="listen_address",
        env="CENSUS_EXPORTER_WEB_LISTEN_ADDRESS",
        legacy_env="WEB_LISTEN_ADDRESS",
        convert=listen_addresses,
        default=listen_addresses(defaults.LISTEN_ADDRESS),
        shown_default=defaults.LISTEN_ADDRESS,
        metavar="[HOST]:PORT",
        action="append",
        help="Where to serve; repeat the flag to serve on several addresses (the variable: separated by "
        "commas). :10049 is every interface, IPv4 and IPv6 (IPv4 only where the machine has no IPv6); "
        "0.0.0.0:10049 is IPv4 only; [::1]:10049 is the IPv6 loopback.",
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        env="CENSUS_EXPORTER_WEB_TELEMETRY_PATH",
        legacy_env="WEB_TELEMETRY_PATH",
        convert=telemetry_path,
        default=defaults.TELEMETRY_PATH,
        metavar="PATH",
        help="Path of the metrics page.",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        env="CENSUS_EXPORTER_WEB_CONFIG_FILE",
        legacy_env="WEB_CONFIG_FILE",
        convert=web_config_file,
        metavar="PATH",
        help="TLS and basic-auth settings in the exporter-toolkit format, re-read when they change "
        "(see docs/security.md).",
    )
    add(
        "--web.config.settle-period",
        dest="web_config_settle",
        env="CENSUS_EXPORTER_WEB_CONFIG_SETTLE_PERIOD",
        convert=NumberRange(float, 1, 86400),
        default=defaults.WEB_CONFIG_SETTLE_SECONDS,
        shown_default=f"{defaults.WEB_CONFIG_SETTLE_SECONDS:g}",
        metavar="SECONDS",
        help="A --web.config.file change that drops basic auth or TLS, or relaxes client_auth_type or "
        "min_version, applies only once the file has stayed unchanged this long (a file rewritten in place "
        "passes through such states); until then the running config stays in force.",
    )
    add(
        "--web.webhook-listen-address",
        dest="webhook_listen_address",
        env="CENSUS_EXPORTER_WEB_WEBHOOK_LISTEN_ADDRESS",
        convert=optional_listen_address,
        shown_default="off",
        metavar="[HOST]:PORT",
        help="Serve the Census webhook receiver (POST /webhooks/census/<workspace>) on this separate "
        "listener, e.g. :10050; off by default. Needs a webhook secret per workspace (docs/webhooks.md).",
    )
    add(
        "--web.webhook-secret-file",
        dest="webhook_secret_files",
        env="CENSUS_EXPORTER_WEB_WEBHOOK_SECRET_FILE",
        convert=comma_paths,
        metavar="PATH[,PATH]",
        help="The webhook secret(s) of the workspace the flags describe, one file each, read again when "
        f"they change; several during a rotation. {WEBHOOK_SECRET_ENV} may hold one instead. With "
        "--config.file: webhook_secret_file / webhook_secret_env per workspace.",
    )
    add(
        "--census.webhook-reconcile-interval",
        dest="webhook_reconcile_interval",
        env="CENSUS_WEBHOOK_RECONCILE_INTERVAL",
        convert=NumberRange(float, 1, 86400),
        default=defaults.WEBHOOK_RECONCILE_INTERVAL_SECONDS,
        shown_default=f"{defaults.WEBHOOK_RECONCILE_INTERVAL_SECONDS:g}",
        metavar="SECONDS",
        help="While a workspace's webhooks are healthy, a sync no event announced is read only this often "
        "(events are read at once); when a run goes unannounced, every sync is polled again for as long.",
    )
    add(
        "--web.webhook-max-requests-per-second",
        dest="webhook_max_requests_per_second",
        env="CENSUS_EXPORTER_WEB_WEBHOOK_MAX_REQUESTS_PER_SECOND",
        convert=NumberRange(float, 1, 100000),
        default=defaults.WEBHOOK_MAX_REQUESTS_PER_SECOND,
        shown_default=f"{defaults.WEBHOOK_MAX_REQUESTS_PER_SECOND:g}",
        metavar="N",
        help="Refused webhook requests (bad signature, malformed, unknown workspace...) a second one source "
        "may make (an address; with IPv6, its /64 prefix; bursts of twice that); more are answered 429. "
        "Verified deliveries are never limited (the queue bounds them). Behind an Ingress every request "
        "comes from its address.",
    )


def add_process_flags(parser: Parser) -> None:
    """Where run ledgers are kept, how the process logs, and the built-in demo workspace."""
    add = parser.add_argument
    add(
        "--storage.path",
        dest="storage_path",
        env="CENSUS_EXPORTER_STORAGE_PATH",
        convert=storage_path,
        metavar="DIR",
        help="Keep each workspace's run ledgers (the runs counted and the counters) in this directory, "
        "written before each refresh is served: after a restart the exporter counts every run that "
        "finished meanwhile, once, and its counters continue. Without it counters start at 0 on every start. "
        "One exporter per directory (docs/metrics.md, Counting across restarts).",
    )
    add(
        "--log.level",
        dest="log_level",
        env="CENSUS_EXPORTER_LOG_LEVEL",
        legacy_env="LOG_LEVEL",
        convert=parse_level,
        default=defaults.LOG_LEVEL,
        metavar="LEVEL",
        help=f"Lowest level logged: {', '.join(LEVELS)} (any case; warning means warn).",
    )
    add(
        "--log.format",
        dest="log_format",
        env="CENSUS_EXPORTER_LOG_FORMAT",
        legacy_env="LOG_FORMAT",
        convert=Choice(["logfmt", "json"]),
        default=defaults.LOG_FORMAT,
        metavar="FORMAT",
        help="logfmt or json, one line per event on stderr.",
    )
    add(
        "--demo",
        dest="demo",
        env="CENSUS_EXPORTER_DEMO",
        legacy_env="CENSUS_DEMO",
        action="store_true",
        default=False,
        shown_default="false",
        help="Start the built-in simulated Census API on loopback and export it; no token needed. The "
        "variable takes true/false, yes/no, on/off or 1/0.",
    )
    add(
        "--demo.seed",
        dest="demo_seed",
        env="CENSUS_EXPORTER_DEMO_SEED",
        legacy_env="CENSUS_DEMO_SEED",
        convert=NumberRange(int, 0, 2**32 - 1),
        default=defaults.DEMO_SEED,
        metavar="N",
        help="Seed of the demo workspace: the same seed gives the same syncs and run history.",
    )
    add(
        "--demo.syncs",
        dest="demo_syncs",
        env="CENSUS_EXPORTER_DEMO_SYNCS",
        legacy_env="CENSUS_DEMO_SYNCS",
        convert=NumberRange(int, 1, 20000),
        default=defaults.DEMO_SYNCS,
        metavar="N",
        help="Number of syncs in the demo workspace.",
    )
