"""Converters of flag and variable text into values, shared by the exporter's CLI and the demo's.

Each is a callable ``str -> value`` that raises ``ValueError`` with a message fit for a one-line usage error;
``NumberRange`` and ``Bytes`` also carry their ``range_text`` for --help and the docs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


class NumberRange:
    """A number of ``kind`` within ``low..high`` inclusive."""

    def __init__(self, kind: type[int] | type[float], low: float, high: float) -> None:
        self.kind = kind
        self.low = low
        self.high = high

    @property
    def range_text(self) -> str:
        """The accepted range, as --help and the docs show it."""
        if self.kind is int:
            return f"{int(self.low)} to {int(self.high)}"
        return f"{self.low:g} to {self.high:g}"

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text.strip())
        except ValueError:
            noun = "whole number" if self.kind is int else "number"
            raise ValueError(f"expected a {noun} from {self.range_text}, got {text!r}") from None
        if not self.low <= value <= self.high:  # also refuses NaN
            raise ValueError(f"must be from {self.range_text}, got {text!r}")
        return value


_BYTE_UNITS = {
    **{"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3},
    **{"kb": 1000, "mb": 1000**2, "gb": 1000**3},
}


class Bytes(NumberRange):
    """A size in bytes: ``16777216``, ``16MiB`` or ``16MB`` (case-insensitive)."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__(int, low, high)

    @property
    def range_text(self) -> str:
        """The accepted range, as --help and the docs show it."""
        return f"{format_bytes(int(self.low))} to {format_bytes(int(self.high))}"

    def __call__(self, text: str) -> int:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _BYTE_UNITS:
            raise ValueError(f"expected bytes such as 16777216 or 16MiB, got {text!r}")
        value = int(match.group(1)) * _BYTE_UNITS[unit]
        if not self.low <= value <= self.high:
            raise ValueError(f"must be from {self.range_text}, got {text!r}")
        return value


def format_bytes(value: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if value % _BYTE_UNITS[unit.lower()] == 0:
            return f"{value // _BYTE_UNITS[unit.lower()]}{unit}"
    return str(value)


class Choice:
    """One of ``values``, case-insensitive, with ``aliases`` for other tools' spellings."""

    def __init__(self, values: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
        self.values = tuple(values)
        self.aliases = dict(aliases or {})

    def __call__(self, text: str) -> str:
        name = text.strip().lower()
        name = self.aliases.get(name, name)
        if name not in self.values:
            raise ValueError(f"{text!r} is not one of {', '.join(self.values)}")
        return name


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def boolean(text: str) -> bool:
    name = text.strip().lower()
    if name in _TRUE or name in _FALSE:
        return name in _TRUE
    raise ValueError(f"expected true/false, yes/no, on/off or 1/0, got {text!r}")
