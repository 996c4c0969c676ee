"""How the state file and its journal are written and read (``--storage.path``, :mod:`.storage`).

The state file is replaced whole and atomically (:func:`write_atomically`). A save that changes only a few
ledgers (an announced read, which a webhook event starts, changes one; a round that reconciles reads a
few) is appended to the journal beside it instead, ``ledgers-<hash>.journal``: one line per save holding
the changed syncs' ledgers, fsynced before the swap, so what a scrape can see is never ahead of what a
restart restores, as with a rewrite. The cost of a save is then its changed ledgers, not every ledger of
the workspace (a rewrite of 2,000 syncs is about 1 MB, written and fsynced per event). Once the journal
would outgrow the state file (or :data:`JOURNAL_MIN_BYTES`), the next save rewrites the state file and
starts a new journal: a save costs at most about twice its own lines, on average.

Each line carries the journal id the state file names; a rewrite names a new one before the old journal
is removed, so a crash between the two leaves a journal whose lines the new state file does not take.
The crash window is a line being written: a line torn by a crash, or lost by a power cut before its fsync
ended, was never swapped in; the reading stops at the first line that is not whole JSON of this journal,
and the next save rewrites the state file (so nothing is ever appended after a torn line). A journal is
never larger than the state file it goes with (or :data:`JOURNAL_MIN_BYTES`): a larger one is not read.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from census_exporter.ledger_format import Unusable, no_repeated_keys, to_json

#: The journal may grow to the size of the state file, or this, whichever is larger, before a rewrite.
JOURNAL_MIN_BYTES = 256 * 1024


def journal_path(state_path: Path) -> Path:
    """The journal beside ``state_path``."""
    return state_path.with_suffix(".journal")


def journal_line(journal_id: str, parts: list[bytes]) -> bytes:
    """One save's line: the changed syncs, each ``"<id>":<ledger and definition JSON>``."""
    return b'{"journal":' + to_json(journal_id) + b',"syncs":{' + b",".join(parts) + b"}}\n"


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, read neither through a link nor blocked by a named pipe: only a regular file of
    its own, of at most ``max_bytes``, is read (else :class:`Unusable`; OSError, FileNotFoundError included,
    as raised)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Unusable("not a regular file")
        if info.st_size > max_bytes:
            raise Unusable(f"{info.st_size} bytes, more than {max_bytes}")
        return handle.read(max_bytes + 1)


@dataclass(frozen=True, slots=True)
class JournalSave:
    """One line of the journal: its number (from 1), the syncs it holds, the bytes it takes."""

    line: int
    syncs: dict[str, Any]
    size: int


@dataclass(frozen=True, slots=True)
class JournalRead:
    """The saves of a journal, oldest first, up to the first line that is not one (``stopped`` says why;
    ``None``: the journal ends with them)."""

    saves: list[JournalSave] = field(default_factory=list)
    stopped: str | None = None


def read_journal(path: Path, journal_id: str, max_bytes: int) -> JournalRead:
    """The saves of the journal for ``journal_id``, up to the first line that is not whole JSON of a save
    of this journal.

    No journal is no saves. One that is not a regular file (a link, a pipe), larger than ``max_bytes`` or
    unreadable is :class:`Unusable`, with the reason.
    """
    try:
        data = read_regular_file(path, max_bytes)
    except FileNotFoundError:
        return JournalRead()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise Unusable("a symbolic link, not a regular file") from None
        raise Unusable(f"unreadable: {error.strerror or error}") from None
    saves: list[JournalSave] = []
    position = 0
    while position < len(data):
        number = len(saves) + 1
        end = data.find(b"\n", position)
        if end < 0:
            torn = f"line {number} is torn (a crash while it was written: it was never swapped in)"
            return JournalRead(saves, torn)
        line = data[position : end + 1]
        try:
            document = json.loads(line, object_pairs_hook=no_repeated_keys)
        except (ValueError, RecursionError, Unusable) as error:
            return JournalRead(saves, f"line {number} is not JSON ({type(error).__name__})")
        if not isinstance(document, dict) or document.get("journal") != journal_id:
            return JournalRead(saves, f"line {number} is not a save of the journal the state file names")
        syncs = document.get("syncs")
        if not isinstance(syncs, dict):
            return JournalRead(saves, f"line {number} holds no syncs")
        saves.append(JournalSave(number, syncs, len(line)))
        position = end + 1
    return JournalRead(saves)


class JournalWriter:
    """Appends lines to the journal, each fsynced before :meth:`append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Bytes in the journal now (what the state file's journal id takes).
        self.size = 0
        self._descriptor: int | None = None

    def append(self, line: bytes) -> None:
        """Append ``line`` and fsync it (the journal is made, and its directory fsynced, at the first)."""
        if self._descriptor is None:
            self._descriptor = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            fsync_directory(self.path.parent)
        view = memoryview(line)
        while view:
            written = os.write(self._descriptor, view)
            view = view[written:]
        os.fsync(self._descriptor)
        self.size += len(line)

    def restart(self, size: int = 0) -> None:
        """Forget the journal open now; ``size``: what the one on disk takes (0: remove it)."""
        self.close()
        if not size:
            self.path.unlink(missing_ok=True)
        self.size = size

    def close(self) -> None:
        """Close the journal (it is opened again at the next append)."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    # A leftover of a crash is removed, and nothing planted there (a symbolic link) is written through.
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a file made, renamed or removed in ``directory`` survive a power cut."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
