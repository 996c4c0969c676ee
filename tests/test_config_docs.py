"""docs/configuration.md and --help tell the truth about the flags: both come from the parser."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from census_exporter.cli.flags import VERSION_HELP, build_parser, flag_table_markdown
from census_exporter.cli.parser import Setting
from tests.stack import REPO

DOC = REPO / "docs" / "configuration.md"


def test_the_committed_flag_table_is_the_generated_one() -> None:
    committed = re.search(r"<!-- flags:begin -->\n(.*?)<!-- flags:end -->", DOC.read_text(), re.DOTALL)
    assert committed, "docs/configuration.md lost its <!-- flags:begin/end --> markers"
    assert committed.group(1) == flag_table_markdown(), "the flag table is stale: run `make docs`"


def test_the_generator_script_rewrites_a_stale_table(tmp_path: Path) -> None:
    script = (REPO / "scripts" / "gen-config-docs").read_text()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "configuration.md").write_text(
        "# x\n<!-- flags:begin -->\n| stale |\n<!-- flags:end -->\nprose\n"
    )
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "gen-config-docs").write_text(script)
    result = subprocess.run(
        [sys.executable, str(scripts / "gen-config-docs")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    written = (docs / "configuration.md").read_text()
    assert written == f"# x\n<!-- flags:begin -->\n{flag_table_markdown()}<!-- flags:end -->\nprose\n"


SETTINGS = build_parser().settings


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.flag)
def test_the_default_help_shows_is_the_default_used(setting: Setting) -> None:
    if setting.flag == "--census.api-url":
        # Empty means "the region's URL"; without a region that is the URL shown.
        assert build_parser().resolve([], {}).api_url is None
        assert setting.shown_default == "https://app.getcensus.com/api/v1"
    elif setting.shown_default:
        assert setting.convert(setting.shown_default) == setting.default
    else:
        assert setting.default is None


def test_help_shows_each_default_once_and_never_none() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "census_exporter", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "None" not in text
    assert text.count("https://app.getcensus.com/api/v1") == 1
    assert "CENSUS_EXPORTER_DEMO_SEED; default 0;" in text


def test_help_and_the_flag_table_describe_version_alike() -> None:
    """argparse's own "show program's version number and exit" is replaced by the table's text."""
    version = next(action for action in build_parser()._actions if "--version" in action.option_strings)
    assert version.help == VERSION_HELP
    assert f"| `--version` | | | {VERSION_HELP} |" in flag_table_markdown()
    result = subprocess.run(
        [sys.executable, "-m", "census_exporter", "--help"], capture_output=True, text=True, check=False
    )
    assert " ".join(VERSION_HELP.split()) in " ".join(result.stdout.split())
