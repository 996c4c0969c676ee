"""What stands between a verified webhook and the refresher: rate limits, duplicate memory, a bounded queue.

Every table here has a fixed bound, so no sequence of requests, however hostile, grows the memory: the rate
limiter keeps the :data:`MAX_SOURCES` most recent source addresses, the duplicate memory the
:data:`MAX_REMEMBERED_EVENTS` most recent events, the queue :data:`QUEUE_SIZE` events. The queue's single
worker hands each event to its workspace (:class:`Dispatcher`), so an answer never waits on the refresher.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from census_exporter.refresh.announcements import Announcements
from census_exporter.snapshot import Snapshot
from census_exporter.webhooks.events import ALERT_EVENTS, START_EVENTS, TERMINAL_EVENTS, WebhookEvent
from census_exporter.webhooks.signature import WebhookSecrets

log = logging.getLogger(__name__)

#: Sources (addresses, IPv6 /64 prefixes) whose rate is tracked at once; the least recently seen is forgotten
#: first.
MAX_SOURCES = 4096
#: Events remembered for duplicate detection (about 200 bytes each).
MAX_REMEMBERED_EVENTS = 20_000
#: Events queued for the worker at once; beyond this a delivery is answered 503 (Census retries).
QUEUE_SIZE = 2048


def source_key(address: str) -> str:
    """The rate limiter's key for a source address: an IPv6 address by its /64 prefix (one host or
    subscriber usually holds a whole /64, and rotating its addresses would otherwise dodge the limit and
    push every other source out of the table), an IPv4-mapped one (a dual-stack listener's IPv4 client)
    by its IPv4 address, anything else as given."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class RateLimiter:
    """A token bucket per source (:func:`source_key`): ``rate`` requests a second, bursts of ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        size: int = MAX_SOURCES,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._size = size
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allows(self, address: str) -> bool:
        """Take one token of the bucket of ``address``'s source; False when it is empty."""
        source = source_key(address)
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(source, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            allowed = tokens >= 1.0
            self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self._size:
                self._buckets.popitem(last=False)
            return allowed


class RecentEvents:
    """The most recent event keys, for ignoring deliveries of an event already taken.

    A key is remembered unconfirmed when its event is taken, and confirmed once a read shows what the event
    announced (:func:`shown`): a delivery of an unconfirmed event is taken again (its sync is read again),
    so a ``sync.failed`` that arrived while the API still said the run was working is not lost as a duplicate.
    """

    def __init__(self, size: int = MAX_REMEMBERED_EVENTS) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._keys: OrderedDict[Hashable, bool] = OrderedDict()

    def state(self, key: Hashable) -> bool | None:
        """None: never taken; False: taken, not shown yet; True: shown (a delivery is a duplicate)."""
        with self._lock:
            confirmed = self._keys.get(key)
            if confirmed is not None:
                self._keys.move_to_end(key)
            return confirmed

    def remember(self, key: Hashable, *, confirmed: bool = True) -> None:
        """Remember ``key`` (confirmed or not); the oldest key is forgotten past the bound."""
        with self._lock:
            self._keys[key] = confirmed or self._keys.get(key, False)
            self._keys.move_to_end(key)
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


class WorkspaceRefresh(Protocol):
    """What the intake needs of a workspace's refresher."""

    @property
    def snapshot(self) -> Snapshot: ...
    def read_announced(self) -> None: ...


@dataclass(frozen=True)
class WebhookTarget:
    """One workspace that takes webhooks: its label, secrets, announcements and refresher, and its Census id
    where the exporter knows it (the V2 group watched; a V1 workspace's id only when discovery found it)."""

    name: str
    secrets: WebhookSecrets
    announcements: Announcements
    refresher: WorkspaceRefresh
    census_workspace_id: int | None = None
    census_group_id: str | None = None

    def names_another(self, event: WebhookEvent) -> str | None:
        """What of ``event`` names another Census workspace or group than this one's (``None``: nothing
        does; an id the event or the exporter lacks is not compared)."""
        group, workspace = self.census_group_id, self.census_workspace_id
        if group is not None and event.group_id is not None and event.group_id != group:
            return f"group_id is not {group}"
        if workspace is not None and event.workspace_id is not None and event.workspace_id != workspace:
            return f"workspace_id is not {workspace}"
        return None


def watched(event: WebhookEvent, snapshot: Snapshot) -> bool:
    """Whether the event is about a sync the workspace watches (listed, or awaited after a listing missed it).

    Only such events count as webhooks being alive: events about syncs no listing shows (another
    workspace's, filtered out, or made up by a holder of the secret) say nothing about this one's.
    """
    return event.sync_id in snapshot.syncs


def shown(event: WebhookEvent, snapshot: Snapshot) -> bool:
    """Whether the snapshot already shows what ``event`` announced, so a delivery of it again is a duplicate.

    A run's end is shown once its ledger accounts for the run as finished (whatever its outcome), its start
    once the ledger knows the run. Events with nothing to show (alerts, undocumented events, syncs not
    watched) are shown at once.
    """
    state = snapshot.syncs.get(event.sync_id)
    run_id = event.sync_run_id
    if state is None or run_id is None or event.event not in TERMINAL_EVENTS | START_EVENTS:
        return True
    ledger = state.ledger
    if ledger is None or not ledger.knows(run_id):
        return False
    return event.event in START_EVENTS or run_id not in ledger.pending_run_ids


def needs_read(event: WebhookEvent, snapshot: Snapshot) -> bool:
    """Whether ``event`` can show something the snapshot does not have yet.

    A run the sync's ledger already accounts for (counted, or the baseline) needs no read for its end; a
    run already waited on needs none for its start. Anything else (an unknown sync or run, an alert
    without a run, an event outside the documented set) is read.
    """
    state = snapshot.syncs.get(event.sync_id)
    ledger = state.ledger if state is not None else None
    run_id = event.sync_run_id
    if ledger is None or run_id is None or not ledger.knows(run_id):
        return True
    pending = run_id in ledger.pending_run_ids
    if event.event in START_EVENTS:
        return False  # already seen, queued or working or done
    if event.event in TERMINAL_EVENTS or event.event in ALERT_EVENTS:
        return pending
    return pending


def announced_run(event: WebhookEvent, snapshot: Snapshot) -> int | None:
    """The run a terminal event names, for the sync's memory of the newest announced run; None for any other
    event, and for a run id the ledger cannot vouch for: one implausibly far above every run id the sync's
    ledger remembers (:meth:`~census_exporter.ledger.SyncLedger.far_ahead`), or of a sync never read.
    A bogus huge id remembered would make every later run of the sync look announced, for good."""
    run_id = event.sync_run_id
    if run_id is None or event.event not in TERMINAL_EVENTS:
        return None
    state = snapshot.syncs.get(event.sync_id)
    ledger = state.ledger if state is not None else None
    if ledger is None or not ledger.recent_run_ids or ledger.far_ahead(run_id):
        return None
    return run_id


class Dispatcher:
    """The bounded queue of accepted events and the worker that hands each to its workspace."""

    def __init__(
        self, on_read: Callable[[str], None], *, size: int | None = None, name: str = "census-webhooks"
    ) -> None:
        self._queue: queue.Queue[tuple[WebhookTarget, WebhookEvent] | None] = queue.Queue(
            maxsize=QUEUE_SIZE if size is None else size
        )
        self._on_read = on_read
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        """Start the worker."""
        if not self._started:
            self._started = True
            self._thread.start()

    def offer(self, target: WebhookTarget, event: WebhookEvent) -> bool:
        """Queue ``event``; False when the queue is full (the delivery is refused, to be retried)."""
        try:
            self._queue.put_nowait((target, event))
        except queue.Full:
            return False
        return True

    def close(self) -> None:
        """Stop the worker after the events queued so far."""
        if self._started:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=2.0)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            target, event = item
            try:
                self.handle(target, event)
            except Exception as error:  # noqa: BLE001 - one event must not stop the worker
                log.error("webhook event for workspace %s failed: %s", target.name, type(error).__name__)

    def handle(self, target: WebhookTarget, event: WebhookEvent) -> None:
        """Note the event and, when it can show something new, read its sync ahead of every other (a sync
        the workspace does not watch: the next full refresh, first)."""
        announcements = target.announcements
        snapshot = target.refresher.snapshot
        is_watched = watched(event, snapshot)
        if is_watched:
            announcements.heard(event.sync_id, announced_run(event, snapshot))
        if not needs_read(event, snapshot):
            return
        # A sync no listing shows is marked for the next full refresh (if a listing shows it then): no
        # read now, and none counted.
        if announcements.announce(event.sync_id, watched=is_watched) and is_watched:
            self._on_read(target.name)
            target.refresher.read_announced()
