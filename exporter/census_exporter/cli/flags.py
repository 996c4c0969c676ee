"""Every flag in one parser, the end of --help, and the flag table of docs/configuration.md made from them.

The flags themselves are in :mod:`census_exporter.cli.census_flags` (Census) and
:mod:`census_exporter.cli.serving_flags` (the exporter's own process).
"""

from __future__ import annotations

import argparse

from census_exporter.build import BUILD
from census_exporter.cli.census_flags import add_api_reading_flags, add_exposition_flags, add_workspace_flags
from census_exporter.cli.parser import Parser
from census_exporter.cli.serving_flags import add_process_flags, add_web_flags
from census_exporter.cli.tokens import TOKEN_ENV

#: --version's help, in --help and in the flag table alike.
VERSION_HELP = "Print the version, git revision and branch, Python version and platform; exit."

#: The end of --help: the token, which has no flag, and where the rest is documented.
HELP_EPILOG = f"""environment:
  {TOKEN_ENV}  the workspace API token (secret-token:...) with v1, the Activations personal
                    access token with v2; or use --census.token-file, or --config.file's token_env.
  Every flag above also has its own variable, the "env" in its help; the flag wins over it.

Every flag, its variable and the workspaces file: docs/configuration.md
(https://github.com/census-exporter/census-exporter/blob/main/docs/configuration.md)."""


def build_parser() -> Parser:
    """Every flag, with its environment variable, default and range."""
    parser = Parser(
        # No abbreviations: `--census.token secret` would be read as --census.token-file and echoed.
        allow_abbrev=False,
        prog="census-exporter",
        description="Prometheus exporter for Census (Fivetran Activations) sync runs.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_workspace_flags(parser)
    add_api_reading_flags(parser)
    add_exposition_flags(parser)
    add_web_flags(parser)
    add_process_flags(parser)
    parser.add_argument("--version", action="version", version=BUILD.version_text(), help=VERSION_HELP)
    return parser


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def flag_table_markdown(parser: Parser | None = None) -> str:
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
    rows.append(f"| `--version` | | | {_markdown_cell(VERSION_HELP)} |")
    return "\n".join(rows) + "\n"
