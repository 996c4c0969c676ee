"""The workspaces file: which Census workspaces (V1) or Fivetran groups (V2) one exporter watches.

Parsing and validation only: nothing here reads a token or talks to Census. Every problem is reported as
one :class:`WorkspacesFileError` line naming the file, the line, the workspace and the field, because the
CLI prints it as is and exits 2.

The keys are an interface that users and the Helm chart rely on: new keys may be added, none renamed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from census_exporter.census.client import validate_base_url
from census_exporter.config import ApiVersion, FileTooLargeError, SyncFilter, TokenSource, read_small_file
from census_exporter.patterns import SyncPattern
from census_exporter.yaml_lines import LineDict, LineLoader, shown

API_VERSIONS: tuple[ApiVersion, ...] = ("v1", "v2")

# V2 on the EU host is not confirmed by Census (their Terraform provider says V2 has one root);
# it is offered because other V2 integrations still let users pick the EU host.
REGION_HOSTS: Mapping[str, str] = {
    "us": "https://app.getcensus.com",
    "eu": "https://app-eu.getcensus.com",
}
DEFAULT_REGION = "us"

_COMMON_KEYS = frozenset(
    {"api_version", "api_url", "region", "token_file", "token_env", "include", "exclude"}
)
_WORKSPACE_KEYS = _COMMON_KEYS | {"name", "group_id", "webhook_secret_file", "webhook_secret_env"}
#: Webhook secrets one workspace accepts at once (a rotation needs two).
MAX_WEBHOOK_SECRETS = 8
_AUTO_KEYS = _COMMON_KEYS | {"auto", "relist_interval_seconds"}
#: How often discovery lists the workspaces again by default, and the range allowed.
DEFAULT_RELIST_INTERVAL_SECONDS = 300.0
RELIST_INTERVAL_RANGE = (1.0, 86400.0)
#: A workspaces file larger than this is refused (a thousand workspaces take about 200 KiB).
MAX_FILE_BYTES = 1024 * 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSIONED_PATH = re.compile(r"/api/(v\d+)/?$")


class WorkspacesFileError(ValueError):
    """The workspaces file cannot be used; the message is one line, safe to print."""


@dataclass(frozen=True)
class TokenLocation:
    """Where a workspace's token is read from: exactly one of a file and an environment variable."""

    file: Path | None = None
    env: str | None = None

    def describe(self) -> str:
        """Where the token comes from, for log lines (never the token itself)."""
        return f"file {self.file}" if self.file is not None else f"environment variable {self.env}"

    def token_source(self, environ: Mapping[str, str]) -> TokenSource:
        """The token, as the config layer holds it: a file is re-read when it changes, a variable read now."""
        if self.file is not None:
            return TokenSource(path=str(self.file))
        return TokenSource(value=environ.get(self.env or ""))


@dataclass(frozen=True)
class WorkspaceConfig:
    """One named workspace (V1) or Fivetran group (V2); ``name`` is the ``workspace`` label."""

    name: str
    api_version: ApiVersion
    api_url: str
    token: TokenLocation
    group_id: str | None = None
    syncs: SyncFilter = field(default_factory=SyncFilter)
    line: int | None = None
    #: The line of each key, for errors found after parsing (a token variable that is not set).
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    #: Where its webhook secrets are read from (files and variables; several during a rotation).
    webhook_secrets: tuple[TokenLocation, ...] = ()


@dataclass(frozen=True)
class AutoDiscovery:
    """Watch every workspace (V1) or group (V2) the token can see; names come from Census."""

    api_version: ApiVersion
    api_url: str
    token: TokenLocation
    syncs: SyncFilter = field(default_factory=SyncFilter)
    line: int | None = None
    #: How often the workspaces are listed again, so new ones appear and deleted ones vanish.
    relist_interval_seconds: float = DEFAULT_RELIST_INTERVAL_SECONDS
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class WorkspacesFile:
    """The parsed file: named workspaces and discovery entries, in file order."""

    path: str
    workspaces: tuple[WorkspaceConfig, ...]
    discoveries: tuple[AutoDiscovery, ...]


def name_key(name: str) -> str:
    """``name`` as workspace names are compared: two that differ only by case or Unicode form would look
    the same on a dashboard, so they count as one (in the file, and between the file and discovery)."""
    return unicodedata.normalize("NFKC", name).casefold()


def default_api_url(api_version: ApiVersion, region: str = DEFAULT_REGION) -> str:
    """The public API base URL for a version and region."""
    return f"{REGION_HOSTS[region]}/api/{api_version}"


