"""A workspaces file (--config.file) into the Config's workspaces and discoveries, every token read now.

Exits 2 (through the parser) with one line naming the file, the line, the workspace and the field.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from census_exporter.cli.parser import WORKSPACES_FILE_DOC, Parser
from census_exporter.cli.tokens import TOKEN_ENV
from census_exporter.cli.values import workspace_label
from census_exporter.config import Config, Discovery, EmptyTokenError, TokenError, TokenSource, Workspace
from census_exporter.workspaces import (
    AutoDiscovery,
    WorkspaceConfig,
    WorkspacesFile,
    WorkspacesFileError,
    entry_error,
    workspace_title,
)

#: The flags that describe the one workspace watched without a workspaces file.
SINGLE_WORKSPACE_FLAGS = ("api_url", "region", "token_file", "api_version", "group_id", "workspace")


def from_workspaces_file(
    parser: Parser, args: argparse.Namespace, environ: Mapping[str, str], common: dict[str, Any]
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
        workspaces = tuple(file_workspace(entry, parsed.path, environ) for entry in parsed.workspaces)
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


def file_workspace(entry: WorkspaceConfig, path: str, environ: Mapping[str, str]) -> Workspace:
    title = workspace_title(entry.name)
    try:
        name = workspace_label(entry.name)
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
