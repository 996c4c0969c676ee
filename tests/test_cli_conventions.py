"""Command-line conventions: prefixed variables, --help's token entry, typo hints, start order.

Issue 21: a platform's own LOG_FORMAT=text used to stop the exporter; every variable is prefixed now, and an
old name is ignored with one warning naming the new one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from census_exporter.cli.assembly import parse_config
from census_exporter.cli.flags import build_parser
from census_exporter.cli.parser import Setting
from census_exporter.cli.tokens import TOKEN_ENV
from tests.conftest import log_lines_until_listening

SETTINGS = build_parser().settings
LEGACY = {setting.legacy_env: setting for setting in SETTINGS if setting.legacy_env}


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


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.flag)
def test_every_variable_is_prefixed_by_what_the_flag_configures(setting: Setting) -> None:
    flag, env = setting.flag, setting.env
    if flag.startswith("--census."):
        assert env.startswith("CENSUS_") and not env.startswith("CENSUS_EXPORTER_"), (flag, env)
    else:
        expected = "CENSUS_EXPORTER_" + flag.removeprefix("--").replace(".", "_").replace("-", "_").upper()
        assert env == expected, (flag, env)


def test_the_old_names_are_the_ones_issue_21_lists() -> None:
    assert set(LEGACY) == {
        "LOG_LEVEL",
        "LOG_FORMAT",
        "WEB_LISTEN_ADDRESS",
        "WEB_TELEMETRY_PATH",
        "WEB_CONFIG_FILE",
        "CENSUS_CONFIG_FILE",
        "CENSUS_DEMO",
        "CENSUS_DEMO_SEED",
        "CENSUS_DEMO_SYNCS",
    }


@pytest.mark.parametrize("legacy", sorted(LEGACY))
def test_an_old_name_is_ignored_with_one_notice_naming_the_new_one(legacy: str) -> None:
    setting = LEGACY[legacy]
    # Values the new name would refuse: the old one must not even be read.
    config = parse_config(["--demo"], {legacy: "!not a valid value!"})
    assert config.notices == (
        f"environment variable {legacy} is ignored: set {setting.env} ({setting.flag}) instead",
    )


def test_no_notice_when_the_new_name_is_set_too() -> None:
    config = parse_config(["--demo"], {"LOG_FORMAT": "text", "CENSUS_EXPORTER_LOG_FORMAT": "json"})
    assert config.notices == ()
    assert config.log_format == "json"


def test_the_new_names_are_read() -> None:
    config = parse_config(
        [],
        {
            "CENSUS_EXPORTER_DEMO": "yes",
            "CENSUS_EXPORTER_DEMO_SYNCS": "7",
            "CENSUS_EXPORTER_LOG_LEVEL": "DEBUG",
            "CENSUS_EXPORTER_LOG_FORMAT": "json",
            "CENSUS_EXPORTER_WEB_TELEMETRY_PATH": "/m",
            "CENSUS_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:9",
        },
    )
    assert (config.demo, config.demo_syncs, config.log_level, config.log_format) == (True, 7, "debug", "json")
    assert (config.telemetry_path, config.listen_host, config.listen_port) == ("/m", "127.0.0.1", 9)


def test_a_platforms_log_format_text_no_longer_stops_the_real_exporter() -> None:
    env = {"LOG_FORMAT": "text", "LOG_LEVEL": "verbose"}
    lines = log_lines_until_listening(["--demo", "--web.listen-address", "127.0.0.1:0"], env)
    warnings = [line for line in lines if "level=warn" in line and "is ignored" in line]
    assert len(warnings) == 2, lines
    assert any("LOG_FORMAT is ignored: set CENSUS_EXPORTER_LOG_FORMAT (--log.format)" in w for w in warnings)
    assert any("LOG_LEVEL is ignored: set CENSUS_EXPORTER_LOG_LEVEL (--log.level)" in w for w in warnings)


def test_an_ignored_old_name_is_shown_before_the_error_it_explains() -> None:
    result = run_cli(env={"CENSUS_CONFIG_FILE": "/etc/census-exporter/workspaces.yaml"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "census-exporter: warning: environment variable CENSUS_CONFIG_FILE is ignored: set "
        "CENSUS_EXPORTER_CONFIG_FILE (--config.file) instead",
        "census-exporter: error: no API token: set CENSUS_API_TOKEN or --census.token-file, or give "
        "--config.file (or use --demo) (see --help)",
    ]


def test_help_has_an_entry_for_the_token_and_points_to_the_configuration_doc() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    epilog = result.stdout.rpartition("environment:")[2]
    entry = epilog.strip().splitlines()[0]
    assert entry.split()[0] == TOKEN_ENV and "token" in entry
    assert "--census.token-file" in epilog
    assert "Every flag above also has its own variable" in epilog
    assert result.stdout.rstrip().splitlines()[-2].startswith("Every flag")
    assert "docs/configuration.md" in result.stdout.rstrip().splitlines()[-2]


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("--web.listen-adress", "--web.listen-address"),
        ("--census.cache_ttl=5", "--census.cache-ttl"),
        ("--log-level", "--log.level"),
    ],
)
def test_a_typod_flag_gets_did_you_mean(typo: str, meant: str) -> None:
    result = run_cli("--demo", typo)
    assert result.returncode == 2
    name = typo.partition("=")[0]
    assert f"error: unrecognized argument {name}: did you mean {meant}? (see --help)" in result.stderr
    assert result.stderr.count("\n") == 1


def test_with_several_unknown_flags_the_guess_names_the_one_it_is_for() -> None:
    result = run_cli("--demo", "--zzz", "--log-levle=debug")
    assert result.returncode == 2
    expected = "unrecognized arguments: --log-levle --zzz; did you mean --log.level for --log-levle?"
    assert expected in result.stderr


def test_a_flag_far_from_any_gets_no_guess_and_its_value_is_never_echoed() -> None:
    result = run_cli("--demo", "--zzz=secret-token:abc")
    assert result.returncode == 2
    assert "did you mean" not in result.stderr and "secret-token" not in result.stderr


def test_the_v1_retirement_warning_does_not_come_before_a_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--web.listen-address", f"127.0.0.1:{port}", env={TOKEN_ENV: "secret-token:x"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"census-exporter: error: cannot listen on 127.0.0.1:{port} (--web.listen-address): "
        "address already in use"
    ]


def test_the_v1_retirement_warning_is_logged_once_the_start_succeeds() -> None:
    env = {TOKEN_ENV: "secret-token:x", "CENSUS_API_URL": "http://127.0.0.1:9/api/v1"}
    lines = log_lines_until_listening(["--web.listen-address", "127.0.0.1:0"], env)
    assert sum("Census API V1 is retired" in line for line in lines) == 1, lines
