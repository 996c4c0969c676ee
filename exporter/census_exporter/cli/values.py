"""Converters of this exporter's own flag values: URLs, ids, addresses, paths, buckets and files.

The general ones (numbers in a range, sizes, choices, booleans) are in :mod:`census_exporter.converters`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from census_exporter.census.client import validate_base_url
from census_exporter.http.server import parse_listen_address
from census_exporter.web_config import WebConfigError, load_web_config
from census_exporter.workspaces import WorkspacesFile, WorkspacesFileError, load_workspaces_file


def api_url(text: str) -> str:
    # validate_base_url's messages never quote the URL, which may hold a password.
    return validate_base_url(text)


_GROUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def group_id(text: str) -> str:
    name = text.strip()
    if not _GROUP_ID.fullmatch(name):
        raise ValueError(
            f"expected a Fivetran group id such as decent_dropsy (letters, digits, _ . -), got {text!r}"
        )
    return name


def listen_addresses(text: str) -> tuple[tuple[str, int], ...]:
    # Commas separate several addresses in the variable (an IPv6 address has colons, never a comma).
    addresses = tuple(parse_listen_address(part.strip()) for part in text.split(",") if part.strip())
    if not addresses:
        raise ValueError(f"expected [HOST]:PORT, got {text!r}")
    return addresses


def optional_listen_address(text: str) -> tuple[str, int] | None:
    if text.strip().lower() in ("", "off", "none"):
        return None
    return parse_listen_address(text)


def comma_paths(text: str) -> tuple[str, ...]:
    paths = tuple(part.strip() for part in text.split(",") if part.strip())
    if not paths:
        raise ValueError("expected one or more comma-separated paths")
    return paths


def buckets(text: str) -> tuple[float, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected comma-separated seconds, got {text!r}") from None
    for part, value in zip(parts, values, strict=True):
        if not math.isfinite(value):
            # +Inf is always the last bucket: an "inf" bound would be written le="inf" beside it, which
            # OpenMetrics parsers reject, and NaN sorts nowhere.
            raise ValueError(f"buckets must be finite seconds (+Inf is always added), got {part!r}")
    if not values or any(not b > 0 for b in values) or list(values) != sorted(set(values)):
        raise ValueError("buckets must be positive and strictly increasing")
    return values


def telemetry_path(text: str) -> str:
    if not text.startswith("/") or text in ("/", "/healthz", "/readyz"):
        raise ValueError(f"must start with / and not clash with other pages: {text!r}")
    return text


def workspace_label(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must not be empty: it is the workspace label of every series")
    if len(value) > 128 or not value.isprintable():
        raise ValueError("must be at most 128 printable characters")
    return value


def loaded_workspaces_file(text: str) -> WorkspacesFile:
    try:
        return load_workspaces_file(text)
    except WorkspacesFileError as error:
        raise ValueError(str(error)) from None


def storage_path(text: str) -> str:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{text} is not a directory")
    return text


def web_config_file(text: str) -> str:
    try:
        load_web_config(text)
    except WebConfigError as error:
        raise ValueError(str(error)) from None
    return text
