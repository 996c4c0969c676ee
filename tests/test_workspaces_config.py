"""The workspaces file: valid files parse into frozen configs, every mistake is one line naming where."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from census_exporter.workspaces import (
    AutoDiscovery,
    TokenLocation,
    WorkspaceConfig,
    WorkspacesFile,
    WorkspacesFileError,
    load_workspaces_file,
    parse_workspaces_file,
)

FILE = "/etc/census/workspaces.yaml"

EXAMPLE = """\
workspaces:
  - name: marketing
    api_version: v1
    api_url: https://app.getcensus.com/api/v1
    token_file: /run/secrets/census/marketing
  - name: sales
    api_version: v2
    region: eu
    token_env: CENSUS_TOKEN_SALES
    group_id: abc_def
    include: ["^prod "]
    exclude: ["test$"]
  - auto: true
    api_version: v2
    token_file: /run/secrets/census/pat
"""


def parse(text: str) -> WorkspacesFile:
    return parse_workspaces_file(textwrap.dedent(text), FILE)


def test_the_documented_example_parses_into_workspaces_and_a_discovery() -> None:
    parsed = parse_workspaces_file(EXAMPLE, FILE)
    marketing, sales = parsed.workspaces
    assert marketing == WorkspaceConfig(
        name="marketing",
        api_version="v1",
        api_url="https://app.getcensus.com/api/v1",
        token=TokenLocation(file=Path("/run/secrets/census/marketing")),
        line=2,
    )
    assert sales.api_url == "https://app-eu.getcensus.com/api/v2"
    assert sales.token == TokenLocation(env="CENSUS_TOKEN_SALES")
    assert sales.group_id == "abc_def"
    assert [p.pattern for p in sales.syncs.include] == ["^prod "]
    (discovery,) = parsed.discoveries
    assert discovery == AutoDiscovery(
        api_version="v2",
        api_url="https://app.getcensus.com/api/v2",
        token=TokenLocation(file=Path("/run/secrets/census/pat")),
        line=13,
    )


def test_discovery_relists_every_five_minutes_unless_told() -> None:
    text = "workspaces:\n  - auto: true\n    api_version: v2\n    token_env: T\n"
    assert parse_workspaces_file(text, FILE).discoveries[0].relist_interval_seconds == 300.0
    faster = parse_workspaces_file(text + "    relist_interval_seconds: 30\n", FILE)
    assert faster.discoveries[0].relist_interval_seconds == 30.0


def test_parsed_configs_are_frozen() -> None:
    workspace = parse_workspaces_file(EXAMPLE, FILE).workspaces[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        workspace.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("api_version", "region", "expected"),
    [
        ("v1", None, "https://app.getcensus.com/api/v1"),
        ("v2", None, "https://app.getcensus.com/api/v2"),
        ("v1", "eu", "https://app-eu.getcensus.com/api/v1"),
        ("v1", "us", "https://app.getcensus.com/api/v1"),
    ],
)
def test_the_api_url_defaults_from_the_version_and_region(
    api_version: str, region: str | None, expected: str
) -> None:
    group = "\n    group_id: g" if api_version == "v2" else ""
    region_line = f"\n    region: {region}" if region else ""
    parsed = parse_workspaces_file(
        f"workspaces:\n  - name: a\n    api_version: {api_version}\n    token_env: T{group}{region_line}\n",
        FILE,
    )
    assert parsed.workspaces[0].api_url == expected


def test_an_explicit_api_url_is_kept_without_its_trailing_slash() -> None:
    parsed = parse(
        """\
        workspaces:
          - name: local
            api_version: v2
            group_id: g
            api_url: http://127.0.0.1:8080/api/v2/
            token_env: T
        """
    )
    assert parsed.workspaces[0].api_url == "http://127.0.0.1:8080/api/v2"


def test_the_sync_filter_includes_then_excludes_by_label() -> None:
    sales = parse_workspaces_file(EXAMPLE, FILE).workspaces[1]
    assert sales.syncs.admits("prod Contacts")
    assert not sales.syncs.admits("prod Contacts test")
    assert not sales.syncs.admits("staging Contacts")
    marketing = parse_workspaces_file(EXAMPLE, FILE).workspaces[0]
    assert marketing.syncs.admits("anything at all")


BASE = """\
workspaces:
  - name: marketing
    api_version: v1
    token_file: /run/secrets/m
