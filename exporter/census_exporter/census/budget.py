"""RequestBudget: one token bucket per process over every HTTP attempt to the Census API.

Every client of the process (each workspace's, discovery's) takes a token before each attempt, retries
included; a 429's ``Retry-After`` still applies on top, as the wait before the retry that then takes its own
token. The burst is one request: a token is granted at most every ``(1 + JITTER_ALLOWANCE) / rate`` seconds,
so no window of one second, as Census sees the requests arrive, holds more than ``rate`` of them even when
the network delays the first of them by up to ``JITTER_ALLOWANCE`` seconds more than the last. A larger burst
would let ``burst + rate`` requests land in one second, which is what the budget promises not to do.

Tokens are handed out in the order they are asked for (a reservation per caller), under one lock; the
waiting itself happens outside the lock, by the caller, so a caller can end its wait early (shutdown).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Slack, in seconds per second of budget, between two granted tokens: network jitter up to this cannot
#: make Census see more than ``rate`` requests in one second.
JITTER_ALLOWANCE = 0.1


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
        #: When the next token may be handed out; tokens do not accumulate beyond one.
        self._next_free: float | None = None
        self._use = BudgetUse(requests_per_second)

    @property
    def interval_seconds(self) -> float:
        """Shortest time between two granted tokens."""
        return self._interval

    def reserve(self, max_wait_seconds: float) -> float | None:
        """Reserve the next token; return how long to wait for it, or None if it comes too late.

        A token that cannot be had within ``max_wait_seconds`` is not reserved (the request is not sent and
        no later caller is delayed by it).
        """
        with self._lock:
            now = self._clock()
            at = now if self._next_free is None else max(now, self._next_free)
            wait = at - now
            if wait > max_wait_seconds:
                self._use = _with(self._use, refused=1)
                return None
            self._next_free = at + self._interval
            self._use = _with(self._use, granted=1, waited=int(wait > 0), wait_seconds=wait)
            return wait

    def use(self) -> BudgetUse:
        """The counters so far (a consistent copy)."""
        with self._lock:
            return self._use


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
