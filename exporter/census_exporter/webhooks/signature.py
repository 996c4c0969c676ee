"""Signature verification of Census webhooks: ``X-Signature`` = base64(HMAC-SHA256(raw body, secret)).

A workspace may accept several secrets at once (rotation: the new one is added, Census is switched, the
old one removed). Every accepted secret is compared, in constant time, whatever the first comparison gave,
so the time an answer takes says nothing about which secret, or which byte, matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Sequence

from census_exporter.config import TokenError, TokenSource

log = logging.getLogger(__name__)

#: The longest ``X-Signature`` looked at: a base64 SHA-256 digest is 44 characters.
MAX_SIGNATURE_CHARS = 128


class WebhookSecrets:
    """The secrets one workspace accepts, each from a file (read again when it changes; removed, it is no
    longer accepted) or a value.

    ``repr()`` never shows a secret; each is registered with the log redaction (via :class:`TokenSource`).
    """

    def __init__(self, sources: Sequence[TokenSource]) -> None:
        self._sources = tuple(sources)
        self._unreadable_logged: set[int] = set()

    def __repr__(self) -> str:
        return f"WebhookSecrets({len(self._sources)} sources)"

    def __len__(self) -> int:
        return len(self._sources)

    def current(self) -> list[bytes]:
        """The secrets as they are now; one that cannot be read is left out (logged once per source)."""
        secrets: list[bytes] = []
        for index, source in enumerate(self._sources):
            try:
                # A removed file withdraws its secret (an API token keeps its last value; a secret must not).
                value = source(keep_when_gone=False)
            except TokenError as error:
                if index not in self._unreadable_logged:
                    self._unreadable_logged.add(index)
                    log.warning("a webhook secret cannot be read: %s", str(error).replace("token", "secret"))
                continue
            self._unreadable_logged.discard(index)
            if value:
                secrets.append(value.encode("utf-8"))
        return secrets


def signature_matches(body: bytes, header: str | None, secrets: Sequence[bytes]) -> bool:
    """Whether ``header`` is base64(HMAC-SHA256(``body``, s)) for one of ``secrets``.

    A missing, over-long or non-base64 header matches nothing; with no secret nothing matches either.
    """
    if not header or len(header) > MAX_SIGNATURE_CHARS:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).digest()
        # No early exit: each secret costs the same whether an earlier one matched or not.
        matched = hmac.compare_digest(expected, given) | matched
    return matched


def sign(body: bytes, secret: str | bytes) -> str:
    """The ``X-Signature`` Census sends for ``body`` (the simulator and the tests sign with it)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")
