"""Run ids packed as 64-bit integers: the ledger remembers hundreds per sync, so each id costs 8 bytes."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import overload


class RunIds(Sequence[int]):
    """An immutable sequence of run ids packed as 64-bit integers (ids are at most ``2**63 - 1``).

    A ledger remembers up to :data:`~census_exporter.ledger.REMEMBERED_RUN_IDS` of them per sync: as a tuple
    each id would also be a 28-byte int object, about 36 bytes an id instead of 8 (some 70 MiB more at 5,000
    syncs).
    """

    __slots__ = ("_ids",)

    def __init__(self, run_ids: Sequence[int] = ()) -> None:
        self._ids = array("q", run_ids)

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> RunIds: ...
    def __getitem__(self, index: int | slice) -> int | RunIds:
        if isinstance(index, slice):
            return RunIds(self._ids[index])
        return self._ids[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunIds):
            return self._ids == other._ids
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return tuple(self._ids) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._ids))

    def __repr__(self) -> str:
        return f"RunIds({list(self._ids)!r})"
