"""docs/sizing.md's table is a measurement, not a guess: its per-sync figures match a fresh one."""

from __future__ import annotations

from benchmarks.sizing import committed_rows, count_series, measure

#: Issue 9's bound for the default exposition, per sync (a sync with a few runs of two statuses).
MAX_SERIES_PER_SYNC = 20
MAX_BYTES_PER_SYNC = 1600
SIZE_BOUND_SYNCS = 1000


def test_committed_sizing_table_matches_a_measurement_at_100_syncs() -> None:
    rows = committed_rows()
    assert {100, 1000, 5000} <= set(rows), "make sizing writes 100, 1,000 and 5,000 syncs"
    measured = measure(100)
    row = rows[100]
    # Series depend on the exporter and the seed, and on which demo runs happen to finish while it is
    # measured (each first run of a status adds a census_sync_runs_total series): within 1 %.
    committed_series = int(row["Series"].replace(",", ""))
    assert abs(committed_series - measured.series) <= 0.01 * measured.series
    assert abs(float(row["Series per sync"]) - measured.series_per_sync) <= 0.01 * measured.series_per_sync
    # Bytes vary by a few digits of the timestamps and durations of the demo's runs.
    committed_bytes = int(row["Bytes per sync"].replace(",", ""))
    assert abs(committed_bytes - measured.bytes_per_sync) <= 0.02 * measured.bytes_per_sync
    assert measured.requests_per_refresh >= 100, "at least one request per sync each refresh"


def test_series_count_ignores_comments_and_counts_sync_series() -> None:
    text = '# HELP census_up x\n# TYPE census_up gauge\ncensus_up 1\ncensus_sync_paused{sync_id="1"} 0\n'
    assert count_series(text) == (2, 1)


def test_the_default_exposition_stays_within_20_series_and_1600_bytes_per_sync() -> None:
    """A size bound, not a timing: the real exporter over HTTP against 1,000 simulated syncs, whole scrape
    (process metrics and HELP lines included) divided by the syncs."""
    # At 1,000 syncs, the size the issue-9 target speaks of (docs/performance.md): at a few hundred the
    # process metrics and the HELP lines, paid once per scrape, weigh ~100 B per sync on their own.
    measured = measure(SIZE_BOUND_SYNCS)
    assert measured.series_per_sync <= MAX_SERIES_PER_SYNC, measured
    assert measured.bytes_per_sync <= MAX_BYTES_PER_SYNC, measured
