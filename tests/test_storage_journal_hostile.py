"""The state file's journal with hostile content, over real HTTP: garbage lines, a torn last line, a line of
several MB, bytes that are not UTF-8, a link or a named pipe in its place, a journal larger than its bound.
Each time the exporter starts, restores the state file and what of the journal can be taken, says so in one
line (no traceback), serves, and counts on: no run is lost or counted twice."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from census_exporter import storage
from tests.conftest import Harness
from tests.test_storage import SYNCS, runs_total, state_files, workspace_with_history

_ONE = "1 of its journal's saves"
#: What each case puts in the journal's place, given its two whole lines, and what the start says of it.
_CASES = {
    "a garbage line": (lambda lines: lines[0] + b"garbage\n" + lines[1], _ONE, "line 2 is not JSON"),
    "a torn last line": (lambda lines: lines[0] + lines[1][:-40], _ONE, "line 2 is torn"),
    "bytes that are not UTF-8": (
        lambda lines: lines[0] + b'{"journal": "\xff\xfe"}\n' + lines[1],
        _ONE,
        "line 2 is not JSON (UnicodeDecodeError)",
    ),
    "a line of several MB": (
        # Whole JSON of this journal, taken as far as a save can be: its ledger is no ledger.
        lambda lines: (
            lines[0]
            + lines[0].split(b',"syncs"')[0]
            + b',"syncs":{"12":{"pad":"'
            + b"x" * (5 * 1024 * 1024)
            + b'"}}}\n'
        ),
        _ONE,
        "line 2 is not a usable save: ",
    ),
    "a journal larger than its bound": (
        lambda lines: lines[0] + lines[1] + b"x" * storage.JOURNAL_MIN_BYTES + b"\n",
        "without its journal",
        "more than 262144",
    ),
}


def _crashed_with_a_journal(harness_factory: Callable[..., Harness], directory: Path) -> tuple[Harness, Path]:
    """An exporter that stored a state file and two journal lines (a run of 11, then one of 12), and
    stopped without folding them in (a crash: a clean stop rewrites the state file)."""
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(directory))
    first.refresh()  # the state file
    for sync_id in SYNCS[:2]:
        workspace.add_run(sync_id, "completed")
        first.refresh()  # one ledger changed: a line each
    (path,) = state_files(directory)
    journal = path.with_suffix(".journal")
    assert journal.read_bytes().count(b"\n") == 2
    before = first.scrape()
    assert [runs_total(before, sync_id) for sync_id in SYNCS] == [1, 1, 0]
    kept = {each: each.read_bytes() for each in (path, journal)}
    first.exporter.close()
    for each, data in kept.items():
        each.write_bytes(data)
    return first, journal


def _restart(
    harness_factory: Callable[..., Harness], first: Harness, directory: Path, caplog: pytest.LogCaptureFixture
) -> tuple[Harness, list[str]]:
    """The restart over ``directory``: it serves, counts on, and what it said about its stored ledgers."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="census_exporter"):
        second = harness_factory(first.workspace, storage_path=str(directory), api_url=first.simulator.url)
    said = [r for r in caplog.records if "stored ledgers" in r.getMessage() or "restored" in r.getMessage()]
    assert all(r.exc_info is None for r in caplog.records)
    second.refresh()
    scrape = second.scrape()
    assert scrape.value("census_up") == 1
    # Each run once: the runs the journal's lost saves counted are read again and counted from the ledgers
    # restored, which do not know them yet.
    assert [runs_total(scrape, sync_id) for sync_id in SYNCS] == [1, 1, 0]
    return second, [r.getMessage() for r in said]


@pytest.mark.parametrize("case", list(_CASES))
def test_a_journal_with_hostile_content_restores_what_it_can(
    harness_factory: Callable[..., Harness],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    make, restored, reason = _CASES[case]
    if case == "a line of several MB":
        # Within the journal's bound, so that the line is read (the bound is the state file's size).
        monkeypatch.setattr(storage, "JOURNAL_MIN_BYTES", 16 * 1024 * 1024)
    first, journal = _crashed_with_a_journal(harness_factory, tmp_path)
    journal.write_bytes(make(journal.read_bytes().splitlines(keepends=True)))
    second, said = _restart(harness_factory, first, tmp_path, caplog)
    assert len(said) == 1 and restored in said[0] and reason in said[0], said
    assert "x" * 100 not in said[0] and "garbage" not in said[0]
    # The refresh's save rewrote the state file: nothing is appended after a line not taken.
    assert not journal.exists()
    assert second.get("/readyz").status_code == 200


@pytest.mark.parametrize("planted", ["a symbolic link", "a named pipe"])
def test_a_link_or_pipe_in_the_journals_place_is_set_aside_unread(
    harness_factory: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture, planted: str
) -> None:
    first, journal = _crashed_with_a_journal(harness_factory, tmp_path / "state")
    victim = tmp_path / "victim"
    shutil.copyfile(journal, victim)  # a journal of this state file, even: a link is not followed
    journal.unlink()
    if planted == "a symbolic link":
        journal.symlink_to(victim)
    else:
        os.mkfifo(journal)  # read, it would hang the start
    second, said = _restart(harness_factory, first, tmp_path / "state", caplog)
    reason = "a symbolic link, not a regular file" if planted == "a symbolic link" else "not a regular file"
    aside = journal.with_name(journal.name + ".set-aside")
    assert len(said) == 1, said
    assert f"without its journal, which is not usable ({reason}) and was set aside as {aside}" in said[0]
    mode = aside.lstat().st_mode
    assert stat.S_ISLNK(mode) if planted == "a symbolic link" else stat.S_ISFIFO(mode)
    assert victim.read_bytes().count(b"\n") == 2  # untouched
    assert not journal.is_symlink() and (not journal.exists() or stat.S_ISREG(journal.lstat().st_mode))
    assert second.get("/readyz").status_code == 200
