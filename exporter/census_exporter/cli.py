"""Command line: flags (each with an environment variable) -> Config -> a running Exporter.

A flag and its environment variable go through the same converter, so both are validated alike: argparse
alone checks neither ``choices`` nor ``type`` for a default that is not a string, which is how an
environment variable used to slip past it.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from census_exporter import __version__, defaults
from census_exporter.build import BUILD
from census_exporter.census.client import (
    API_VERSIONS,
    EU_API_URL,
    US_API_URL,
    US_API_V2_URL,
    default_api_url,
    validate_base_url,
)
from census_exporter.config import (
    Config,
    Discovery,
    EmptyTokenError,
    Exposition,
    TokenError,
    TokenSource,
    Workspace,
)
from census_exporter.logs import LEVELS, parse_level, setup_logging
from census_exporter.server import parse_listen_address
from census_exporter.web_config import WebConfigError, load_web_config
from census_exporter.workspaces import (
    AutoDiscovery,
    WorkspaceConfig,
    WorkspacesFile,
    WorkspacesFileError,
    entry_error,
    load_workspaces_file,
    workspace_title,
)

if TYPE_CHECKING:
    from census_exporter.exporter import Exporter

log = logging.getLogger("census_exporter")

EXIT_USAGE = 2
TOKEN_ENV = "CENSUS_API_TOKEN"  # noqa: S105 - the variable's name, not a token
#: The single workspace's webhook secret, when it does not come from a file (never a flag: argv is public).
WEBHOOK_SECRET_ENV = "CENSUS_EXPORTER_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
WEBHOOKS_DOC = "docs/webhooks.md"
SECRET_FILE_FLAG = "argument --web.webhook-secret-file (env CENSUS_EXPORTER_WEB_WEBHOOK_SECRET_FILE)"  # noqa: S105

Converter = Callable[[str], Any]


class NumberRange:
    """A number of ``kind`` within ``low..high`` inclusive."""

    def __init__(self, kind: type[int] | type[float], low: float, high: float) -> None:
        self.kind = kind
        self.low = low
        self.high = high

    @property
    def range_text(self) -> str:
        """The accepted range, as --help and the docs show it."""
        if self.kind is int:
            return f"{int(self.low)} to {int(self.high)}"
        return f"{self.low:g} to {self.high:g}"

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text.strip())
        except ValueError:
            noun = "whole number" if self.kind is int else "number"
            raise ValueError(f"expected a {noun} from {self.range_text}, got {text!r}") from None
        if not self.low <= value <= self.high:  # also refuses NaN
            raise ValueError(f"must be from {self.range_text}, got {text!r}")
        return value


_BYTE_UNITS = {
    **{"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3},
    **{"kb": 1000, "mb": 1000**2, "gb": 1000**3},
}


class _Bytes(NumberRange):
    """A size in bytes: ``16777216``, ``16MiB`` or ``16MB`` (case-insensitive)."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__(int, low, high)

    @property
    def range_text(self) -> str:
        """The accepted range, as --help and the docs show it."""
        return f"{_format_bytes(int(self.low))} to {_format_bytes(int(self.high))}"

    def __call__(self, text: str) -> int:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _BYTE_UNITS:
            raise ValueError(f"expected bytes such as 16777216 or 16MiB, got {text!r}")
        value = int(match.group(1)) * _BYTE_UNITS[unit]
        if not self.low <= value <= self.high:
            raise ValueError(f"must be from {self.range_text}, got {text!r}")
        return value


