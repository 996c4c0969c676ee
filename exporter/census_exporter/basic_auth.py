"""Basic auth: ``Authorization: Basic`` headers checked against the web config's bcrypt hashes, cheaply."""

from __future__ import annotations

import base64
import hmac
import os
import threading
from typing import Literal

import bcrypt
from cachetools import TTLCache

from census_exporter.web_config import bcrypt_cost

VERIFIED_CREDENTIALS_CACHE_SIZE = 256
#: How long a verified credential is trusted without bcrypt (a changed file forgets them all at once).
VERIFIED_CREDENTIALS_TTL_SECONDS = 900.0
#: bcrypt checks running at once; more are answered 429 at once, so a wrong-password flood costs at most
#: this many cores and leaves the server's workers to scrapes whose credentials are cached.
MAX_CONCURRENT_PASSWORD_CHECKS = 2

AuthResult = Literal["allowed", "denied", "busy"]
CHECK_RESULTS = ("cached", "verified", "failed", "busy", "missing")


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, each credential once in a while.

    bcrypt is deliberately slow (tens to hundreds of milliseconds); a scrape every few seconds must not
    pay it every time, so a verified credential is remembered for :data:`VERIFIED_CREDENTIALS_TTL_SECONDS`
    by an HMAC (with a key made at start, never stored) of user, password and stored hash, never the
    password itself, in a bounded cache that is emptied whenever another web config is put in force.

    Every other check costs exactly one bcrypt verification: an unknown user's against a dummy hash at
    the highest cost among the configured users, so a failure takes as long whether the user exists or
    not. At most :data:`MAX_CONCURRENT_PASSWORD_CHECKS` run at once; a check beyond that is answered
    ``busy`` without hashing, so a flood of wrong passwords cannot take every core or every worker.
    """

    def __init__(self, max_concurrent: int = MAX_CONCURRENT_PASSWORD_CHECKS) -> None:
        self._verified: TTLCache[bytes, bool] = TTLCache(
            maxsize=VERIFIED_CREDENTIALS_CACHE_SIZE, ttl=VERIFIED_CREDENTIALS_TTL_SECONDS
        )
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._generation: int | None = None
        self._dummies: dict[int, bytes] = {}
        #: Outcomes by result (see :data:`CHECK_RESULTS`) and bcrypt verifications run.
        self.checks: dict[str, int] = dict.fromkeys(CHECK_RESULTS, 0)
        self.verifications = 0

    def check(self, users: dict[str, bytes], authorization: str | None, generation: int = 0) -> AuthResult:
        """Whether the header carries a valid user and password for ``users`` (``busy``: not checked).

        ``generation`` identifies the config ``users`` came from: when it changes the cache is emptied.
        """
        credentials = _decode_basic(authorization)
        if credentials is None or not users:
            self._count("missing")
            return "denied"
        user, password = credentials
        stored = users.get(user)
        key = hmac.new(self._key, b"\0".join((user.encode(), password, stored or b"")), "sha256").digest()
        with self._lock:
            if generation != self._generation:
                self._verified.clear()
                self._generation = generation
            if stored is not None and key in self._verified:
                self.checks["cached"] += 1
                return "allowed"
        if not self._slots.acquire(blocking=False):
            self._count("busy")
            return "busy"
        try:
            with self._lock:
                self.verifications += 1
            try:
                valid = bcrypt.checkpw(password, stored or self._dummy(users))
            except ValueError:
                valid = False
        finally:
            self._slots.release()
        if valid and stored is not None:
            with self._lock:
                if generation == self._generation:
                    self._verified[key] = True
                self.checks["verified"] += 1
            return "allowed"
        self._count("failed")
        return "denied"

    def _count(self, result: str) -> None:
        with self._lock:
            self.checks[result] += 1

    def _dummy(self, users: dict[str, bytes]) -> bytes:
        """A hash no password matches, at the highest cost of ``users`` (checking it costs what theirs do)."""
        cost = max(bcrypt_cost(hashed) for hashed in users.values())
        with self._lock:
            dummy = self._dummies.get(cost)
            if dummy is None:
                # A real salt at that cost and a digest part that no password produces: only the salt and
                # cost decide the work checkpw does.
                dummy = self._dummies[cost] = bcrypt.gensalt(rounds=cost) + b"." * 31
            return dummy


def _decode_basic(authorization: str | None) -> tuple[str, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
