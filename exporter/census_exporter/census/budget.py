"""RequestBudget: one token bucket per process over every HTTP attempt to the Census API.

Every client of the process (each workspace's, discovery's) takes a token before each attempt, retries
included; a 429's ``Retry-After`` still applies on top, as the wait before the retry that then takes its own
token. The burst is one request: a token is granted at most every ``(1 + JITTER_ALLOWANCE) / rate`` seconds,
so no window of one second, as Census sees the requests arrive, holds more than ``rate`` of them even when
the network delays the first of them by up to ``JITTER_ALLOWANCE`` seconds more than the last. A larger burst
would let ``burst + rate`` requests land in one second, which is what the budget promises not to do.

Tokens are handed out in the order they are asked for (a reservation per caller), under one lock; the
waiting itself happens outside the lock, by the caller, so a caller can end its wait early (shutdown).

Fair shares (:meth:`RequestBudget.lanes`): the workspaces named in the workspaces file and those found by
discovery (with discovery's own listings) draw from two lanes of the one budget. While both lanes have
members, the named lane is guaranteed ``NAMED_SHARE`` of the rate and the discovered lane the rest: each lane
has its own token timeline at its share, and every token also keeps the whole budget's spacing, so the
process never exceeds the rate. A lane whose own next token is not due may take the other lane's token when
that one is free now (the other lane is idle), so an idle lane's share is not wasted; a busy lane's share is
never taken. Discovery may add any number of groups: they split the discovered lane among themselves, and the
named workspaces keep theirs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Slack, in seconds per second of budget, between two granted tokens: network jitter up to this cannot
#: make Census see more than ``rate`` requests in one second.
JITTER_ALLOWANCE = 0.1

#: The lane of the workspaces named in the workspaces file (or by the flags), and that of discovery.
NAMED_LANE = "named"
DISCOVERED_LANE = "discovered"
#: Share of the budget guaranteed to the named workspaces while discovery draws from it too.
NAMED_SHARE = 0.5


class _Timeline:
    """When one lane's next token is due, at the lane's share of the rate."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_free: float | None = None

    def due(self, now: float) -> float:
        return now if self.next_free is None else max(now, self.next_free)


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """How the budget has been spent since the process started (counters) and its configured rate."""

    requests_per_second: float
    granted: int = 0
    refused: int = 0
    waited: int = 0
    wait_seconds: float = 0.0


class RequestBudget:
    """A token bucket of ``requests_per_second`` with a burst of one; thread-safe, on a monotonic clock."""

    def __init__(self, requests_per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not requests_per_second > 0:
            raise ValueError("requests_per_second must be above 0")
        self.requests_per_second = requests_per_second
        self._interval = (1.0 + JITTER_ALLOWANCE) / requests_per_second
        self._clock = clock
        self._lock = threading.Lock()
        #: When the next token may be handed out, over every lane; tokens do not accumulate beyond one.
        self._whole = _Timeline(self._interval)
        #: Each lane's own timeline, shared by the lane views :meth:`lanes` hands out; this one's, if a lane.
        self._timelines: dict[str, _Timeline] = {}
        self._lane: str | None = None
        #: The one BudgetUse every lane view counts into (a list, so views share it).
        self._shared_use = [BudgetUse(requests_per_second)]

    @property
    def interval_seconds(self) -> float:
        """Shortest time between two tokens granted to this budget (a lane: at its guaranteed share)."""
        if self._lane is None:
            return self._interval
        return self._timelines[self._lane].interval

    def lanes(self, *, named: bool, discovered: bool) -> dict[str, RequestBudget]:
        """The named and the discovered lane of this budget, for the lanes that have members.

        With both, the named lane is guaranteed ``NAMED_SHARE`` of the rate and the discovered lane the rest;
        a lane alone has the whole rate. Every lane view shares this budget's lock, counters and spacing.
        """
        active = [lane for lane, on in ((NAMED_LANE, named), (DISCOVERED_LANE, discovered)) if on]
        shares = {NAMED_LANE: NAMED_SHARE, DISCOVERED_LANE: 1.0 - NAMED_SHARE} if len(active) == 2 else {}
        views: dict[str, RequestBudget] = {}
        with self._lock:
            for lane in active:
                self._timelines[lane] = _Timeline(self._interval / shares.get(lane, 1.0))
                view = RequestBudget.__new__(RequestBudget)
                view.__dict__.update(self.__dict__)
                view._lane = lane
                views[lane] = view
        return views

    def reserve(self, max_wait_seconds: float) -> float | None:
        """Reserve the next token; return how long to wait for it, or None if it comes too late.

        A token that cannot be had within ``max_wait_seconds`` is not reserved (the request is not sent and
        no later caller is delayed by it).
        """
        with self._lock:
            now = self._clock()
            lane = self._timelines.get(self._lane) if self._lane is not None else None
            spent = lane
            at = self._whole.due(now)
            if lane is not None:
                at = max(at, lane.due(now))
                idle = [
                    other
                    for name, other in self._timelines.items()
                    if name != self._lane and other.due(now) <= now
                ]
                if idle and lane.due(now) > now:
                    # The other lane is idle: its token now, rather than this lane's later one.
                    spent = idle[0]
                    at = self._whole.due(now)
            wait = at - now
            if wait > max_wait_seconds:
                self._count(refused=1)
                return None
            self._whole.next_free = at + self._interval
            if spent is not None:
                spent.next_free = at + spent.interval
            self._count(granted=1, waited=int(wait > 0), wait_seconds=wait)
            return wait

    def use(self) -> BudgetUse:
        """The counters so far, over every lane (a consistent copy)."""
        with self._lock:
            return self._shared_use[0]

    def _count(self, **changes: Any) -> None:
        self._shared_use[0] = _with(self._shared_use[0], **changes)


def _with(
    use: BudgetUse, *, granted: int = 0, refused: int = 0, waited: int = 0, wait_seconds: float = 0.0
) -> BudgetUse:
    return BudgetUse(
        use.requests_per_second,
        granted=use.granted + granted,
        refused=use.refused + refused,
        waited=use.waited + waited,
        wait_seconds=use.wait_seconds + wait_seconds,
    )