"""

AUTO = "workspaces:\n  - auto: true\n    api_version: v1\n    token_env: T\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the file itself
        ("", f"{FILE}: the file must be a mapping"),
        ("- a\n- b\n", f"{FILE}: the file must be a mapping"),
        ("workspace: []\n", f"{FILE}:1: the file: field `workspace` is not a known key"),
        ("workspaces: []\n", f"{FILE}:1: the file: field `workspaces` must be a non-empty list"),
        ("workspaces:\n  - just a string\n", "field `workspaces` entry 1 must be a mapping"),
        ("workspaces: [\n", f"{FILE}:2: not valid YAML"),
        (BASE + "    name: again\n", f"{FILE}:5: not valid YAML: duplicate key 'name'"),
        # required keys and types
        (
            "workspaces:\n  - api_version: v1\n    token_env: T\n",
            f"{FILE}:2: workspaces[0]: field `name` is required",
        ),
        (
            "workspaces:\n  - name: 42\n    api_version: v1\n    token_env: T\n",
            f"{FILE}:2: workspaces[0]: field `name` must be a non-empty string, got 42",
        ),
        (
            "workspaces:\n  - name: m\n    token_env: T\n",
            f"{FILE}:2: workspace 'm': field `api_version` is required",
        ),
        (
            BASE.replace("api_version: v1", "api_version: v3"),
            f"{FILE}:3: workspace 'marketing': field `api_version` must be v1 or v2, got 'v3'",
        ),
        (
            BASE + "    tokenfile: /x\n",
            f"{FILE}:5: workspace 'marketing': field `tokenfile` is not a known key",
        ),
        # group_id belongs to v2 only
        (
            BASE + "    group_id: abc\n",
            f"{FILE}:5: workspace 'marketing': field `group_id` is only valid with api_version v2",
        ),
        (
            BASE.replace("api_version: v1", "api_version: v2"),
            f"{FILE}:2: workspace 'marketing': field `group_id` is required with api_version v2",
        ),
        # the token: exactly one source
        (
            "workspaces:\n  - name: m\n    api_version: v1\n",
            f"{FILE}:2: workspace 'm': field `token_file` or `token_env` is required",
        ),
        (
            BASE + "    token_env: T\n",
            f"{FILE}:5: workspace 'marketing': field `token_env` cannot be combined with `token_file`",
        ),
        (
            "workspaces:\n  - name: m\n    api_version: v1\n    token_env: 'NOT A NAME'\n",
            f"{FILE}:4: workspace 'm': field `token_env` must be an environment variable name",
        ),
        # where the API is: region XOR api_url
        (
            BASE + "    region: us\n    api_url: https://app.getcensus.com/api/v1\n",
            f"{FILE}:5: workspace 'marketing': field `region` cannot be combined with `api_url`",
        ),
        (
            BASE + "    region: au\n",
            f"{FILE}:5: workspace 'marketing': field `region` must be us or eu, got 'au'",
        ),
        (
            BASE + "    api_url: ftp://app.getcensus.com/api/v1\n",
            f"{FILE}:5: workspace 'marketing': field `api_url` must be an http(s) URL with a host",
        ),
        (
            BASE + "    api_url: https://app.getcensus.com/api/v2\n",
            f"{FILE}:5: workspace 'marketing': field `api_url` ends in /api/v2 but api_version is v1",
        ),
        # regexes
        (
            BASE + "    include: '^prod'\n",
            f"{FILE}:5: workspace 'marketing': field `include` must be a list of regexes",
        ),
        (
            BASE + "    exclude: ['(unclosed']\n",
            f"{FILE}:5: workspace 'marketing': field `exclude` has an invalid regex '(unclosed'",
        ),
        (
            BASE + "    include: [3]\n",
            f"{FILE}:5: workspace 'marketing': field `include` must hold strings, got 3",
        ),
        # names are the `workspace` label: unique
        (
            BASE + "  - name: marketing\n    api_version: v1\n    token_env: T\n",
            f"{FILE}:5: workspace 'marketing': field `name` is used twice (first at line 2",
        ),
        # discovery entries
        (
            "workspaces:\n  - auto: yes please\n    api_version: v1\n    token_env: T\n",
            f"{FILE}:2: workspaces[0] (auto): field `auto` must be true",
        ),
        (
            "workspaces:\n  - auto: true\n    name: x\n    api_version: v1\n    token_env: T\n",
            f"{FILE}:3: workspace 'x': field `name` is not allowed with `auto: true`",
        ),
        (
            AUTO + "    relist_interval_seconds: 0\n",
            f"{FILE}:5: workspaces[0] (auto): field `relist_interval_seconds` must be a number of seconds",
        ),
        (
            AUTO + "    relist_interval_seconds: '5m'\n",
            f"{FILE}:5: workspaces[0] (auto): field `relist_interval_seconds` must be a number of seconds",
        ),
        (
            "workspaces:\n  - auto: true\n    api_version: v2\n    group_id: g\n    token_env: T\n",
            f"{FILE}:4: workspaces[0] (auto): field `group_id` is not allowed with `auto: true`",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_file_line_workspace_and_field(text: str, expected: str) -> None:
    with pytest.raises(WorkspacesFileError) as caught:
        parse_workspaces_file(text, FILE)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(FILE)
    assert "\n" not in message


def test_an_api_url_with_credentials_is_refused_without_printing_them() -> None:
    text = BASE + "    api_url: https://bearer:secret-token:abc@app.getcensus.com/api/v1\n"
    with pytest.raises(WorkspacesFileError) as caught:
        parse_workspaces_file(text, FILE)
    assert "must not contain credentials" in str(caught.value)
    assert "secret-token:abc" not in str(caught.value)


def test_load_reads_the_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "workspaces.yaml"
    good.write_text(EXAMPLE, encoding="utf-8")
    assert [w.name for w in load_workspaces_file(good).workspaces] == ["marketing", "sales"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("v1", "v9"), encoding="utf-8")
    with pytest.raises(WorkspacesFileError, match=rf"^{bad}:3: workspace 'marketing'"):
        load_workspaces_file(bad)


def test_a_missing_file_is_one_line_without_a_traceback_chain(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(WorkspacesFileError) as caught:
        load_workspaces_file(missing)
    assert str(caught.value) == f"{missing}: cannot read the workspaces file: No such file or directory"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_the_example_in_the_api_versions_doc_is_a_valid_file() -> None:
    doc = Path(__file__).parent.parent / "docs" / "census-api-versions.md"
    example = doc.read_text(encoding="utf-8").split("```yaml\n", 1)[1].split("```", 1)[0]
    parsed = parse_workspaces_file(example, str(doc))
    assert [w.name for w in parsed.workspaces] == ["marketing", "sales"]
    assert [d.api_version for d in parsed.discoveries] == ["v2"]


def test_a_token_location_becomes_the_config_layers_token_source(tmp_path: Path) -> None:
    token_file = tmp_path / "pat"
    token_file.write_text("secret-token:from-file\n", encoding="utf-8")
    from_file = TokenLocation(file=token_file).token_source({})
    assert (from_file(), from_file.path) == ("secret-token:from-file", str(token_file))
    assert "secret-token" not in repr(from_file)
    from_env = TokenLocation(env="CENSUS_PAT").token_source({"CENSUS_PAT": " secret-token:from-env "})
    assert from_env() == "secret-token:from-env"
    assert TokenLocation(env="UNSET").token_source({})() == ""
    assert TokenLocation(env="CENSUS_PAT").describe() == "environment variable CENSUS_PAT"


def test_names_equal_up_to_case_or_unicode_form_are_one_name() -> None:
    for first, second in (("café", "cafe\u0301"), ("Prod", "prod")):
        text = f"{BASE}  - name: {second}\n    api_version: v1\n    token_env: T\n".replace(
            "marketing", first
        )
        with pytest.raises(WorkspacesFileError, match=r"is used twice .*up to case and Unicode form"):
            parse_workspaces_file(text, FILE)


def test_an_error_about_a_huge_name_stays_one_short_line() -> None:
    text = f"workspaces:\n  - name: {'x' * 100_000}\n    api_version: v3\n    token_env: T\n"
    with pytest.raises(WorkspacesFileError) as caught:
        parse_workspaces_file(text, FILE)
    assert len(str(caught.value)) < 300


def test_a_pattern_matches_the_label_or_the_whole_id() -> None:
    text = BASE + '    exclude: ["^42$", "test"]\n'
    syncs = parse_workspaces_file(text, FILE).workspaces[0].syncs
    assert not syncs.admits("Contacts", 42)
    assert syncs.admits("Contacts", 420)
    assert not syncs.admits("Contacts test", 7)
    assert syncs.admits("Contacts", 7)
