"""SIGHUP: the web config, the token files and the workspaces file read again, each validated first."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from census_exporter.cli.workspaces_file import file_workspace
from census_exporter.config import Config
from census_exporter.workspaces import WorkspacesFileError, load_workspaces_file

if TYPE_CHECKING:
    from census_exporter.exporter import Exporter

log = logging.getLogger("census_exporter")

MAX_LOGGED_RELOAD_PROBLEMS = 64


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
                file_workspace(entry, parsed.path, self._environ) for entry in parsed.workspaces
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