def load_workspaces_file(path: str | Path) -> WorkspacesFile:
    """Read and validate a workspaces file; WorkspacesFileError (one line) if it is unusable."""
    try:
        data = read_small_file(str(path), MAX_FILE_BYTES)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise WorkspacesFileError(f"{path}: cannot read the workspaces file: {reason}") from None
    except FileTooLargeError:
        raise WorkspacesFileError(
            f"{path}: the workspaces file is larger than {MAX_FILE_BYTES // 1024} KiB"
        ) from None
    return parse_workspaces_file(text, str(path))


def parse_workspaces_file(text: str, path: str) -> WorkspacesFile:
    """Validate the YAML ``text`` of a workspaces file; ``path`` is only used in error messages."""
    try:
        document = yaml.load(text, Loader=LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = " ".join(str(error.problem or error.context or "invalid YAML").split())
        raise WorkspacesFileError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise WorkspacesFileError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(document, LineDict):
        raise WorkspacesFileError(f"{path}: the file must be a mapping with a `workspaces` list")
    top = _Entry(path, document, "the file")
    top.reject_unknown(frozenset({"workspaces"}))
    entries = top.require("workspaces")
    if not isinstance(entries, list) or not entries:
        raise top.error("workspaces", "must be a non-empty list")
    workspaces: list[WorkspaceConfig] = []
    discoveries: list[AutoDiscovery] = []
    names: dict[str, int | None] = {}
    for index, raw in enumerate(entries):
        if not isinstance(raw, LineDict):
            raise top.error("workspaces", f"entry {index + 1} must be a mapping")
        entry = _Entry(path, raw, _entry_title(raw, index))
        if "auto" in raw:
            discoveries.append(_auto_discovery(entry))
            continue
        workspace = _workspace(entry)
        key = name_key(workspace.name)
        if key in names:
            first = names[key]
            raise entry.error(
                "name",
                f"is used twice (first at line {first}, up to case and Unicode form); names must be unique",
            )
        names[key] = entry.line_of("name")
        workspaces.append(workspace)
    return WorkspacesFile(path=path, workspaces=tuple(workspaces), discoveries=tuple(discoveries))


# ---------------------------------------------------------------------- entries


def _workspace(entry: _Entry) -> WorkspaceConfig:
    entry.reject_unknown(_WORKSPACE_KEYS)
    name = entry.string("name")
    api_version = entry.api_version()
    group_id = entry.optional_string("group_id")
    if api_version == "v2" and group_id is None:
        raise entry.error("group_id", "is required with api_version v2 (the Fivetran group to watch)")
    if api_version == "v1" and group_id is not None:
        raise entry.error("group_id", "is only valid with api_version v2")
    return WorkspaceConfig(
        name=name,
        api_version=api_version,
        api_url=entry.api_url(api_version),
        token=entry.token(),
        group_id=group_id,
        syncs=entry.sync_filter(),
        line=entry.line,
        key_lines=dict(entry.raw.key_lines),
        webhook_secrets=entry.webhook_secrets(),
    )


def _auto_discovery(entry: _Entry) -> AutoDiscovery:
    if "name" in entry.raw or "group_id" in entry.raw:
        field = "name" if "name" in entry.raw else "group_id"
        raise entry.error(field, "is not allowed with `auto: true` (discovery names every workspace)")
    entry.reject_unknown(_AUTO_KEYS)
    if entry.raw["auto"] is not True:
        raise entry.error("auto", "must be true (leave it out for a named workspace)")
    api_version = entry.api_version()
    return AutoDiscovery(
        api_version=api_version,
        api_url=entry.api_url(api_version),
        token=entry.token(),
        syncs=entry.sync_filter(),
        line=entry.line,
        relist_interval_seconds=entry.seconds("relist_interval_seconds", DEFAULT_RELIST_INTERVAL_SECONDS),
        key_lines=dict(entry.raw.key_lines),
    )


def entry_error(
    path: str, entry: WorkspaceConfig | AutoDiscovery, title: str, field: str, problem: str
) -> WorkspacesFileError:
    """An error about ``field`` of a parsed entry found after parsing (a token variable that is not set),
    phrased like the parser's own: file, the field's line, the entry and the field, in one line."""
    return _field_error(path, entry.key_lines.get(field, entry.line), title, field, problem)


def workspace_title(name: str) -> str:
    """How errors name a named entry (bounded: a name may be any length until it is validated)."""
    return f"workspace {shown(name)}"


def _field_error(path: str, line: int | None, title: str, field: str, problem: str) -> WorkspacesFileError:
    where = f"{path}:{line}" if line is not None else path
    return WorkspacesFileError(f"{where}: {title}: field `{field}` {problem}")


def _entry_title(raw: LineDict, index: int) -> str:
    name = raw.get("name")
    if isinstance(name, str) and name.strip():
        return workspace_title(name)
    if "auto" in raw:
        return f"workspaces[{index}] (auto)"
    return f"workspaces[{index}]"


class _Entry:
    """One mapping of the file with what is needed to phrase an error about it."""

    def __init__(self, path: str, raw: LineDict, title: str) -> None:
        self.path = path
        self.raw = raw
        self.title = title
        self.line = raw.line

    def line_of(self, field: str) -> int | None:
        return self.raw.key_lines.get(field, self.line)

    def error(self, field: str, problem: str) -> WorkspacesFileError:
        return _field_error(self.path, self.line_of(field), self.title, field, problem)

    def reject_unknown(self, known: frozenset[str]) -> None:
        for key in self.raw:
            if key not in known:
                allowed = ", ".join(sorted(known))
                raise self.error(str(key), f"is not a known key (known: {allowed})")

    def require(self, field: str) -> Any:
        if field not in self.raw or self.raw[field] is None:
            raise self.error(field, "is required")
        return self.raw[field]

    def string(self, field: str) -> str:
        value = self.require(field)
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, f"must be a non-empty string, got {shown(value)}")
        return value

    def optional_string(self, field: str) -> str | None:
        if self.raw.get(field) is None:
            return None
        return self.string(field)

    def seconds(self, field: str, default: float) -> float:
        value = self.raw.get(field)
        if value is None:
            return default
        low, high = RELIST_INTERVAL_RANGE
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.error(
                field, f"must be a number of seconds from {low:g} to {high:g}, got {shown(value)}"
            )
        return float(value)

    def api_version(self) -> ApiVersion:
        value = self.require("api_version")
        if value not in API_VERSIONS:
            raise self.error("api_version", f"must be v1 or v2, got {shown(value)}")
        return cast(ApiVersion, value)

    def api_url(self, api_version: ApiVersion) -> str:
        self._at_most_one("api_url", "region")
        region = self.optional_string("region")
        if region is not None:
            if region not in REGION_HOSTS:
                choices = " or ".join(REGION_HOSTS)
                raise self.error("region", f"must be {choices}, got {shown(region)}")
            return default_api_url(api_version, region)
        url = self.optional_string("api_url")
        if url is None:
            return default_api_url(api_version)
        try:
            validate_base_url(url)
        except ValueError as error:
            raise self.error("api_url", str(error)) from None
        if (match := _VERSIONED_PATH.search(url)) and match.group(1) != api_version:
            raise self.error("api_url", f"ends in /api/{match.group(1)} but api_version is {api_version}")
        return url.rstrip("/")

    def token(self) -> TokenLocation:
        self._at_most_one("token_file", "token_env")
        token_file = self.optional_string("token_file")
        if token_file is not None:
            return TokenLocation(file=Path(token_file))
        token_env = self.optional_string("token_env")
        if token_env is None:
            raise self.error("token_file", "or `token_env` is required (where to read the API token)")
        if not _ENV_NAME.fullmatch(token_env):
            raise self.error("token_env", f"must be an environment variable name, got {shown(token_env)}")
        return TokenLocation(env=token_env)

    def webhook_secrets(self) -> tuple[TokenLocation, ...]:
        files = [TokenLocation(file=Path(name)) for name in self._strings("webhook_secret_file")]
        variables = self._strings("webhook_secret_env")
        for name in variables:
            if not _ENV_NAME.fullmatch(name):
                raise self.error(
                    "webhook_secret_env", f"must hold environment variable names, got {shown(name)}"
                )
        locations = (*files, *(TokenLocation(env=name) for name in variables))
        if len(locations) > MAX_WEBHOOK_SECRETS:
            raise self.error(
                "webhook_secret_file", f"and `webhook_secret_env` name over {MAX_WEBHOOK_SECRETS}"
            )
        return locations

    def _strings(self, field: str) -> list[str]:
        """A string or a list of non-empty strings (none when absent)."""
        value = self.raw.get(field)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if not items or any(not isinstance(item, str) or not item.strip() for item in items):
            raise self.error(field, f"must be a non-empty string or a list of them, got {shown(value)}")
        return [item.strip() for item in items]

    def sync_filter(self) -> SyncFilter:
        return SyncFilter(include=self._patterns("include"), exclude=self._patterns("exclude"))

    def _patterns(self, field: str) -> tuple[SyncPattern, ...]:
        value = self.raw.get(field)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(field, 'must be a list of regexes, e.g. ["^prod "]')
        patterns = []
        for item in value:
            if not isinstance(item, str):
                raise self.error(field, f"must hold strings, got {shown(item)}")
            try:
                patterns.append(SyncPattern(item))
            except ValueError as error:
                raise self.error(field, f"has an invalid regex {shown(item)}: {error}") from None
        return tuple(patterns)

    def _at_most_one(self, first: str, second: str) -> None:
        if self.raw.get(first) is not None and self.raw.get(second) is not None:
            raise self.error(second, f"cannot be combined with `{first}`: give one of them")
