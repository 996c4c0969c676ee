"""Command line: flags (each with an environment variable) -> Config -> a running Exporter."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from census_exporter import __version__
from census_exporter.census.client import EU_API_URL, US_API_URL
from census_exporter.config import Config, TokenError, TokenSource
from census_exporter.logs import LEVELS, setup_logging
from census_exporter.server import parse_listen_address
from census_exporter.state import DEFAULT_DURATION_BUCKETS
from census_exporter.web_config import WebConfigError, load_web_config

log = logging.getLogger("census_exporter")

EXIT_USAGE = 2


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _listen_address(text: str) -> tuple[str, int]:
    try:
        return parse_listen_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _buckets(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None
    if not values or any(b <= 0 for b in values) or list(values) != sorted(set(values)):
        raise argparse.ArgumentTypeError("buckets must be positive and strictly increasing")
    return values


def _telemetry_path(text: str) -> str:
    if not text.startswith("/") or text in ("/", "/healthz", "/readyz"):
        raise argparse.ArgumentTypeError(f"must start with / and not clash with other pages: {text!r}")
    return text


def _web_config_file(text: str) -> str:
    try:
        load_web_config(text)
    except WebConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (naming the flag), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Every flag, with its environment variable and default."""
    env = os.environ.get
    parser = _Parser(
        prog="census-exporter",
        description="Prometheus exporter for Census (Fivetran Activations) sync runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--census.token-file",
        dest="token_file",
        default=env("CENSUS_API_TOKEN_FILE"),
        metavar="PATH",
        help="File holding the API token, re-read when it changes (env CENSUS_API_TOKEN_FILE). "
        "Otherwise the token comes from env CENSUS_API_TOKEN.",
    )
    add(
        "--census.api-url",
        dest="api_url",
        default=env("CENSUS_API_URL"),
        metavar="URL",
        help=f"Census API base URL (env CENSUS_API_URL; default {US_API_URL}).",
    )
    add(
        "--census.region",
        dest="region",
        choices=["us", "eu"],
        default=env("CENSUS_REGION"),
        help="Shortcut for the API URL of a data region (env CENSUS_REGION).",
    )
    add(
        "--census.workspace",
        dest="workspace",
        default=env("CENSUS_WORKSPACE", "default"),
        metavar="NAME",
        help="Value of the workspace label (env CENSUS_WORKSPACE).",
    )
    add(
        "--census.cache-ttl",
        dest="cache_ttl",
        type=_positive(float),
        default=env("CENSUS_CACHE_TTL", "60"),
        metavar="SECONDS",
        help="Oldest data a scrape may be served (env CENSUS_CACHE_TTL).",
    )
    add(
        "--census.concurrency",
        dest="concurrency",
        type=_positive(int),
        default=env("CENSUS_CONCURRENCY", "8"),
        metavar="N",
        help="Parallel API requests during a refresh (env CENSUS_CONCURRENCY).",
    )
    add(
        "--census.request-timeout",
        dest="request_timeout",
        type=_positive(float),
        default=env("CENSUS_REQUEST_TIMEOUT", "10"),
        metavar="SECONDS",
        help="Timeout of one API request (env CENSUS_REQUEST_TIMEOUT).",
    )
    add(
        "--census.refresh-timeout",
        dest="refresh_timeout",
        type=_positive(float),
        default=env("CENSUS_REFRESH_TIMEOUT", "60"),
        metavar="SECONDS",
        help="Deadline of one whole refresh, retries included (env CENSUS_REFRESH_TIMEOUT).",
    )
    add(
        "--census.duration-buckets",
        dest="duration_buckets",
        type=_buckets,
        default=env("CENSUS_DURATION_BUCKETS", ",".join(f"{b:g}" for b in DEFAULT_DURATION_BUCKETS)),
        metavar="S,S,...",
        help="Buckets of census_sync_run_duration_seconds (env CENSUS_DURATION_BUCKETS).",
    )
    add(
        "--web.listen-address",
        dest="listen_address",
        type=_listen_address,
        default=env("WEB_LISTEN_ADDRESS", ":10049"),
        metavar="[HOST]:PORT",
        help="Address to serve on (env WEB_LISTEN_ADDRESS).",
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        type=_telemetry_path,
        default=env("WEB_TELEMETRY_PATH", "/metrics"),
        metavar="PATH",
        help="Path of the metrics page (env WEB_TELEMETRY_PATH).",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        type=_web_config_file,
        default=env("WEB_CONFIG_FILE"),
        metavar="PATH",
        help="TLS and basic-auth settings in the exporter-toolkit format, re-read when they change "
        "(env WEB_CONFIG_FILE; see docs/security.md).",
    )
    add(
        "--log.level",
        dest="log_level",
        choices=sorted(LEVELS),
        default=env("LOG_LEVEL", "info"),
        help="Lowest level logged (env LOG_LEVEL).",
    )
    add(
        "--log.format",
        dest="log_format",
        choices=["logfmt", "json"],
        default=env("LOG_FORMAT", "logfmt"),
        help="Log line format (env LOG_FORMAT).",
    )
    add(
        "--demo",
        action="store_true",
        default=env("CENSUS_DEMO", "") in ("1", "true"),
        help="Run against the built-in simulated workspace; no token needed (env CENSUS_DEMO).",
    )
    add(
        "--demo.seed",
        dest="demo_seed",
        type=int,
        default=env("CENSUS_DEMO_SEED"),
        metavar="N",
        help="Seed of the demo workspace, for a repeatable history (env CENSUS_DEMO_SEED).",
    )
    add(
        "--demo.syncs",
        dest="demo_syncs",
        type=_positive(int),
        default=env("CENSUS_DEMO_SYNCS", "25"),
        metavar="N",
        help="Number of syncs in the demo workspace (env CENSUS_DEMO_SYNCS).",
    )
    add("--version", action="version", version=f"census-exporter {__version__}")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse flags and environment into a Config; exits 2 with one line naming the flag on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.api_url and args.region:
        parser.error("argument --census.api-url: not allowed together with --census.region")
    api_url = args.api_url or (EU_API_URL if args.region == "eu" else US_API_URL)
    if not api_url.startswith(("http://", "https://")):
        parser.error(f"argument --census.api-url: must be an http(s) URL, got {api_url!r}")
    try:
        if args.token_file:
            token = TokenSource(path=args.token_file)
            token()
        else:
            token = TokenSource(value=os.environ.get("CENSUS_API_TOKEN"))
    except TokenError as error:
        parser.error(f"argument --census.token-file: {error}")
    if not args.demo and not token():
        parser.error("no API token: set CENSUS_API_TOKEN or --census.token-file (or use --demo)")
    host, port = args.listen_address
    return Config(
        api_url=api_url,
        token=token,
        workspace=args.workspace,
        cache_ttl_seconds=args.cache_ttl,
        concurrency=args.concurrency,
        request_timeout_seconds=args.request_timeout,
        refresh_timeout_seconds=args.refresh_timeout,
        listen_host=host,
        listen_port=port,
        telemetry_path=args.telemetry_path,
        log_level=args.log_level,
        log_format=args.log_format,
        duration_buckets=args.duration_buckets,
        demo=args.demo,
        demo_seed=args.demo_seed,
        demo_syncs=args.demo_syncs,
        web_config_file=args.web_config_file,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter until SIGINT or SIGTERM."""
    from census_exporter.exporter import Exporter  # noqa: PLC0415 - keep --help fast

    config = parse_config(argv)
    setup_logging(config.log_level, config.log_format)
    simulator = None
    if config.demo:
        from dataclasses import replace  # noqa: PLC0415

        from census_exporter.demo import DEMO_TOKEN, start_demo  # noqa: PLC0415

        simulator = start_demo(seed=config.demo_seed or 0, syncs=config.demo_syncs)
        config = replace(config, api_url=simulator.url, token=TokenSource(value=DEMO_TOKEN))
        log.info("demo workspace: simulated Census API at %s", simulator.url)
    try:
        exporter = Exporter(config)
    except OSError as error:
        print(
            f"census-exporter: cannot listen on --web.listen-address: {error.strerror}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    exporter.start()
    host = config.listen_host or "0.0.0.0"  # noqa: S104 - only for the log line
    log.info(
        "census-exporter %s listening on http://%s:%d%s (workspace %s)",
        __version__,
        f"[{host}]" if ":" in host else host,
        exporter.port,
        config.telemetry_path,
        config.workspace,
    )
    stop.wait()
    log.info("shutting down")
    exporter.close()
    if simulator is not None:
        simulator.close()
    return 0
