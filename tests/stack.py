"""Real Prometheus and Alertmanager processes for end-to-end tests, on loopback, always stopped."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import require_tool, wait_for

REPO = Path(__file__).resolve().parent.parent
RULE_FILES = [REPO / "prometheus" / "rules.yaml", REPO / "prometheus" / "alerts.yaml"]


def run_tool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run a real command-line tool with its output captured (at most 120 s)."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def promtool_check_groups(groups: list[dict[str, Any]], directory: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on rule groups written to a file in ``directory``."""
    path = directory / "promtool-check-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return run_tool(require_tool("promtool"), "check", "rules", str(path))


def promtool_check_expressions(expressions: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    """Whether each PromQL expression parses: promtool checks them as recording rules."""
    rules = [{"record": f"check:expression_{n}", "expr": expr} for n, expr in enumerate(expressions)]
    return promtool_check_groups([{"name": "expressions", "rules": rules}], directory)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ready(url: str) -> bool:
    """True when a Prometheus-style server answers 200 on /-/ready."""
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Process:
    """A started binary whose output goes to a log file, shown when a wait fails."""

    def __init__(self, args: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self._handle = log.open("w")
        self.process = subprocess.Popen(args, stdout=self._handle, stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._handle.close()


class Alertmanager:
    def __init__(self, workdir: Path) -> None:
        binary = require_tool("prometheus-alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "alertmanager.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "route": {"receiver": "null", "group_wait": "0s", "group_by": ["alertname"]},
                    "receivers": [{"name": "null"}],
                }
            )
        )
        self.proc = Process(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            workdir / "alertmanager.log",
        )
        wait_for(self._ready, timeout=30, what=f"alertmanager ready\n{self.proc.output()}")

    def _ready(self) -> bool:
        return ready(self.url)

    def alerts(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts


class Prometheus:
    """A real Prometheus scraping the exporter every second, with the shipped rules unless told otherwise.

    ``scrape_config`` replaces the whole scrape job (e.g. the README's own); ``rule_files`` replaces the
    shipped rule files (e.g. a copy with shorter ``for:`` durations).
    """

    def __init__(
        self,
        workdir: Path,
        exporter_port: int,
        alertmanager_port: int | None = None,
        rules: bool = True,
        job_name: str = "census-exporter",
        scrape_config: dict[str, Any] | None = None,
        rule_files: list[Path] | None = None,
    ) -> None:
        binary = require_tool("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                scrape_config
                or {
                    "job_name": job_name,
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                }
            ],
        }
        if rules:
            config["rule_files"] = [str(path) for path in (rule_files or RULE_FILES)]
        if alertmanager_port:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
            }
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.proc = Process(
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={workdir / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            workdir / "prometheus.log",
        )
        wait_for(self._ready, timeout=30, what=f"prometheus ready\n{self.proc.output()}")

    def _ready(self) -> bool:
        return ready(self.url)

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result
