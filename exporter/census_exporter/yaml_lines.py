"""YAML whose mappings remember their lines, so an error can name ``file:line``; duplicate keys are refused.

Used by the workspaces file (:mod:`census_exporter.workspaces`), whose errors name the line of the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import yaml


def shown(value: object) -> str:
    """``value`` as an error message quotes it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class LineDict(dict[str, Any]):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int | None = None
    key_lines: dict[str, int]


class LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are :class:`LineDict` and which refuses duplicate keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    mapping = LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"keys must be strings, got {shown(key)}", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    cast(Callable[[yaml.SafeLoader, yaml.Node], Any], _construct_mapping),
)
