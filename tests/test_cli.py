"""The command line as users run it: flags, environment, exit codes, and a real process in demo mode."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from census_exporter.cli import build_parser, parse_config
from census_exporter.logs import JsonFormatter, LogfmtFormatter, RedactingFilter
from tests.conftest import parse_scrape, wait_for

FLAGS = [
    "--census.token-file",
    "--census.api-url",
    "--census.region",
    "--census.workspace",
    "--census.cache-ttl",
    "--census.concurrency",
    "--census.request-timeout",
    "--census.refresh-timeout",
    "--census.duration-buckets",
    "--web.listen-address",
    "--web.telemetry-path",
    "--log.level",
    "--log.format",
    "--demo",
    "--demo.seed",
    "--demo.syncs",
    "--version",
]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CENSUS_", "WEB_", "LOG_"))}
    return subprocess.run(
        [sys.executable, "-m", "census_exporter", *args],
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_flag() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in FLAGS:
        assert flag in result.stdout, flag


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "census-exporter 0.1.0"


def test_no_token_and_no_demo_exits_2_with_one_clear_line() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no API token: set CENSUS_API_TOKEN or --census.token-file" in result.stderr


def test_a_taken_port_exits_2_naming_the_flag() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--demo", "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert "--web.listen-address" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_during_a_hanging_refresh_exits_promptly_and_quietly() -> None:
    from census_exporter.demo import SimulatorServer, reference_workspace

    simulator = SimulatorServer(reference_workspace(), token="secret-token:x", latency_seconds=30).start()
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "census_exporter",
                "--census.api-url",
                simulator.url,
                "--web.listen-address",
                "127.0.0.1:0",
            ],
            env=os.environ | {"CENSUS_API_TOKEN": "secret-token:x"},
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        wait_for(lambda: "listening on" in process.stderr.readline(), timeout=30, interval=0)
        wait_for(lambda: simulator.count("/api/v1/"), what="the refresh to reach the API")
        process.send_signal(signal.SIGTERM)
        # The API would answer in 30 s; the exporter must not wait for it.
        assert process.wait(timeout=10) == 0
        assert "level=error" not in process.stderr.read()
    finally:
        simulator.close()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--census.cache-ttl", "-1"], "--census.cache-ttl"),
        (["--census.concurrency", "many"], "--census.concurrency"),
        (["--web.listen-address", "localhost"], "--web.listen-address"),
        (["--census.region", "au"], "--census.region"),
        (["--log.level", "loud"], "--log.level"),
        (["--census.duration-buckets", "30,10"], "--census.duration-buckets"),
        (["--census.api-url", "ftp://x"], "--census.api-url"),
    ],
)
def test_invalid_values_exit_2_naming_the_flag(args: list[str], flag: str) -> None:
    result = run_cli(*args, env={"CENSUS_API_TOKEN": "secret-token:x"})
    assert result.returncode == 2
    assert flag in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_invalid_environment_values_name_the_flag() -> None:
    result = run_cli(env={"CENSUS_API_TOKEN": "secret-token:x", "CENSUS_CACHE_TTL": "soon"})
    assert result.returncode == 2
    assert "--census.cache-ttl" in result.stderr


def test_environment_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENSUS_API_TOKEN", "secret-token:env")
    monkeypatch.setenv("CENSUS_WORKSPACE", "marketing")
    monkeypatch.setenv("CENSUS_CACHE_TTL", "120")
    config = parse_config(["--census.region", "eu"])
    assert config.api_url == "https://app-eu.getcensus.com/api/v1"
    assert config.workspace == "marketing"
    assert config.cache_ttl_seconds == 120
    assert config.token() == "secret-token:env"
    assert (config.listen_host, config.listen_port) == ("", 10049)
    assert "secret-token" not in repr(config)
    default = parse_config([])
    assert default.api_url == "https://app.getcensus.com/api/v1"


def test_token_file_is_reread_when_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CENSUS_API_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text("secret-token:first\n")
    config = parse_config(["--census.token-file", str(token_file)])
    assert config.token() == "secret-token:first"
    token_file.write_text("secret-token:rotated-value\n")
    os.utime(token_file, ns=(1, 2))  # a new mtime even on coarse file systems
    assert config.token() == "secret-token:rotated-value"


def test_unreadable_token_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("--census.token-file", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "--census.token-file" in result.stderr


def test_log_lines_are_single_line_and_redacted() -> None:
    import logging

    secret = "secret-token:do-not-print-me"
    RedactingFilter.register(secret)
    record = logging.LogRecord(
        "census_exporter", logging.WARNING, __file__, 1, "bad %s\nnext", (secret,), None
    )
    assert RedactingFilter().filter(record)
    line = LogfmtFormatter().format(record)
    assert line.count("\n") == 0
    assert secret not in line and "[REDACTED]" in line
    assert "level=warn" in line
    assert '"level": "warn"' in JsonFormatter().format(record)


def test_parser_defaults_match_the_documented_contract() -> None:
    args = build_parser().parse_args([])
    assert args.cache_ttl == 60
    assert args.concurrency == 8
    assert args.request_timeout == 10
    assert args.listen_address == ("", 10049)
    assert args.telemetry_path == "/metrics"


@pytest.fixture
def demo_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "census_exporter",
            "--demo",
            "--demo.seed",
            "3",
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "json",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def listening() -> str | None:
        assert process.stderr is not None
        line = process.stderr.readline()
        lines.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        return match.group(1) if match else None

    try:
        url = wait_for(listening, timeout=30, interval=0, what="the listening log line")
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


def test_demo_process_serves_and_stops_cleanly(demo_process: tuple[subprocess.Popen[str], str]) -> None:
    process, url = demo_process
    wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, what="readiness")
    m = parse_scrape(httpx.get(url + "/metrics").text)
    assert m.value("census_up", workspace="default") == 1
    assert m.value("census_syncs") == 25
    assert len(m.all("census_sync_last_run_status", status="completed")) > 0
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
