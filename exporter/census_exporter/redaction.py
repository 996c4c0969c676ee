"""The secrets the exporter must never write (API tokens, discovered workspace keys), and their redaction.

Every token source registers its token here as soon as it reads it. Logs are scrubbed by
:class:`census_exporter.logs.RedactingFilter`; text from the API is scrubbed once, when it is parsed into
records (:func:`census_exporter.census.models.fields.clean_text`), so a token the API echoes back in a sync
label, a connection name or an error reaches neither ``/metrics`` nor the landing page, and no scrape pays
for it.
"""

from __future__ import annotations

import re
import threading

REDACTED = "[REDACTED]"
#: Secrets remembered (tokens, discovered workspace keys), newest kept.
MAX_REDACTED_SECRETS = 256
#: Shorter strings would redact too much (and are no credential).
MIN_SECRET_LENGTH = 8
#: Up to this many secrets, plain substring tests; beyond, one compiled alternation.
FEW_SECRETS = 16


class SecretRegistry:
    """The newest :data:`MAX_REDACTED_SECRETS` secrets, and one compiled pattern that finds any of them."""

    def __init__(self) -> None:
        #: Insertion-ordered, so the oldest can go first when a rotating source keeps adding new ones.
        self._secrets: dict[str, None] = {}
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        #: The secrets longest first, so one that contains another is replaced whole.
        self._ordered: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets remembered, oldest first."""
        return tuple(self._secrets)

    def register(self, secret: str) -> None:
        """Redact ``secret`` from now on (strings under :data:`MIN_SECRET_LENGTH` are ignored)."""
        if len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if self._secrets and next(reversed(self._secrets)) == secret:
                return  # already the newest: a token file read again, a key listed again
            secrets = dict(self._secrets)
            secrets.pop(secret, None)
            secrets[secret] = None
            while len(secrets) > MAX_REDACTED_SECRETS:
                del secrets[next(iter(secrets))]
            ordered = tuple(sorted(secrets, key=len, reverse=True))
            self._secrets, self._ordered = secrets, ordered
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by :data:`REDACTED`."""
        ordered, pattern = self._ordered, self._pattern
        if pattern is None or len(text) < MIN_SECRET_LENGTH:
            return text
        if len(ordered) <= FEW_SECRETS:
            # Substring tests are several times cheaper than a regex pass for the usual one or two tokens.
            for secret in ordered:
                if secret in text:
                    text = text.replace(secret, REDACTED)
            return text
        return pattern.sub(REDACTED, text)


SECRETS = SecretRegistry()


def register(secret: str) -> None:
    """Redact ``secret`` everywhere the exporter writes text, from now on."""
    SECRETS.register(secret)


def redact(text: str) -> str:
    """``text`` without any registered secret."""
    return SECRETS.redact(text)
