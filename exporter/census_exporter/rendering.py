"""The Prometheus text format (0.0.4) and OpenMetrics 1.0, written straight to bytes.

The Census part of a scrape holds tens of thousands of samples at thousands of syncs. Built as
prometheus_client objects (a ``Sample`` tuple and a labels dict each) it took most of a rendering's time
and memory; here each family's samples are written once, as UTF-8 lines, and both formats share them.
The formats differ only in each family's HELP and TYPE lines (a counter's family name loses ``_total`` in
OpenMetrics, whose HELP also escapes quotes) and in OpenMetrics' closing ``# EOF``. Every line is what
prometheus_client writes for the same sample, so the two kinds of output can be concatenated and compared
(tests/test_golden_exposition.py, tests/test_rendering.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from prometheus_client import utils

#: prometheus_client's own formatting of sample values (Go's: ``1.634698267546e+09``), untyped there.
_go_float = cast(Callable[[float], str], utils.floatToGoString)

MetricType = Literal["gauge", "counter", "histogram"]

#: Pieces of a response smaller than this are joined with their neighbours: one send() each would cost
#: more in system calls than the copy.
_CHUNK_BYTES = 64 * 1024
OPENMETRICS_EOF = b"# EOF\n"


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family as the text format names it (a counter's name ends in ``_total``)."""

    name: str
    type: MetricType
    help: str

    def __post_init__(self) -> None:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")

    def header(self, openmetrics: bool) -> bytes:
        """The HELP and TYPE lines that open the family in one format."""
        if openmetrics:
            name = self.name.removesuffix("_total") if self.type == "counter" else self.name
            text = _escape(self.help)
        else:
            name = self.name
            text = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {name} {text}\n# TYPE {name} {self.type}\n".encode()


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    """``name="value"`` pairs for inside the braces, sorted by name and escaped as prometheus_client does."""
    return ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(labels))


def number(value: float | int | bool) -> str:
    """``value`` as a sample value; raises when it has no finite float (``10**400``, NaN, infinity).

    No Census value is legitimately infinite or NaN; one that is must not reach a rate() or an alert.
    """
    converted = float(value)
    if not math.isfinite(converted):
        raise OverflowError("not a finite number")
    return _go_float(converted)


def sample(name: str, labels: str, value: float | int | bool) -> str:
    """One sample line; ``labels`` as :func:`label_text` makes it (may be empty)."""
    if labels:
        return f"{name}{{{labels}}} {number(value)}\n"
    return f"{name} {number(value)}\n"


def histogram(
    name: str, labels: Sequence[tuple[str, str]], buckets: Sequence[tuple[str, int]], total: float
) -> list[str]:
    """A classic histogram's sample lines: ``buckets`` as (``le``, cumulative count), then ``_count`` (the
    last bucket's) and ``_sum`` (``total``), in prometheus_client's order."""
    lines = [sample(f"{name}_bucket", label_text([*labels, ("le", le)]), count) for le, count in buckets]
    plain = label_text(labels)
    lines.append(sample(f"{name}_count", plain, buckets[-1][1]))
    lines.append(sample(f"{name}_sum", plain, total))
    return lines


class FamilyBlocks:
    """The samples of several families, gathered in exposition order as bytes."""

    def __init__(self, families: Sequence[Family]) -> None:
        self.families = tuple(families)
        self._samples = [bytearray() for _ in self.families]

    def add(self, lines: Sequence[tuple[int, str]]) -> None:
        """Append lines, each to the family at its index; all of them or, if one cannot be encoded (a lone
        surrogate in a label), none, raising ``UnicodeEncodeError``."""
        encoded = [(index, line.encode()) for index, line in lines]
        for index, data in encoded:
            self._samples[index] += data

    def rendered(self, *, omit_empty: bool = False) -> RenderedFamilies:
        """The families with their samples, frozen; the blocks are empty afterwards.

        ``omit_empty`` leaves out a family without samples (not even its HELP and TYPE lines): for families
        that exist only where they have something to say."""
        blocks = []
        for index, family in enumerate(self.families):
            # Each buffer is released as soon as it is copied: the rendering never holds two whole copies.
            data, self._samples[index] = self._samples[index], bytearray()
            if data or not omit_empty:
                blocks.append((family, bytes(data)))
            del data
        return RenderedFamilies(tuple(blocks))


@dataclass(frozen=True, slots=True)
class RenderedFamilies:
    """Families and their samples, ready to send in either format."""

    blocks: tuple[tuple[Family, bytes], ...] = ()

    def __add__(self, other: RenderedFamilies) -> RenderedFamilies:
        return RenderedFamilies(self.blocks + other.blocks)

    def chunks(self, openmetrics: bool) -> list[bytes]:
        """The exposition (without ``# EOF``) as a few large pieces to send one after the other.

        Blocks of samples are sent as they are, never copied; only the small pieces between them (HELP and
        TYPE lines, families of a few samples) are joined.
        """
        chunks: list[bytes] = []
        pending: list[bytes] = []
        for family, data in self.blocks:
            pending.append(family.header(openmetrics))
            if len(data) < _CHUNK_BYTES:
                pending.append(data)
                continue
            chunks.append(b"".join(pending))
            chunks.append(data)
            pending = []
        if pending:
            chunks.append(b"".join(pending))
        return chunks

    def text(self) -> bytes:
        """The whole exposition in the text format."""
        return b"".join(self.chunks(openmetrics=False))

    def openmetrics(self) -> bytes:
        """The whole exposition in OpenMetrics, ``# EOF`` included."""
        return b"".join(self.chunks(openmetrics=True)) + OPENMETRICS_EOF
