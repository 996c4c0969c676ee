"""ChurnDriver: a bounded background driver that keeps a simulated workspace as busy as a real one.

It adds runs (queued, then working, then finished with a random status, now and then one Census has not
documented), creates and deletes syncs, deletes a sync between two page reads of ``/syncs`` (through the
simulator's ``after_answer`` hook), and injects faults: 429 with ``Retry-After``, 5xx, and stalls, some
longer than the exporter's request timeout. The soak test (``tests/test_soak.py``) runs it against a live
exporter and compares the exporter's counters with the workspace itself, which is the ground truth.

Syncs are split in three groups so that the truth stays exact: *stable* syncs are never deleted;
*front* syncs sit before the stable ones in the listing and are deleted only between two page reads (so
the deletion shifts a stable sync from page 2 to page 1); syncs the driver creates are appended after
every stable one and deleted at random, which moves no stable sync between pages.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from census_exporter.demo.server import Fault, SimulatorServer
from census_exporter.demo.workspace import SimulatedWorkspace

SYNCS_PAGE_SIZE = 100  # the exporter reads /syncs 100 per page, the API's maximum
PENDING_STATUSES = ("queued", "working")


@dataclass(frozen=True, slots=True)
class ChurnSettings:
    """What the driver does and how often; the switches let a failing soak be narrowed down."""

    seed: int = 0
    tick_seconds: float = 0.02
    paging_churn: bool = True
    faults: bool = True
    stalls: bool = True
    #: Stalls up to this long are shorter than the request timeout; ``long_stall_seconds`` is longer.
    stall_seconds: float = 1.0
    long_stall_seconds: float = 3.0
    fault_probability: float = 0.005
    #: Once per soak (a third of the way in, with stalls on): one answer dripped a byte at a time for about
    #: ``drip_bytes * drip_seconds``, longer than any refresh may take. No other fault is injected from
    #: ``quiet_before_drip_seconds`` before it until it ends, so the refresh it hits follows a clean one.
    drip_seconds: float = 0.5
    drip_bytes: int = 80
    quiet_before_drip_seconds: float = 12.0
    max_pending_runs_per_sync: int = 3
    max_created_syncs: int = 30
    #: A status the documentation does not list; the exporter must count it under its own name.
    undocumented_status: str = "superseded"


class ChurnDriver:
    """Changes ``workspace`` from one background thread until stopped or its duration is over."""

    def __init__(
        self,
        workspace: SimulatedWorkspace,
        simulator: SimulatorServer,
        *,
        front_sync_ids: Iterable[int],
        stable_sync_ids: Iterable[int],
        settings: ChurnSettings = ChurnSettings(),
    ) -> None:
        self.workspace = workspace
        self.simulator = simulator
        self.settings = settings
        self.stable_sync_ids = frozenset(stable_sync_ids)
        self.stats: Counter[str] = Counter()
        self._front = sorted(front_sync_ids)
        self._created: list[int] = []
        self._pending: dict[int, int] = {}  # run id -> sync id
        self._rng = random.Random(settings.seed)  # noqa: S311 - simulation, not cryptography
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = False
        self._paging_delete_interval = 1.0
        self._last_paging_delete = 0.0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def seed_history(self, runs_per_sync: int = 3) -> None:
        """Give every sync a few finished runs and some a pending one, before the exporter's baseline."""
        with self._lock:
            for sync_id in sorted(self.stable_sync_ids | set(self._front)):
                for _ in range(self._rng.randint(0, runs_per_sync)):
                    self._add_finished_run(sync_id)
                if self._rng.random() < 0.3:
                    self._add_pending_run(sync_id)

    def start(self, duration_seconds: float) -> None:
        """Churn in a background thread for at most ``duration_seconds``."""
        self._paging_delete_interval = max(0.5, duration_seconds / max(1, len(self._front)))
        self._running = True
        self._thread = threading.Thread(
            target=self._run, args=(time.monotonic() + duration_seconds,), name="census-churn", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop churning and remove every fault; raise if the driver thread does not end in time."""
        self._stop.set()
        with self._lock:
            self._running = False
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"churn driver still running {timeout}s after stop()")
        self.simulator.clear_faults()

    def finish_pending(self) -> None:
        """Finish every run still queued or working, so that the final truth has nothing in flight."""
        with self._lock:
            for run_id in list(self._pending):
                self._finish(run_id)

    @property
    def running(self) -> bool:
        """True while the driver thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ the simulator hook

    def after_answer(self, path: str, query: dict[str, list[str]]) -> None:
        """Simulator hook: after page 1 of ``/syncs`` is computed, delete a sync listed on it."""
        if not self.settings.paging_churn or not path.rstrip("/").endswith("/syncs"):
            return
        if query.get("page", ["1"])[0] != "1":
            return
        now = time.monotonic()
        with self._lock:
            if not self._running or now - self._last_paging_delete < self._paging_delete_interval:
                return
            with self.workspace.lock:
                on_first_page = list(self.workspace.syncs)[:SYNCS_PAGE_SIZE]
                total = len(self.workspace.syncs)
                victim = next((sync_id for sync_id in self._front if sync_id in on_first_page), None)
                if victim is None or total <= SYNCS_PAGE_SIZE:
                    return
                self._front.remove(victim)
                self._delete(victim)
            self._last_paging_delete = now
            self.stats["syncs deleted between pages"] += 1

    # ------------------------------------------------------------------ the loop

    def _run(self, deadline: float) -> None:
        settings = self.settings
        drip_at = time.monotonic() + (deadline - time.monotonic()) / 3
        quiet_from = drip_at - settings.quiet_before_drip_seconds
        quiet_until = drip_at + settings.drip_bytes * settings.drip_seconds
        dripped = not settings.stalls
        while not self._stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            quiet = settings.stalls and quiet_from <= now < quiet_until
            with self._lock:
                self._step(faults=not quiet)
            if not dripped and now >= drip_at:
                self.simulator.clear_faults()
                self._inject_drip()
                dripped = True
            self._stop.wait(settings.tick_seconds)

    def _step(self, *, faults: bool) -> None:
        rng = self._rng
        roll = rng.random()
        if roll < 0.35:
            self._add_some_run()
        elif roll < 0.85:
            self._advance_some_pending_run()
        elif roll < 0.90:
            if len(self._created) < self.settings.max_created_syncs:
                self._create_sync()
        elif roll < 0.93 and self._created:
            self._delete(self._created.pop(rng.randrange(len(self._created))))
            self.stats["syncs deleted"] += 1
        if faults and rng.random() < self.settings.fault_probability:
            self._inject_fault()

    def _live_sync_ids(self) -> list[int]:
        return [*self.stable_sync_ids, *self._front, *self._created]

    def _add_some_run(self) -> None:
        sync_id = self._rng.choice(self._live_sync_ids())
        pending_here = sum(1 for owner in self._pending.values() if owner == sync_id)
        if self._rng.random() < 0.3 or pending_here >= self.settings.max_pending_runs_per_sync:
            self._add_finished_run(sync_id)
        else:
            self._add_pending_run(sync_id)

    def _add_pending_run(self, sync_id: int) -> None:
        run = self.workspace.add_run(sync_id, "queued", duration=None, records=None)
        self._pending[int(run["id"])] = sync_id
        self.stats["runs started"] += 1

    def _add_finished_run(self, sync_id: int) -> None:
        status, outcome = self._outcome()
        self.workspace.add_run(sync_id, status, **outcome)
        self.stats[f"runs added {status}"] += 1

    def _advance_some_pending_run(self) -> None:
        if not self._pending:
            return
        run_id = self._rng.choice(list(self._pending))
        if self.workspace.runs_by_id[run_id]["status"] == "queued" and self._rng.random() < 0.5:
            self.workspace.update_run(run_id, status="working")
            self.stats["runs working"] += 1
        else:
            self._finish(run_id)

    def _finish(self, run_id: int) -> None:
        status, outcome = self._outcome()
        self.workspace.finish_run(run_id, status, **outcome)
        del self._pending[run_id]
        self.stats[f"runs finished {status}"] += 1

    def _outcome(self) -> tuple[str, dict[str, Any]]:
        """A random final status, and the fields add_run and finish_run both take for it."""
        rng = self._rng
        status = rng.choices(
            ("completed", "failed", "skipped", self.settings.undocumented_status), (60, 20, 15, 5)
        )[0]
        records = rng.randint(0, 5000)
        failed = rng.randint(0, records // 10)
        invalid = rng.randint(0, records // 20)
        return status, {
            "records": records,
            "records_failed": failed,
            "records_invalid": invalid,
            "duration": rng.uniform(1.0, 900.0),
            "error_code": "SIMULATED" if status == "failed" else None,
        }

    def _create_sync(self) -> None:
        sync = self.workspace.add_sync(label=f"Churned sync {len(self._created)}", schedule="hourly")
        self._created.append(int(sync["id"]))
        self.stats["syncs created"] += 1

    def _delete(self, sync_id: int) -> None:
        self.workspace.remove_sync(sync_id)
        for run_id in [run_id for run_id, owner in self._pending.items() if owner == sync_id]:
            del self._pending[run_id]

    def _inject_fault(self) -> None:
        rng = self._rng
        settings = self.settings
        pattern = rng.choice((r"/syncs$", r"/sync_runs$", r"/sync_runs/\d+$"))
        kinds = []
        if settings.faults:
            kinds += ["429", "5xx"]
        if settings.stalls:
            kinds += ["stall", "long stall"]
        if not kinds:
            return
        kind = rng.choice(kinds)
        times = rng.randint(1, 3)
        if kind == "429":
            fault = Fault(pattern, status=429, headers=(("Retry-After", "1"),), times=times)
        elif kind == "5xx":
            fault = Fault(pattern, status=rng.choice((500, 502, 503, 504)), times=times)
        elif kind == "stall":
            fault = Fault(
                pattern, status=503, times=1, delay_seconds=rng.uniform(0.1, settings.stall_seconds)
            )
        else:
            fault = Fault(pattern, status=503, times=1, delay_seconds=settings.long_stall_seconds)
        self.simulator.inject(fault)
        self.stats[f"faults {kind}"] += 1

    def _inject_drip(self) -> None:
        body = b'{"status":"error","message":"stalled"}'.ljust(self.settings.drip_bytes)
        self.simulator.inject(
            Fault(r"/sync_runs$", status=503, body=body, drip_seconds=self.settings.drip_seconds)
        )
        self.stats["faults drip"] += 1
