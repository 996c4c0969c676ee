"""The command line as users run it: flags, environment, exit codes, and a real process in demo mode."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest

from census_exporter.cli.assembly import parse_config
from census_exporter.cli.flags import build_parser
from census_exporter.config import Config
from census_exporter.logs import JsonFormatter, LogfmtFormatter, RedactingFilter, setup_logging
from tests.conftest import HarnessFactory, log_lines_until_listening, parse_scrape, require_tool, wait_for
from tests.stack import REPO

FLAGS = [
    "--census.token-file",
    "--census.api-url",
    "--census.api-version",
    "--census.group-id",
    "--census.region",
    "--census.workspace",
    "--census.cache-ttl",
    "--census.concurrency",
    "--census.request-timeout",
    "--census.refresh-timeout",
    "--census.max-requests-per-second",
    "--census.max-response-bytes",
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
    first = result.stdout.splitlines()[0]
    assert first.startswith("census-exporter, version 0.1.0 (branch: ")


def test_no_token_and_no_demo_exits_2_with_one_clear_line() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no API token: set CENSUS_API_TOKEN or --census.token-file" in result.stderr


def test_a_taken_port_exits_2_with_one_error_line_naming_address_and_flag() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--demo", "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr == (
        f"census-exporter: error: cannot listen on 127.0.0.1:{port} (--web.listen-address): "
        "address already in use\n"
    )


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
    args = build_parser().resolve([], {})
    assert args.cache_ttl == 60
    assert args.concurrency == 8
    assert args.request_timeout == 10
    assert args.listen_address == (("", 10049),)
    assert args.telemetry_path == "/metrics"
    assert args.demo_seed == 0


def test_the_cli_and_config_share_every_default() -> None:
    config = parse_config([], {"CENSUS_API_TOKEN": "secret-token:x"})
    bare = Config(api_url=config.api_url, token=config.token)
    for setting in fields(Config):
        assert getattr(config, setting.name) == getattr(bare, setting.name), setting.name


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


TOKEN_ENV = {"CENSUS_API_TOKEN": "secret-token:x"}

# Every flag with an environment variable: one invalid value (None: any text is valid) and accepted spellings.
VALUES: dict[str, tuple[str | None, list[tuple[str, object]]]] = {
    "--config.file": ("/nonexistent/workspaces.yaml", []),
    "--census.token-file": ("/nonexistent/token", []),
    "--census.api-url": ("ftp://x", [("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9/api/v1")]),
    "--census.api-version": ("v3", [("V2", "v2"), ("v1", "v1")]),
    "--census.group-id": (
        "two words",
        [("glad_otter", "glad_otter"), (" decent.dropsy-2 ", "decent.dropsy-2")],
    ),
    "--census.region": ("mars", [("EU", "eu"), ("us", "us")]),
    "--census.workspace": ("x" * 129, [("marketing", "marketing"), (" eu prod ", "eu prod")]),
    "--census.cache-ttl": ("soon", [("120", 120.0), ("1", 1.0)]),
    "--census.concurrency": ("100000", [("64", 64), ("1", 1)]),
    "--census.request-timeout": ("0", [("0.1", 0.1), ("300", 300.0)]),
    "--census.refresh-timeout": ("3601", [("3600", 3600.0)]),
    "--census.max-requests-per-second": ("-1", [("0", 0.0), ("2.5", 2.5), ("10000", 10000.0)]),
    "--census.max-syncs-per-workspace": ("0", [("1", 1), ("200000", 200000)]),
    "--census.max-syncs": ("0", [("1", 1), ("50000", 50000)]),
    "--census.max-workspaces-per-discovery": ("none", [("1", 1), ("300", 300)]),
    "--census.max-workspaces": ("0", [("1", 1), ("1000", 1000)]),
    "--census.refresh-workers": ("257", [("1", 1), ("256", 256)]),
    "--census.max-response-bytes": ("1k", [("16MiB", 16 * 1024 * 1024), ("65536", 65536), ("1GB", 10**9)]),
    "--census.duration-buckets": ("30,10", [("1,2.5", (1.0, 2.5))]),
    "--census.duration-histogram": ("le", [("Sync", "sync"), ("off", "off"), ("workspace", "workspace")]),
    "--census.record-totals": ("off", [("SYNC", "sync"), ("workspace", "workspace")]),
    "--census.run-details": ("maybe", [("yes", True), ("off", False)]),
    "--web.listen-address": (
        "localhost",
        [("127.0.0.1:0", (("127.0.0.1", 0),)), ("127.0.0.1:0, [::1]:0", (("127.0.0.1", 0), ("::1", 0)))],
    ),
    "--web.telemetry-path": ("metrics", [("/m", "/m")]),
    "--web.config.file": ("/nonexistent/web-config.yml", []),
    "--web.config.settle-period": ("0", [("1", 1.0), ("30", 30.0)]),
    "--web.webhook-listen-address": ("localhost", [("127.0.0.1:0", ("127.0.0.1", 0)), ("off", None)]),
    "--web.webhook-secret-file": ("/nonexistent/webhook-secret", [("/a, /b", ("/a", "/b"))]),
    "--census.webhook-reconcile-interval": ("0", [("600", 600.0), ("86400", 86400.0)]),
    "--web.webhook-max-requests-per-second": ("0", [("50", 50.0), ("1", 1.0)]),
    "--storage.path": (__file__, [("/var/lib/census-exporter", "/var/lib/census-exporter")]),
    "--log.level": ("verbose", [("INFO", "info"), ("warning", "warn"), ("Debug", "debug")]),
    "--log.format": ("xml", [("JSON", "json"), ("logfmt", "logfmt")]),
    "--demo": ("maybe", [("yes", True), ("TRUE", True), ("on", True), ("1", True), ("no", False)]),
    "--demo.seed": ("-1", [("42", 42)]),
    "--demo.syncs": ("0", [("20000", 20000)]),
}
SETTINGS = build_parser().settings
#: Flags that take no value on the command line.
SWITCHES = ("--demo", "--census.run-details")


def test_every_flag_with_a_variable_has_test_values() -> None:
    assert {setting.flag for setting in SETTINGS} == set(VALUES)


VALIDATED = [setting for setting in SETTINGS if VALUES[setting.flag][0] is not None]


@pytest.mark.parametrize("setting", VALIDATED, ids=lambda setting: setting.env)
def test_an_invalid_environment_value_stops_like_the_flag_naming_both(
    setting: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = VALUES[setting.flag][0]
    assert bad is not None
    sources = [([], {setting.env: bad})]
    if setting.flag not in SWITCHES:  # a switch on the command line takes no value
        sources.append(([f"{setting.flag}={bad}"], {}))
    for argv, environ in sources:
        with pytest.raises(SystemExit) as stopped:
            parse_config(argv, TOKEN_ENV | environ)
        assert stopped.value.code == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1, error
        assert setting.flag in error and setting.env in error, error


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.env)
def test_the_environment_accepts_what_the_flag_accepts(setting: Any) -> None:
    _, accepted = VALUES[setting.flag]
    for text, expected in accepted:
        from_env = build_parser().resolve([], {setting.env: text})
        from_flag = build_parser().resolve(_argv(setting.flag, text), {})
        assert getattr(from_env, setting.dest) == expected, text
        if setting.flag not in SWITCHES:  # a switch on the command line takes no value
            assert getattr(from_flag, setting.dest) == expected, text


def _argv(flag: str, value: str) -> list[str]:
    return [flag] if flag in SWITCHES else [f"{flag}={value}"]


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("CENSUS_EXPORTER_LOG_LEVEL", "verbose"),
        ("CENSUS_REGION", "mars"),
        ("CENSUS_EXPORTER_LOG_FORMAT", "xml"),
        ("CENSUS_EXPORTER_DEMO", "maybe"),
    ],
)
def test_the_real_cli_refuses_invalid_environment_values_in_one_line(env: str, value: str) -> None:
    result = run_cli(env=TOKEN_ENV | {env: value})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert env in result.stderr and "Traceback" not in result.stderr


def test_the_real_cli_accepts_upper_case_log_level_from_the_environment() -> None:
    import socket

    # A taken port ends the run right after logging is set up, where the level INFO used to crash.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = TOKEN_ENV | {"CENSUS_EXPORTER_LOG_LEVEL": "INFO"}
        result = run_cli("--web.listen-address", f"127.0.0.1:{port}", env=env)
    assert result.returncode == 2
    assert "cannot listen on" in result.stderr
    assert "Traceback" not in result.stderr


NUMERIC = [setting for setting in SETTINGS if setting.range_text]


def test_every_numeric_flag_has_a_range() -> None:
    expected = {
        "--census.cache-ttl",
        "--census.concurrency",
        "--census.request-timeout",
        "--census.refresh-timeout",
        "--census.max-requests-per-second",
        "--census.max-response-bytes",
        "--census.max-syncs-per-workspace",
        "--census.max-syncs",
        "--census.max-workspaces-per-discovery",
        "--census.max-workspaces",
        "--census.refresh-workers",
        "--web.config.settle-period",
        "--census.webhook-reconcile-interval",
        "--web.webhook-max-requests-per-second",
        "--demo.seed",
        "--demo.syncs",
    }
    assert {setting.flag for setting in NUMERIC} == expected


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda setting: setting.flag)
def test_numeric_flags_refuse_values_outside_their_range(
    setting: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    low, high = setting.convert.low, setting.convert.high
    below = str(int(low) - 1) if low >= 1 or low == 0 else str(low / 2)
    for value in (below, str(int(high) + 1), "many", "nan"):
        with pytest.raises(SystemExit) as stopped:
            parse_config([f"{setting.flag}={value}"], TOKEN_ENV)
        assert stopped.value.code == 2, value
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and setting.flag in error, error
    for value in (low, high):
        text = str(int(value)) if float(value).is_integer() else str(value)
        assert getattr(build_parser().resolve([f"{setting.flag}={text}"], {}), setting.dest) == value


def test_a_huge_concurrency_is_refused_by_the_real_cli() -> None:
    result = run_cli("--census.concurrency=100000", env=TOKEN_ENV)
    assert result.returncode == 2
    assert "must be from 1 to 64" in result.stderr


def test_max_response_bytes_reaches_the_client(harness_factory: HarnessFactory) -> None:
    config = parse_config(["--census.max-response-bytes=64KiB"], TOKEN_ENV)
    assert config.max_response_bytes == 65536
    harness = harness_factory(max_response_bytes=config.max_response_bytes)
    assert harness.exporter.refresher._api._requester._max_response_bytes == 65536  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@census.example/api/v1",
        "ftp://user:secret@census.example/api/v1",
        "http://user:secret@[::1/api/v1",
    ],
)
@pytest.mark.parametrize("source", ["flag", "env"])
def test_credentials_in_the_api_url_are_refused_without_printing_them(url: str, source: str) -> None:
    if source == "flag":
        result = run_cli(f"--census.api-url={url}", env=TOKEN_ENV)
    else:
        result = run_cli(env=TOKEN_ENV | {"CENSUS_API_URL": url})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--census.api-url" in result.stderr
    assert "secret" not in result.stderr


def test_the_api_base_url_is_logged_once_at_start() -> None:
    lines = log_lines_until_listening(
        ["--census.api-url", "http://127.0.0.1:9/api/v1", "--web.listen-address", "127.0.0.1:0"], TOKEN_ENV
    )
    started = [line for line in lines if "Census API at http://127.0.0.1:9/api/v1" in line]
    assert len(started) == 1, lines


NO_TOKEN = "no API token: set CENSUS_API_TOKEN or --census.token-file, or give --config.file (or use --demo)"
EMPTY = "CENSUS_API_TOKEN is set but empty, which counts as unset"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CENSUS_API_TOKEN": ""}, f"{NO_TOKEN}; {EMPTY} (see --help)"),
        ({"CENSUS_API_TOKEN": "  \n"}, f"{NO_TOKEN}; {EMPTY} (see --help)"),
        ({}, f"{NO_TOKEN} (see --help)"),
    ],
)
def test_an_empty_token_variable_counts_as_unset_and_says_it_is_empty(
    environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_config([], environ)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_an_empty_token_variable_is_no_token_for_the_real_cli_too() -> None:
    result = run_cli(env={"CENSUS_API_TOKEN": ""})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"census-exporter: error: {NO_TOKEN}; {EMPTY} (see --help)"]


def test_an_empty_token_variable_beside_a_token_file_is_ignored(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret-token:from-the-file\n")
    config = parse_config(["--census.token-file", str(token_file)], {"CENSUS_API_TOKEN": ""})
    assert config.token() == "secret-token:from-the-file"


def test_an_empty_token_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(" \n")
    with pytest.raises(SystemExit):
        parse_config(["--census.token-file", str(token_file)], {})
    assert f"token file {token_file} is empty" in capsys.readouterr().err


def test_a_directory_as_token_file_is_one_clean_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--census.token-file", str(tmp_path)], {})
    error = capsys.readouterr().err
    assert f"cannot read token file {tmp_path}: is a directory" in error
    assert "Errno" not in error and error.count(str(tmp_path)) == 1, error


def test_log_levels_are_case_insensitive_and_http_libraries_stay_quiet() -> None:
    import logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for level, expected in (
            ("DEBUG", logging.DEBUG),
            ("Warning", logging.WARNING),
            ("info", logging.INFO),
        ):
            setup_logging(level)
            assert root.level == expected
            for library in ("httpx", "httpcore"):
                assert logging.getLogger(library).getEffectiveLevel() >= logging.WARNING
    finally:
        root.handlers[:], root.level = saved


def test_make_demo_installs_only_the_package_and_make_test_the_toolchain() -> None:
    make = require_tool("make")

    def planned(target: str) -> list[str]:
        # -n prints without running, -B as if nothing were installed yet.
        result = subprocess.run(
            [make, "-n", "-B", "-C", str(REPO), target], capture_output=True, text=True, check=True
        )
        return [line for line in result.stdout.splitlines() if "pip install" in line]

    demo = planned("demo")
    assert any(line.endswith("install --quiet -e .") for line in demo), demo
    assert not any("[test]" in line for line in demo), demo
    assert any("'.[test]'" in line for line in planned("pytest"))


def test_an_empty_workspace_label_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--census.workspace="], TOKEN_ENV)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--census.workspace" in error and "must not be empty" in error


def test_an_abbreviated_or_unknown_flag_is_refused_without_echoing_its_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--census.token", "secret-token:abbreviated"], ["--census.tokne=secret-token:abbreviated"]):
        with pytest.raises(SystemExit) as stopped:
            parse_config(argv, TOKEN_ENV)
        assert stopped.value.code == 2
        error = capsys.readouterr().err
        assert "unrecognized argument --census.tok" in error, error
        assert "secret-token:abbreviated" not in error


@pytest.mark.parametrize("bound", ["inf", "+Inf", "-inf", "nan", "1e400"])
@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_non_finite_duration_bucket_is_refused_in_one_line(bound: str, where: str) -> None:
    buckets = f"10,{bound}" if bound != "-inf" else f"{bound},10"
    argv = [f"--census.duration-buckets={buckets}"] if where == "flag" else []
    env = {**os.environ, "CENSUS_DURATION_BUCKETS": buckets} if where == "env" else dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "census_exporter", "--demo", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--census.duration-buckets" in lines[0] and "CENSUS_DURATION_BUCKETS" in lines[0]
    assert f"must be finite seconds (+Inf is always added), got {bound!r}" in lines[0]
