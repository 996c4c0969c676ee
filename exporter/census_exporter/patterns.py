"""SyncPattern: a user's include/exclude regex, matched with RE2.

The patterns come from the operator, the text they are matched against (sync labels) from the Census API.
Python's ``re`` backtracks: ``(a+)+$`` against 30 a's and a ``!`` takes minutes and holds the interpreter
lock, so one hostile label would freeze every thread of the exporter. RE2 guarantees time linear in the
label's length. Its syntax is the one Prometheus uses for relabelling (Go's), without backreferences or
lookaround: a pattern RE2 cannot compile is refused when the file is read.
"""

from __future__ import annotations

from typing import Any

import re2  # type: ignore[import-untyped]

_OPTIONS: Any = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported once, in the CLI's one error line


class SyncPattern:
    """One compiled regex; equal to another when their sources are equal."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, source: str) -> None:
        try:
            self._compiled: Any = re2.compile(source, _OPTIONS)
        except re2.error as error:
            detail = error.args[0] if error.args else error
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise ValueError(f"{detail} (RE2 syntax)") from None
        self.pattern = source

    def __repr__(self) -> str:
        return f"SyncPattern({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SyncPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``."""
        return self._compiled.search(text) is not None

    def fullmatch(self, text: str) -> bool:
        """Whether the pattern matches all of ``text``."""
        return self._compiled.fullmatch(text) is not None