def _format_bytes(value: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if value % _BYTE_UNITS[unit.lower()] == 0:
            return f"{value // _BYTE_UNITS[unit.lower()]}{unit}"
    return str(value)


class _Choice:
    """One of ``values``, case-insensitive, with ``aliases`` for other tools' spellings."""

    def __init__(self, values: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
        self.values = tuple(values)
        self.aliases = dict(aliases or {})

    def __call__(self, text: str) -> str:
        name = text.strip().lower()
        name = self.aliases.get(name, name)
        if name not in self.values:
            raise ValueError(f"{text!r} is not one of {', '.join(self.values)}")
        return name


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(text: str) -> bool:
    name = text.strip().lower()
    if name in _TRUE or name in _FALSE:
        return name in _TRUE
    raise ValueError(f"expected true/false, yes/no, on/off or 1/0, got {text!r}")


def _api_url(text: str) -> str:
    # validate_base_url's messages never quote the URL, which may hold a password.
    return validate_base_url(text)


_GROUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

V1_RETIREMENT_DATE = "2027-01-15"
MIGRATION_DOC = "docs/census-api-versions.md"


def _group_id(text: str) -> str:
    name = text.strip()
    if not _GROUP_ID.fullmatch(name):
        raise ValueError(
            f"expected a Fivetran group id such as decent_dropsy (letters, digits, _ . -), got {text!r}"
        )
    return name


def _listen_addresses(text: str) -> tuple[tuple[str, int], ...]:
    # Commas separate several addresses in the variable (an IPv6 address has colons, never a comma).
    addresses = tuple(parse_listen_address(part.strip()) for part in text.split(",") if part.strip())
    if not addresses:
        raise ValueError(f"expected [HOST]:PORT, got {text!r}")
    return addresses


def _optional_listen_address(text: str) -> tuple[str, int] | None:
    if text.strip().lower() in ("", "off", "none"):
        return None
    return parse_listen_address(text)


def _paths(text: str) -> tuple[str, ...]:
    paths = tuple(part.strip() for part in text.split(",") if part.strip())
    if not paths:
        raise ValueError("expected one or more comma-separated paths")
    return paths


def _buckets(text: str) -> tuple[float, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected comma-separated seconds, got {text!r}") from None
    for part, value in zip(parts, values, strict=True):
        if not math.isfinite(value):
            # +Inf is always the last bucket: an "inf" bound would be written le="inf" beside it, which
            # OpenMetrics parsers reject, and NaN sorts nowhere.
            raise ValueError(f"buckets must be finite seconds (+Inf is always added), got {part!r}")
    if not values or any(not b > 0 for b in values) or list(values) != sorted(set(values)):
        raise ValueError("buckets must be positive and strictly increasing")
    return values


def _telemetry_path(text: str) -> str:
    if not text.startswith("/") or text in ("/", "/healthz", "/readyz"):
        raise ValueError(f"must start with / and not clash with other pages: {text!r}")
    return text


def _workspace_label(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must not be empty: it is the workspace label of every series")
    if len(value) > 128 or not value.isprintable():
        raise ValueError("must be at most 128 printable characters")
    return value


def _text(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Setting:
    """One flag with its environment variable: how to convert it, its default, and what it means."""

    flag: str
    dest: str
    env: str
    convert: Converter
    default: Any
    #: The default as --help and the docs show it ("" for none).
    shown_default: str
    meaning: str
    metavar: str | None
    #: The accepted range of a numeric flag, for --help and the docs ("" for none).
    range_text: str = ""
    #: The variable's name before the CENSUS_EXPORTER_ prefix ("" for none): ignored, but named in a warning.
    legacy_env: str = ""


def _workspaces_file(text: str) -> WorkspacesFile:
    try:
        return load_workspaces_file(text)
    except WorkspacesFileError as error:
        raise ValueError(str(error)) from None


def _storage_path(text: str) -> str:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{text} is not a directory")
    return text


def _web_config_file(text: str) -> str:
    try:
        load_web_config(text)
    except WebConfigError as error:
        raise ValueError(str(error)) from None
    return text


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (naming the flag), not the whole usage block; flags with env variables."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings: list[Setting] = []
        #: The flags given on the command line or through their environment variable (by dest).
        self.given: set[str] = set()
        #: Warnings found while resolving (an old variable name that is set), to log once logging is set up.
        self.warnings: list[str] = []

    def error(self, message: str, see: str = "--help") -> NoReturn:
        """Exit 2 with one line, ending with where to read more (after any warning found so far)."""
        # Logging is not set up yet; an ignored old variable may be why the configuration is incomplete.
        for warning in self.warnings:
            sys.stderr.write(f"{self.prog}: warning: {warning}\n")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {see})\n")

    def add_argument(
        self,
        *names: str,
        env: str | None = None,
        convert: Converter = _text,
        shown_default: str | None = None,
        legacy_env: str = "",
        **kwargs: Any,
    ) -> argparse.Action:
        """``add_argument``, plus ``env``: the environment variable, converted by ``convert`` like the flag.

        ``legacy_env`` is the variable's former name: never read, only named in a warning when it is set and
        ``env`` is not. Without ``env`` this is plain argparse.
        """
        if env is None:
            return super().add_argument(*names, **kwargs)
        default = kwargs.pop("default", None)
        meaning = kwargs.pop("help")
        if kwargs.get("action") == "store_true":
            convert = _boolean
        range_text = getattr(convert, "range_text", "")
        if shown_default is None:
            shown_default = "" if default is None else str(default)
        suffix = [f"env {env}"]
        if shown_default:
            suffix.append(f"default {shown_default}")
        if range_text:
            suffix.append(f"range {range_text}")
        # argparse %-formats help texts.
        kwargs["help"] = f"{meaning} ({'; '.join(suffix)})".replace("%", "%%")
        action = super().add_argument(*names, default=None, **kwargs)
        self.settings.append(
            Setting(
                flag=names[0],
                dest=action.dest,
                env=env,
                convert=convert,
                default=default,
                shown_default=shown_default,
                meaning=meaning,
                metavar=action.metavar if isinstance(action.metavar, str) else None,
                range_text=range_text,
                legacy_env=legacy_env,
            )
        )
        return action

    def resolve(self, argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
        """Parse ``argv``, then give every flag not on the command line its environment value or default.

        An empty environment variable counts as unset, as in the Prometheus exporters' flag library.
        """
        self.warnings = [
            f"environment variable {setting.legacy_env} is ignored: "
            f"set {setting.env} ({setting.flag}) instead"
            for setting in self.settings
            if setting.legacy_env
            and environ.get(setting.legacy_env, "").strip()
            and not environ.get(setting.env, "").strip()
        ]
        args, unknown = self.parse_known_args(argv)
        if unknown:
            # Only the names: a value that was meant as a token must not be echoed.
            names = sorted({arg.partition("=")[0] for arg in unknown if arg.startswith("-")})
            listed = " ".join(names) or "(values without a flag)"
            self.error(f"unrecognized arguments: {listed}{self._suggest(names)}")
        for setting in self.settings:
            given = getattr(args, setting.dest)
            if given is True:  # a store_true flag on the command line
                self.given.add(setting.dest)
                continue
            if isinstance(given, list):  # a repeatable flag: each occurrence converted, then joined
                self.given.add(setting.dest)
                origin = f"argument {setting.flag} (env {setting.env})"
                try:
                    setattr(args, setting.dest, _joined(setting, given))
                except ValueError as error:
                    self.error(f"{origin}: {error}")
                continue
            if given is not None:
                text, origin = given, f"argument {setting.flag} (env {setting.env})"
            elif environ.get(setting.env, "").strip():
                text = environ[setting.env]
                origin = f"environment variable {setting.env} ({setting.flag})"
            else:
                setattr(args, setting.dest, setting.default)
                continue
            self.given.add(setting.dest)
            try:
                setattr(args, setting.dest, setting.convert(text))
            except ValueError as error:
                self.error(
                    f"{origin}: {error}", WORKSPACES_FILE_DOC if setting.dest == "config_file" else "--help"
                )
        return args

    def _suggest(self, names: Sequence[str]) -> str:
        """``; did you mean --x?`` for the first unknown flag close to a known one, else ""."""
        known = [option for action in self._actions for option in action.option_strings]
        for name in names:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            if close:
                return f"; did you mean {close[0]} (for {name})?"
        return ""


#: The end of --help: the token, which has no flag, and where the rest is documented.
HELP_EPILOG = f"""environment:
  {TOKEN_ENV}  the workspace API token (secret-token:...) with v1, the Activations personal
                    access token with v2; or use --census.token-file, or --config.file's token_env.

Every flag, its variable and the workspaces file: docs/configuration.md
(https://github.com/census-exporter/census-exporter/blob/main/docs/configuration.md)."""


def _joined(setting: Setting, texts: Sequence[str]) -> tuple[Any, ...]:
    """The values of a repeated flag, each converted (to a tuple), in the order given."""
    return tuple(value for text in texts for value in setting.convert(text))


def build_parser() -> _Parser:
    """Every flag, with its environment variable, default and range."""
    parser = _Parser(
        # No abbreviations: `--census.token secret` would be read as --census.token-file and echoed.
        allow_abbrev=False,
        prog="census-exporter",
        description="Prometheus exporter for Census (Fivetran Activations) sync runs.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--config.file",
        dest="config_file",
        env="CENSUS_EXPORTER_CONFIG_FILE",
        legacy_env="CENSUS_CONFIG_FILE",
        convert=_workspaces_file,
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
        convert=_api_url,
        shown_default=US_API_URL,
        metavar="URL",
        help=f"The Census API base URL; with --census.api-version v2 the default is {US_API_V2_URL}. No "
        "user:password@ in it: the token is sent as a header.",
    )
    add(
        "--census.api-version",
        dest="api_version",
        env="CENSUS_API_VERSION",
        convert=_Choice(API_VERSIONS),
        default=defaults.API_VERSION,
        metavar="v1|v2",
        help=f"The Census API dialect. v1 takes a workspace API key and is retired on {V1_RETIREMENT_DATE}; "
        "v2 takes an Activations personal access token (and optionally --census.group-id).",
    )
    add(
        "--census.group-id",
        dest="group_id",
        env="CENSUS_GROUP_ID",
        convert=_group_id,
        metavar="ID",
        help="The Fivetran group (the former workspace) to watch with --census.api-version v2, labelled "
        "--census.workspace; without it every group the token sees is watched, each labelled by its name "
        "or id. Refused with v1.",
    )
    add(
        "--census.region",
        dest="region",
        env="CENSUS_REGION",
        convert=_Choice(["us", "eu"]),
        metavar="us|eu",
        help=f"Shortcut for the API URL of a data region: eu is {EU_API_URL} (with v2 the same host at "
        "/api/v2, UNCONFIRMED by Census: if it does not answer, give --census.api-url). Not together with "
        "--census.api-url.",
    )
    add(
        "--census.workspace",
        dest="workspace",
        env="CENSUS_WORKSPACE",
        convert=_workspace_label,
        default=defaults.WORKSPACE,
        metavar="NAME",
        help="Value of the workspace label of the workspace these flags describe (--config.file: several).",
    )
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
        convert=_Bytes(64 * 1024, 1024**3),
        default=defaults.MAX_RESPONSE_BYTES,
        shown_default=_format_bytes(defaults.MAX_RESPONSE_BYTES),
        metavar="BYTES",
        help="Largest API response read; a larger one fails that request instead of filling the memory. "
        "Bytes, or with a unit: KiB, MiB, GiB (also KB, MB, GB).",
    )
    add(
        "--census.duration-buckets",
        dest="duration_buckets",
        env="CENSUS_DURATION_BUCKETS",
        convert=_buckets,
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
        convert=_Choice(["workspace", "sync", "off"]),
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
        convert=_Choice(["workspace", "sync"]),
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
    add(
        "--web.listen-address",
        dest="listen_address",
        env="CENSUS_EXPORTER_WEB_LISTEN_ADDRESS",
        legacy_env="WEB_LISTEN_ADDRESS",
        convert=_listen_addresses,
        default=_listen_addresses(defaults.LISTEN_ADDRESS),
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
        convert=_telemetry_path,
        default=defaults.TELEMETRY_PATH,
        metavar="PATH",
        help="Path of the metrics page.",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        env="CENSUS_EXPORTER_WEB_CONFIG_FILE",
        legacy_env="WEB_CONFIG_FILE",
        convert=_web_config_file,
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
        convert=_optional_listen_address,
        shown_default="off",
        metavar="[HOST]:PORT",
        help="Serve the Census webhook receiver (POST /webhooks/census/<workspace>) on this separate "
        "listener, e.g. :10050; off by default. Needs a webhook secret per workspace (docs/webhooks.md).",
    )
    add(
        "--web.webhook-secret-file",
        dest="webhook_secret_files",
        env="CENSUS_EXPORTER_WEB_WEBHOOK_SECRET_FILE",
        convert=_paths,
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
        help="Webhook deliveries a second one source address may make (bursts of twice that); more are "
        "answered 429. Behind an Ingress every delivery comes from its address.",
    )
    add(
        "--storage.path",
        dest="storage_path",
        env="CENSUS_EXPORTER_STORAGE_PATH",
        convert=_storage_path,
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
        convert=_Choice(["logfmt", "json"]),
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
    add("--version", action="version", version=BUILD.version_text())
    return parser


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def flag_table_markdown(parser: _Parser | None = None) -> str:
    """The flag table of docs/configuration.md, generated from the parser so the two cannot drift."""
    parser = parser or build_parser()
    rows = [
        "| Flag | Environment | Default | Meaning |",
        "|---|---|---|---|",
        f"| (none) | `{TOKEN_ENV}` | | The workspace API token (`secret-token:...`) with v1, the Activations "
        "personal access token with v2; sent as `Authorization: Bearer <token>`, prefix included. |",
    ]
    for setting in parser.settings:
        flag = f"{setting.flag} {setting.metavar}" if setting.metavar else setting.flag
        default = f"`{setting.shown_default}`" if setting.shown_default else ""
        meaning = setting.meaning + (f" Range: {setting.range_text}." if setting.range_text else "")
        cells = [f"`{flag}`", f"`{setting.env}`", default, meaning]
        rows.append("|" + "|".join(f" {_markdown_cell(cell)} " if cell else " " for cell in cells) + "|")
    rows.append(
        "| `--version` | | | Print the version, git revision and branch, Python version and platform; exit. |"
    )
    return "\n".join(rows) + "\n"


def _token(parser: _Parser, args: argparse.Namespace, environ: Mapping[str, str]) -> TokenSource:
    """The token source; exits 2 saying which source is missing, empty or unreadable."""
    if args.token_file:
        token = TokenSource(path=args.token_file)
        try:
            token()
        except EmptyTokenError:
            if not args.demo:
                parser.error(f"token file {args.token_file} is empty (--census.token-file)")
        except TokenError as error:
            parser.error(f"argument --census.token-file (env CENSUS_API_TOKEN_FILE): {error}")
        return token
    raw = environ.get(TOKEN_ENV)
    try:
        token = TokenSource(value=raw)
    except TokenError as error:
        parser.error(f"{TOKEN_ENV}: {error}")
    if not args.demo and not token():
        if raw is None:
            parser.error(
                f"no API token: set {TOKEN_ENV} or --census.token-file, or give --config.file (or use --demo)"
            )
        parser.error(f"{TOKEN_ENV} is empty: set it to the workspace API token, or use --census.token-file")
    return token


#: Where the keys of the workspaces file are documented (--help lists flags only).
WORKSPACES_FILE_DOC = "docs/configuration.md, section Several workspaces"

#: The flags that describe the one workspace watched without a workspaces file.
SINGLE_WORKSPACE_FLAGS = ("api_url", "region", "token_file", "api_version", "group_id", "workspace")


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment into a Config; exits 2 with one line naming the flag on bad input."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.resolve(argv, environ)
    if len(set(args.listen_address)) < len(args.listen_address):
        parser.error(
            "argument --web.listen-address (env CENSUS_EXPORTER_WEB_LISTEN_ADDRESS): "
            "an address is given twice"
        )
    (host, port), *more_addresses = args.listen_address
    common = {
        "cache_ttl_seconds": args.cache_ttl,
        "concurrency": args.concurrency,
        "request_timeout_seconds": args.request_timeout,
        "refresh_timeout_seconds": args.refresh_timeout,
        "max_requests_per_second": args.max_requests_per_second,
        "max_response_bytes": args.max_response_bytes,
        "max_syncs_per_workspace": args.max_syncs_per_workspace,
        "max_syncs": args.max_syncs,
        "max_workspaces_per_discovery": args.max_workspaces_per_discovery,
        "max_workspaces": args.max_workspaces,
        "refresh_workers": args.refresh_workers,
        "listen_host": host,
        "listen_port": port,
        "more_listen_addresses": tuple(more_addresses),
        "telemetry_path": args.telemetry_path,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "duration_buckets": args.duration_buckets,
        "exposition": Exposition(
            duration_histogram=args.duration_histogram,
            record_totals=args.record_totals,
            run_details=args.run_details,
        ),
        "demo": args.demo,
        "demo_seed": args.demo_seed,
        "demo_syncs": args.demo_syncs,
        "web_config_file": args.web_config_file,
        "notices": tuple(parser.warnings),
        "web_config_settle_seconds": args.web_config_settle,
        "webhook_listen": args.webhook_listen_address,
        "webhook_reconcile_interval_seconds": args.webhook_reconcile_interval,
        "webhook_max_requests_per_second": args.webhook_max_requests_per_second,
        "storage_path": args.storage_path,
    }
    if args.config_file is not None:
        if "webhook_secret_files" in parser.given:
            parser.error(
                f"{SECRET_FILE_FLAG}: not allowed together with --config.file (each "
                "workspace names its webhook_secret_file)"
            )
        config = _from_workspaces_file(parser, args, environ, common)
        return _checked_webhooks(parser, config)
    if args.api_url and args.region:
        parser.error("argument --census.api-url: not allowed together with --census.region")
    _check_dialect(parser, args)
    api_url = args.api_url or default_api_url(args.api_version, args.region)
    token = _token(parser, args, environ)
    if args.api_version == "v2" and not args.group_id and not args.demo:
        # No group named: watch every group the PAT sees, each under its own `workspace` label.
        every_group = Discovery(
            name=api_url, api_url=api_url, token=token, api_version="v2", unscoped_name=args.workspace
        )
        config = Config(
            api_url=api_url,
            token=token,
            workspace=args.workspace,
            api_version="v2",
            discoveries=(every_group,),
            **common,
        )
        return _checked_webhooks(parser, config)
    config = Config(
        api_url=api_url,
        token=token,
        workspace=args.workspace,
        api_version=args.api_version,
        group_id=args.group_id,
        webhook_secrets=_flag_webhook_secrets(parser, args, environ),
        **common,
    )
    return _checked_webhooks(parser, config)


def _flag_webhook_secrets(
    parser: _Parser, args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[TokenSource, ...]:
    """The single workspace's webhook secrets, read now, so a missing one stops the start (exit 2)."""
    sources: list[TokenSource] = []
    for path in args.webhook_secret_files or ():
        source = TokenSource(path=path)
        try:
            value = source()
        except TokenError as error:
            message = str(error).replace("token file", "webhook secret file")
            parser.error(f"{SECRET_FILE_FLAG}: {message}", WEBHOOKS_DOC)
        if not value:
            parser.error(f"{SECRET_FILE_FLAG}: {path} is empty", WEBHOOKS_DOC)
        sources.append(source)
    raw = environ.get(WEBHOOK_SECRET_ENV, "")
    if raw.strip():
        try:
            sources.append(TokenSource(value=raw))
        except TokenError:
            parser.error(f"{WEBHOOK_SECRET_ENV}: the secret contains characters that are not printable ASCII")
    return tuple(sources)


def _checked_webhooks(parser: _Parser, config: Config) -> Config:
    """Exit 2 when the receiver is asked for without any secret; a note when secrets go unused."""
    with_secrets = [w.name for w in config.watched() if w.webhook_secrets]
    if config.webhook_listen is not None and not with_secrets and not config.demo:
        parser.error(
            "argument --web.webhook-listen-address (env CENSUS_EXPORTER_WEB_WEBHOOK_LISTEN_ADDRESS): no "
            "workspace has a webhook secret "
            f"(--web.webhook-secret-file, {WEBHOOK_SECRET_ENV} or webhook_secret_file in --config.file)",
            WEBHOOKS_DOC,
        )
    if config.webhook_listen is None and with_secrets:
        from dataclasses import replace  # noqa: PLC0415

        note = (
            f"webhook secrets are set for {', '.join(with_secrets)} but --web.webhook-listen-address is "
            "off: no webhook is received"
        )
        return replace(config, notices=(*config.notices, note))
    return config


def _from_workspaces_file(
    parser: _Parser, args: argparse.Namespace, environ: Mapping[str, str], common: dict[str, Any]
) -> Config:
    """The Config of a workspaces file; exits 2 with one line naming file, line, workspace and field."""
    by_dest = {setting.dest: setting for setting in parser.settings}
    for dest in SINGLE_WORKSPACE_FLAGS:
        if dest in parser.given:
            setting = by_dest[dest]
            parser.error(
                f"argument {setting.flag} (env {setting.env}): not allowed together with --config.file "
                "(the file names every workspace)"
            )
    if args.demo:
        parser.error("argument --demo: not allowed together with --config.file")
    parsed: WorkspacesFile = args.config_file
    try:
        workspaces = tuple(_file_workspace(entry, parsed.path, environ) for entry in parsed.workspaces)
        discoveries = _file_discoveries(parsed, environ)
    except WorkspacesFileError as error:
        parser.error(str(error), WORKSPACES_FILE_DOC)
    notices: tuple[str, ...] = common.pop("notices")
    named_variables = {entry.token.env for entry in parsed.workspaces} | {
        entry.token.env for entry in parsed.discoveries
    }
    if environ.get(TOKEN_ENV, "").strip() and TOKEN_ENV not in named_variables:
        notices += (
            f"{TOKEN_ENV} is set but not used: with --config.file each entry names its token "
            f"(token_file, or token_env: {TOKEN_ENV})",
        )
    return Config(
        api_url="",
        token=TokenSource(value=""),
        config_file=parsed.path,
        workspaces=workspaces,
        discoveries=discoveries,
        notices=notices,
        **common,
    )


def _entry_token(
    path: str, entry: WorkspaceConfig | AutoDiscovery, title: str, environ: Mapping[str, str]
) -> TokenSource:
    """The entry's token, read now so that a missing one stops the start (exit 2), not every refresh."""
    location = entry.token
    field = "token_file" if location.file is not None else "token_env"
    try:
        token = location.token_source(environ)
        value = token()
    except EmptyTokenError:
        raise entry_error(path, entry, title, field, f"names an empty file ({location.file})") from None
    except TokenError as error:
        raise entry_error(path, entry, title, field, str(error)) from None
    if not value:
        if location.file is not None:
            raise entry_error(path, entry, title, field, f"names an empty file ({location.file})")
        raise entry_error(path, entry, title, field, f"names {location.env}, which is not set or is empty")
    return token


def _file_workspace(entry: WorkspaceConfig, path: str, environ: Mapping[str, str]) -> Workspace:
    title = workspace_title(entry.name)
    try:
        name = _workspace_label(entry.name)
    except ValueError as error:
        raise entry_error(path, entry, title, "name", str(error)) from None
    return Workspace(
        name=name,
        api_url=entry.api_url,
        token=_entry_token(path, entry, title, environ),
        api_version=entry.api_version,
        group_id=entry.group_id,
        syncs=entry.syncs,
        webhook_secrets=_entry_webhook_secrets(path, entry, title, environ),
    )


def _entry_webhook_secrets(
    path: str, entry: WorkspaceConfig, title: str, environ: Mapping[str, str]
) -> tuple[TokenSource, ...]:
    """The entry's webhook secrets, read now: a missing or empty one stops the start (exit 2)."""
    sources: list[TokenSource] = []
    for location in entry.webhook_secrets:
        field = "webhook_secret_file" if location.file is not None else "webhook_secret_env"
        try:
            source = location.token_source(environ)
            value = source()
        except TokenError as error:
            message = str(error).replace("token", "webhook secret").replace("API webhook secret", "secret")
            raise entry_error(path, entry, title, field, message) from None
        if not value:
            where = f"an empty file ({location.file})" if location.file else f"{location.env}, which is unset"
            raise entry_error(path, entry, title, field, f"names {where}")
        sources.append(source)
    return tuple(sources)


def _file_discoveries(parsed: WorkspacesFile, environ: Mapping[str, str]) -> tuple[Discovery, ...]:
    discoveries: list[Discovery] = []
    names: set[str] = set()
    for index, entry in enumerate(parsed.discoveries, start=1):
        name = entry.api_url
        if name in names:
            name = f"{entry.api_url} #{index}"
        names.add(name)
        discoveries.append(
            Discovery(
                name=name,
                api_url=entry.api_url,
                token=_entry_token(parsed.path, entry, f"discovery {name}", environ),
                api_version=entry.api_version,
                syncs=entry.syncs,
                relist_interval_seconds=entry.relist_interval_seconds,
            )
        )
    return tuple(discoveries)


def _check_dialect(parser: _Parser, args: argparse.Namespace) -> None:
    """Exit 2 when --census.group-id or --census.api-url does not fit --census.api-version.

    V2 without --census.group-id is allowed: every group the token sees is watched (parse_config)."""
    if args.api_version == "v1" and args.group_id:
        parser.error(
            "argument --census.group-id (env CENSUS_GROUP_ID): only valid with --census.api-version v2"
        )
    found = re.search(r"/api/(v\d+)/*$", args.api_url or "")
    if found and found.group(1) != args.api_version:
        parser.error(
            f"argument --census.api-url (env CENSUS_API_URL): ends in /api/{found.group(1)} but "
            f"--census.api-version is {args.api_version}"
        )


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


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Reloader:
    """SIGHUP: read the web config, every token file and the workspaces file again, each validated first.

    A file that is not usable keeps what is running, with one warning line per distinct problem (a reload
    manager may send SIGHUP every few seconds); the named workspaces of a valid workspaces file replace the
    running ones, and unchanged entries keep their state.
    """

    def __init__(self, exporter: Exporter, config: Config, environ: Mapping[str, str]) -> None:
        self._exporter = exporter
        self._config = config
        self._environ = environ
        self._logged: set[str] = set()

    def reload(self) -> None:
        """One reload: the web config, then the token files, then the workspaces file."""
        log.info("SIGHUP: reading the web config, token files and workspaces file again")
        exporter, config = self._exporter, self._config
        if exporter.http.web_config is not None:
            exporter.http.web_config.reload()  # logs its own problems, once each
        tokens = [member.workspace.token for member in exporter.fleet.members()]
        tokens += [discovery.token for discovery in config.discoveries]
        for token in {id(token): token for token in tokens}.values():
            problem = token.reload()
            if problem is not None:
                self._warn(problem)
        if config.config_file is None:
            return
        try:
            parsed = load_workspaces_file(config.config_file)
            workspaces = tuple(
                _file_workspace(entry, parsed.path, self._environ) for entry in parsed.workspaces
            )
        except WorkspacesFileError as error:
            self._warn(f"{error}; keeping the running workspaces")
            return
        running = [(d.api_url, d.api_version, d.syncs, d.relist_interval_seconds) for d in config.discoveries]
        listed = [(d.api_url, d.api_version, d.syncs, d.relist_interval_seconds) for d in parsed.discoveries]
        if running != listed:
            self._warn(f"{parsed.path}: changed auto: true entries take effect at the next start")
        added, removed, changed = exporter.fleet.replace_named(workspaces)
        self._logged.clear()
        log.info(
            "workspaces file %s reloaded: added %s; removed %s; changed %s",
            parsed.path,
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
            ", ".join(changed) or "none",
        )

    def _warn(self, problem: str) -> None:
        if problem not in self._logged:
            if len(self._logged) >= MAX_LOGGED_RELOAD_PROBLEMS:
                self._logged.clear()
            self._logged.add(problem)
            log.warning("SIGHUP: %s", problem)


MAX_LOGGED_RELOAD_PROBLEMS = 64


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter until SIGINT or SIGTERM; SIGHUP reloads its files (:class:`Reloader`)."""
    from census_exporter.exporter import Exporter  # noqa: PLC0415 - keep --help fast

    # Before anything else: SIGHUP's default action ends the process (under systemd's Restart=on-failure
    # it would stay down), and a reload manager may send one at any moment.
    stop, reload_requested, wake = threading.Event(), threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        (reload_requested if signum == signal.SIGHUP else stop).set()
        wake.set()

    signal.signal(signal.SIGHUP, on_signal)
    config = parse_config(argv)
    setup_logging(config.log_level, config.log_format)
    for notice in config.notices:
        log.warning("%s", notice)
    simulator = None
    if config.demo:
        from dataclasses import replace  # noqa: PLC0415

        from census_exporter.demo import (  # noqa: PLC0415
            DEMO_GROUP_ID,
            DEMO_TOKEN,
            demo_api_url,
            start_demo,
        )

        group_id = (config.group_id or DEMO_GROUP_ID) if config.api_version == "v2" else None
        simulator = start_demo(
            seed=config.demo_seed,
            syncs=config.demo_syncs,
            api_version=config.api_version,
            group_id=group_id or DEMO_GROUP_ID,
        )
        config = replace(
            config,
            api_url=demo_api_url(simulator, config.api_version),
            token=TokenSource(value=DEMO_TOKEN),
            group_id=group_id,
        )
        if config.webhook_listen is not None:
            from census_exporter.demo.webhooks import DEMO_WEBHOOK_SECRET  # noqa: PLC0415

            config = replace(config, webhook_secrets=(TokenSource(value=DEMO_WEBHOOK_SECRET),))
    from census_exporter.storage import StorageError  # noqa: PLC0415

    try:
        exporter = Exporter(config)
    except StorageError as error:
        print(f"census-exporter: error: argument --storage.path: {error}", file=sys.stderr)
        if simulator is not None:
            simulator.close()
        return EXIT_USAGE
    except OSError as error:
        from census_exporter.exporter import WebhookListenError  # noqa: PLC0415

        reason = (error.strerror or type(error).__name__).lower()
        address = error.filename or _address(config.listen_host, config.listen_port)
        flag = "--web.listen-address"
        if isinstance(error, WebhookListenError) and config.webhook_listen is not None:
            address, flag = _address(*config.webhook_listen), "--web.webhook-listen-address"
        print(f"census-exporter: error: cannot listen on {address} ({flag}): {reason}", file=sys.stderr)
        if simulator is not None:
            simulator.close()
        return EXIT_USAGE
    # Only once the configuration is known to work: a warning above an error line would hide the error.
    log_api_version_notice(config)
    if simulator is not None:
        log.info("demo workspace: simulated Census API %s at %s", config.api_version, config.api_url)
    else:
        # Validated to hold no credentials, so safe to print; shows at once which region the token must match.
        if config.config_file is None:
            log.info("Census API at %s", config.api_url)
        for workspace in config.workspaces:
            log.info(
                "workspace %s: Census API %s at %s", workspace.name, workspace.api_version, workspace.api_url
            )
        for discovery in config.discoveries:
            log.info(
                "discovery: every %s the token can see at %s, listed every %gs",
                "group" if discovery.api_version == "v2" else "workspace",
                discovery.api_url,
                discovery.relist_interval_seconds,
            )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    reloader = Reloader(exporter, config, os.environ)
    exporter.start()
    scheme = "https" if exporter.http.tls else "http"
    log.info(
        "census-exporter %s listening on %s (%s)",
        __version__,
        ", ".join(
            f"{scheme}://{_address(*address)}{config.telemetry_path}" for address in exporter.http.addresses
        ),
        f"workspaces from {config.config_file}" if config.config_file else f"workspace {config.workspace}",
    )
    sender = None
    if exporter.webhooks is not None and config.webhook_listen is not None:
        hooks_host, hooks_port = exporter.webhooks.http.addresses[0]
        log.info(
            "webhook receiver listening on http://%s/webhooks/census/<workspace>",
            _address(hooks_host, hooks_port),
        )
        if simulator is not None:
            from census_exporter.demo.webhooks import WebhookSender  # noqa: PLC0415

            loopback = "127.0.0.1" if hooks_host in ("0.0.0.0", "::", "") else hooks_host  # noqa: S104
            url = f"http://{_address(loopback, exporter.webhooks.port)}/webhooks/census/{config.workspace}"
            sender = WebhookSender(url).start()
            simulator.workspace.run_listeners.append(sender)
            log.info("demo workspace: the simulator posts signed webhooks for its runs to %s", url)
    # A signal may be delivered to any thread; Python runs its handler in the main thread only once that
    # thread is back in the interpreter, which a wait without timeout may never be. So wait in slices.
    while not stop.is_set():
        wake.wait(0.5)
        wake.clear()
        if reload_requested.is_set() and not stop.is_set():
            reload_requested.clear()
            try:
                reloader.reload()
            except Exception as error:  # noqa: BLE001 - a reload must never end the process
                log.error("SIGHUP: reload failed: %s: %s", type(error).__name__, error)
    log.info("shutting down")
    if sender is not None:
        sender.close()
    stopped = exporter.close()
    if simulator is not None:
        simulator.close()
    if not stopped:
        # A stuck server thread must not turn SIGTERM into SIGKILL after the grace period.
        logging.shutdown()
        os._exit(0)
    return 0
