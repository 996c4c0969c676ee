"""Soak: scrapers, churn during paging, faults and stalls; counters must equal the simulator's ground truth.

The workspace itself is the truth: for every stable sync (never deleted), the exporter must have counted
exactly the runs that were not already finished at its baseline. Environment switches (``make soak`` runs
it for longer):

* ``SOAK_SECONDS``: how long the churn runs (default 75, which keeps the whole test near two minutes);
* ``SOAK_PAGING_CHURN=0``: no sync is deleted between two page reads of ``/syncs``;
* ``SOAK_STALLS=0``: no stalled answers; ``SOAK_FAULTS=0``: no 429 or 5xx answers;
* ``SOAK_SEED``: the churn's random seed (printed in the failure message).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from census_exporter.config import Exposition
from census_exporter.demo import Fault, SimulatedWorkspace, SimulatorServer
from census_exporter.demo.churn import PENDING_STATUSES, ChurnDriver, ChurnSettings
from census_exporter.snapshot import Snapshot
from tests.conftest import Harness, HarnessFactory, wait_for


def _switch(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off", "")


SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "75"))
SOAK_SEED = int(os.environ.get("SOAK_SEED", "11"))
FRONT_SYNCS = 40  # listed before the stable ones: deleting one shifts a stable sync onto page 1
STABLE_SYNCS = 80  # 120 syncs in all: two pages of /syncs
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
SCRAPE_VARIANTS = {
    "text": {"Accept-Encoding": "identity"},
    "text+gzip": {"Accept-Encoding": "gzip"},
    "openmetrics": {"Accept": OPENMETRICS, "Accept-Encoding": "identity"},
    "openmetrics+gzip": {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"},
}
#: Counter families compared with the truth, and the run field each one sums.
RECORD_TOTALS = {
    "census_sync_records_processed_total": "records_processed",
    "census_sync_records_updated_total": "records_updated",
    "census_sync_records_failed_total": "records_failed",
    "census_sync_records_invalid_total": "records_invalid",
    "census_sync_source_records_total": "source_record_count",
}
CACHE_TTL_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 2.0  # ChurnSettings.long_stall_seconds is longer
REFRESH_TIMEOUT_SECONDS = 10.0
MAX_RSS_BYTES = 512 * 2**20
RSS_GROWTH_MARGIN_BYTES = 64 * 2**20
MAX_THREADS = 200
THREAD_GROWTH_MARGIN = 25
MAX_LISTED_PROBLEMS = 25

SeriesKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Decrease:
    """A counter sample lower than the same scraper saw before."""

    scraper: str
    name: str
    labels: dict[str, str]
    before: float
    after: float


def decreases_by_sync(decreases: list[Decrease]) -> list[str]:
    """One line per sync (or other series owner): how many samples went down, with the first example."""
    grouped: dict[str, list[Decrease]] = {}
    for decrease in decreases:
        owner = f"sync {decrease.labels['sync_id']}" if "sync_id" in decrease.labels else decrease.name
        grouped.setdefault(owner, []).append(decrease)
    return [
        f"{owner}: {len(found)} samples went down, e.g. {found[0].scraper} saw "
        f"{found[0].name}{dict(sorted(found[0].labels.items()))} go {found[0].before:g} -> {found[0].after:g}"
        for owner, found in grouped.items()
    ]


@dataclass
class Scraper:
    """Scrapes /metrics in a loop with one Accept/Accept-Encoding combination; records what went wrong."""

    name: str
    url: str
    headers: dict[str, str]
    stop: threading.Event
    #: Older data than this while census_up says 1 means a refresh is stuck and nobody is told.
    max_data_age_seconds: float
    scrapes: int = 0
    failures: list[str] = field(default_factory=list)
    decreases: list[Decrease] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    last_values: dict[SeriesKey, float] = field(default_factory=dict)

    def run(self, deadline: float) -> None:
        """Scrape until stopped or past ``deadline``; never raises (the test reads the findings)."""
        try:
            with httpx.Client(timeout=30) as http:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    self.scrape_once(http)
                    self.stop.wait(0.05)
        except Exception as error:  # noqa: BLE001 - reported by the test, with the scraper's name
            self.failures.append(f"{self.name}: scraper crashed: {type(error).__name__}: {error}")

    def scrape_once(self, http: httpx.Client) -> None:
        """One scrape: HTTP 200, the promised encoding, parseable, fresh, and no counter lower than before."""
        headers = self.headers | {"X-Prometheus-Scrape-Timeout-Seconds": "10"}
        try:
            response = http.get(self.url, headers=headers)
        except httpx.HTTPError as error:
            self.failures.append(f"{self.name}: {type(error).__name__}: {error}")
            return
        self.scrapes += 1
        if response.status_code != 200:
            self.failures.append(f"{self.name}: HTTP {response.status_code}: {response.text[:200]}")
            return
        wants_gzip = headers["Accept-Encoding"] == "gzip"
        if (response.headers.get("Content-Encoding") == "gzip") != wants_gzip:
            self.failures.append(f"{self.name}: Content-Encoding {response.headers.get('Content-Encoding')}")
        try:
            monotonic, others = exposition_samples(response.text, openmetrics="Accept" in self.headers)
        except Exception as error:  # noqa: BLE001 - any parse error is a failed scrape
            self.failures.append(f"{self.name}: unparseable: {type(error).__name__}: {error}")
            return
        for key, value in monotonic.items():
            before = self.last_values.get(key)
            if before is not None and value < before:
                name, labels = key
                self.decreases.append(Decrease(self.name, name, dict(labels), before, value))
            self.last_values[key] = value
        workspace = frozenset({("workspace", "default")})
        up = others.get(("census_up", workspace))
        last_success = others.get(("census_last_refresh_timestamp_seconds", workspace))
        if up == 1 and last_success is not None:
            age = time.time() - last_success
            if age > self.max_data_age_seconds:
                self.frozen.append(f"{self.name}: census_up 1, last error-free refresh {age:.0f}s ago")


def exposition_samples(
    text: str, *, openmetrics: bool
) -> tuple[dict[SeriesKey, float], dict[SeriesKey, float]]:
    """The samples of counters and histograms (which may only go up), and every other sample."""
    families = parse_openmetrics(text) if openmetrics else parse_text(text)
    monotonic: dict[SeriesKey, float] = {}
    others: dict[SeriesKey, float] = {}
    for family in families:
        into = monotonic if family.type in ("counter", "histogram") else others
        for sample in family.samples:
            into[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return monotonic, others


def process_usage() -> tuple[int, int]:
    """Resident memory in bytes and thread count of this process (exporter, simulator and test)."""
    fields: dict[str, str] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["Threads"])


def finished_run_ids(workspace: SimulatedWorkspace, sync_ids: Iterable[int]) -> dict[int, frozenset[int]]:
    """Per sync, the runs already in a terminal state."""
    with workspace.lock:
        return {
            sync_id: frozenset(
                int(run["id"]) for run in workspace.runs[sync_id] if run["status"] not in PENDING_STATUSES
            )
            for sync_id in sync_ids
        }


def expected_totals(workspace: SimulatedWorkspace, sync_id: int, baseline: frozenset[int]) -> dict[str, int]:
    """What the exporter must show for one sync: the runs finished since its baseline, summed."""
    totals = {
        f'census_sync_runs_total{{status="{status}"}}': 0 for status in ("completed", "failed", "skipped")
    }
    totals |= dict.fromkeys(RECORD_TOTALS, 0)
    with workspace.lock:
        for run in workspace.runs[sync_id]:
            if run["id"] in baseline or run["status"] in PENDING_STATUSES:
                continue
            key = f'census_sync_runs_total{{status="{str(run["status"]).lower()}"}}'
            totals[key] = totals.get(key, 0) + 1
            for name, field_name in RECORD_TOTALS.items():
                totals[name] += run[field_name] or 0
    return totals


def scraped_totals(samples: dict[SeriesKey, float], sync_id: int) -> dict[str, float]:
    """The same totals as :func:`expected_totals`, read from one scrape."""
    totals: dict[str, float] = {}
    for (name, label_set), value in samples.items():
        labels = dict(label_set)
        if labels.get("sync_id") != str(sync_id):
            continue
        if name == "census_sync_runs_total":
            totals[f'census_sync_runs_total{{status="{labels["status"]}"}}'] = value
        elif name in RECORD_TOTALS:
            totals[name] = value
    return totals


def clean_refresh_since(harness: Harness, changed: float) -> Snapshot | None:
    """The snapshot of a refresh that started after ``changed`` and met no error, else None."""
    snapshot = harness.exporter.refresher.trigger().result(timeout=30)
    started = snapshot.started_monotonic
    return snapshot if snapshot.up and started is not None and started >= changed else None


def problems_in(title: str, lines: list[str]) -> list[str]:
    """A titled, bounded section of the failure report (empty when there is nothing to report)."""
    if not lines:
        return []
    shown = [f"  {line}" for line in lines[:MAX_LISTED_PROBLEMS]]
    more = len(lines) - len(shown)
    return [f"{title} ({len(lines)}):", *shown, *([f"  ... and {more} more"] if more > 0 else [])]


def resource_problems(samples: list[tuple[int, int]]) -> list[str]:
    """Absolute bounds on RSS and threads, and no growth of the second half over the first (a leak)."""
    if len(samples) < 4:
        return [f"only {len(samples)} resource samples"]
    half = len(samples) // 2
    rss_first, rss_second = max(s[0] for s in samples[:half]), max(s[0] for s in samples[half:])
    threads_first, threads_second = max(s[1] for s in samples[:half]), max(s[1] for s in samples[half:])
    found = []
    if max(rss_first, rss_second) > MAX_RSS_BYTES:
        found.append(
            f"RSS reached {max(rss_first, rss_second) / 2**20:.0f} MiB (bound {MAX_RSS_BYTES / 2**20:.0f})"
        )
    if rss_second > rss_first + RSS_GROWTH_MARGIN_BYTES:
        found.append(
            f"RSS grew from {rss_first / 2**20:.0f} to {rss_second / 2**20:.0f} MiB in the second half"
        )
    if max(threads_first, threads_second) > MAX_THREADS:
        found.append(f"threads reached {max(threads_first, threads_second)} (bound {MAX_THREADS})")
    if threads_second > threads_first + THREAD_GROWTH_MARGIN:
        found.append(f"threads grew from {threads_first} to {threads_second} in the second half")
    return found


def sample_resources_until(deadline: float, samples: list[tuple[int, int]]) -> None:
    """Sample RSS and threads twice a second until ``deadline`` (the churn runs meanwhile)."""
    while time.monotonic() < deadline:
        samples.append(process_usage())
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 240)
def test_counters_equal_the_ground_truth_through_churn_faults_and_stalls(
    harness_factory: HarnessFactory,
) -> None:
    settings = ChurnSettings(
        seed=SOAK_SEED,
        paging_churn=_switch("SOAK_PAGING_CHURN"),
        faults=_switch("SOAK_FAULTS"),
        stalls=_switch("SOAK_STALLS"),
    )
    workspace = SimulatedWorkspace()
    front = [int(workspace.add_sync(label=f"Front sync {n}")["id"]) for n in range(FRONT_SYNCS)]
    stable = [int(workspace.add_sync(label=f"Stable sync {n}")["id"]) for n in range(STABLE_SYNCS)]
    harness = harness_factory(
        workspace,
        cache_ttl=CACHE_TTL_SECONDS,
        request_timeout_seconds=REQUEST_TIMEOUT_SECONDS,
        refresh_timeout_seconds=REFRESH_TIMEOUT_SECONDS,
        exposition=Exposition(record_totals="sync"),  # compared with the ground truth sync by sync
    )
    driver = ChurnDriver(
        workspace, harness.simulator, front_sync_ids=front, stable_sync_ids=stable, settings=settings
    )
    harness.simulator.after_answer = driver.after_answer
    driver.seed_history()

    # The baseline: one refresh with nothing moving, so each stable sync's starting point is known exactly.
    harness.refresh()
    baseline_snapshot = harness.exporter.refresher.snapshot
    assert baseline_snapshot.up, f"the baseline refresh failed: {baseline_snapshot.last_error}"
    unbaselined = [
        s for s in stable if s not in baseline_snapshot.syncs or not baseline_snapshot.syncs[s].ledger
    ]
    assert not unbaselined, f"stable syncs without a baseline: {unbaselined}"
    baseline = finished_run_ids(workspace, stable)

    stop = threading.Event()
    scrape_deadline = time.monotonic() + SOAK_SECONDS + 120
    url = f"{harness.base_url}/metrics"
    max_age = 2 * REFRESH_TIMEOUT_SECONDS + CACHE_TTL_SECONDS + 5
    scrapers = [Scraper(name, url, headers, stop, max_age) for name, headers in SCRAPE_VARIANTS.items()]
    threads = [
        threading.Thread(target=s.run, args=(scrape_deadline,), name=f"soak-{s.name}", daemon=True)
        for s in scrapers
    ]
    for thread in threads:
        thread.start()
    driver.start(SOAK_SECONDS)
    usage: list[tuple[int, int]] = []
    try:
        sample_resources_until(time.monotonic() + SOAK_SECONDS, usage)
    finally:
        driver.stop()
    driver.finish_pending()
    changed = time.monotonic()
    wait_for(
        lambda: clean_refresh_since(harness, changed),
        timeout=90,
        what=lambda: (
            f"an error-free refresh after the churn stopped (last error: "
            f"{harness.exporter.refresher.snapshot.last_error})"
        ),
    )
    stop.set()
    for thread in threads:
        thread.join(45)
    still_running = [thread.name for thread in threads if thread.is_alive()]

    final = harness.get("/metrics", **{"Accept-Encoding": "identity"})
    assert final.status_code == 200, final.text
    final_samples, _ = exposition_samples(final.text, openmetrics=False)
    mismatches: list[str] = []
    expected_runs = 0
    for sync_id in stable:
        expected = expected_totals(workspace, sync_id, baseline[sync_id])
        expected_runs += sum(v for k, v in expected.items() if k.startswith("census_sync_runs_total"))
        got = scraped_totals(final_samples, sync_id)
        if not got:
            mismatches.append(f"sync {sync_id}: no counters in the final scrape")
            continue
        for key in sorted(expected.keys() | got.keys()):
            if expected.get(key, 0) != got.get(key):
                mismatches.append(
                    f"sync {sync_id}: {key} expected {expected.get(key, 0)}, got {got.get(key)}"
                )

    activity = [
        *([] if expected_runs >= 100 else [f"only {expected_runs} runs finished on stable syncs"]),
        *([f"too few scrapes by {s.name}: {s.scrapes}" for s in scrapers if s.scrapes < 5]),
        *(
            ["no sync was deleted between two page reads"]
            if settings.paging_churn and not driver.stats["syncs deleted between pages"]
            else []
        ),
        *[f"scraper {name} did not stop" for name in still_running],
    ]
    wrong_syncs = sorted({int(line.split()[1].rstrip(":")) for line in mismatches})
    report = [
        *([f"stable syncs whose totals differ from the truth: {wrong_syncs}"] if wrong_syncs else []),
        *problems_in("counters differing from the ground truth", mismatches),
        *problems_in(
            "counters that decreased", decreases_by_sync([d for s in scrapers for d in s.decreases])
        ),
        *problems_in("failed scrapes", [line for s in scrapers for line in s.failures]),
        *problems_in("stale data served as fresh", [line for s in scrapers for line in s.frozen]),
        *problems_in("resources", resource_problems(usage)),
        *problems_in("too little happened", activity),
    ]
    assert not report, "\n".join(
        [
            f"soak failed (seed {SOAK_SEED}, {SOAK_SECONDS:g}s, {settings}):",
            *report,
            f"churn: {dict(sorted(driver.stats.items()))}",
            f"scrapes: { ({s.name: s.scrapes for s in scrapers}) }",
            f"refreshes: {harness.exporter.refresher.refresh_count}",
        ]
    )


# ---------------------------------------------------------------------- the harness's own parts


def test_a_change_made_after_page_one_is_answered_shows_on_page_two() -> None:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, 151):
        workspace.add_sync(sync_id)

    def delete_first_sync(path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/syncs") and query.get("page") == ["1"]:
            workspace.remove_sync(1)

    simulator = SimulatorServer(workspace, token="t", after_answer=delete_first_sync).start()
    try:
        with httpx.Client(base_url=simulator.url + "/", headers={"Authorization": "Bearer t"}) as http:
            first = http.get("syncs", params={"page": 1, "per_page": 100}).json()["data"]
            second = http.get("syncs", params={"page": 2, "per_page": 100}).json()["data"]
    finally:
        simulator.close()
    assert [sync["id"] for sync in first] == list(range(1, 101))
    # Sync 101 moved onto page 1 after page 1 was read: a client paging by number never sees it.
    assert [sync["id"] for sync in second] == list(range(102, 151))


def test_a_dripping_answer_outlasts_a_per_read_timeout() -> None:
    workspace = SimulatedWorkspace()
    simulator = SimulatorServer(workspace, token="t").start()
    simulator.inject(Fault(r"/syncs$", status=503, body=b"0123456789", drip_seconds=0.25))
    started = time.monotonic()
    try:
        response = httpx.get(simulator.url + "/syncs", timeout=1.0)
    finally:
        simulator.close()
    assert (response.status_code, response.content) == (503, b"0123456789")
    # Every byte came within the 1 s read timeout, yet the whole answer took longer than it.
    assert time.monotonic() - started > 2.0


def test_the_churn_driver_stops_by_itself_and_can_finish_every_run() -> None:
    workspace = SimulatedWorkspace()
    stable = [int(workspace.add_sync(label=f"Stable {n}")["id"]) for n in range(5)]
    simulator = SimulatorServer(workspace, token="t").start()
    driver = ChurnDriver(
        workspace,
        simulator,
        front_sync_ids=[],
        stable_sync_ids=stable,
        settings=ChurnSettings(tick_seconds=0.001),
    )
    try:
        driver.start(0.5)
        wait_for(lambda: driver.stats["runs started"] and not driver.running, timeout=10, what="the driver")
        driver.stop()
        driver.finish_pending()
    finally:
        simulator.close()
    statuses = [run["status"] for runs in workspace.runs.values() for run in runs]
    assert statuses
    assert not set(statuses) & set(PENDING_STATUSES), statuses
    assert set(statuses) <= {"completed", "failed", "skipped", "superseded"}
    assert not simulator.faults, "stop() leaves no fault behind"
