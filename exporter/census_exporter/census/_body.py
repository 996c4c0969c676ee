"""Reads one streamed response body within a wall-clock bound and a size limit, decoding as it goes.

httpx's own timeout bounds each network read, not the request: a server that drips one byte per second
never trips it. This module checks the clock after every chunk, counts raw and decoded bytes against the
limit, and inflates compressed bodies a bounded slice at a time, so a gzip bomb stops at the limit
without being expanded. It raises plain exceptions; the client turns them into its own errors.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import httpx

BODY_READ_INTERVAL_SECONDS = 2.0
"""Longest single network read while a body arrives: the most a stalled body can overrun its bound.

httpcore takes the read timeout from the request's ``timeout`` extension once when the body starts (not per
read), so it is lowered to this (or to the time left, if less) just before the body is read.
"""

ACCEPTED_ENCODINGS = "gzip, deflate"
"""Sent as ``Accept-Encoding``: the only codings this module can inflate in bounded slices."""


class BodyTooLarge(Exception):
    """The body exceeded the limit (declared, raw or decoded)."""


class BodyTimedOut(Exception):
    """The body was still arriving when the bound ran out."""


class BodyStalled(Exception):
    """No byte of the body arrived for ``BODY_READ_INTERVAL_SECONDS`` although time was left."""


class BodyUndecodable(Exception):
    """The body's ``Content-Encoding`` is unknown or its compressed data is corrupt."""


def read_bounded_body(
    response: httpx.Response, *, limit: int, ends_at: float, clock: Callable[[], float]
) -> bytearray:
    """The decoded body of streamed ``response``, read by clock time ``ends_at``, at most ``limit`` bytes.

    The declared ``Content-Length`` is checked before anything is read.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    _shorten_read_timeout(response, ends_at - clock())
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    body = bytearray()
    raw_bytes = 0
    try:
        for chunk in response.iter_raw():
            raw_bytes += len(chunk)
            if raw_bytes > limit:
                raise BodyTooLarge
            _append_decoded(body, chunk, decoder, limit)
            if clock() >= ends_at:
                raise BodyTimedOut
        if decoder is not None:
            body += decoder.flush()
            if len(body) > limit:
                raise BodyTooLarge
    except httpx.TimeoutException:
        stalled = clock() < ends_at
    except zlib.error:
        raise BodyUndecodable from None
    else:
        return body
    # Raised outside the handler so the httpx error, and the frames it holds, are not kept as context.
    raise BodyStalled if stalled else BodyTimedOut


def _shorten_read_timeout(response: httpx.Response, seconds_left: float) -> None:
    timeouts = response.request.extensions.get("timeout")
    if isinstance(timeouts, dict):
        timeouts["read"] = max(0.001, min(seconds_left, BODY_READ_INTERVAL_SECONDS))


def _decoder(content_encoding: str) -> zlib._Decompress | None:
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # accepts a gzip or a zlib header
    raise BodyUndecodable


def _append_decoded(body: bytearray, chunk: bytes, decoder: zlib._Decompress | None, limit: int) -> None:
    if decoder is None:
        body += chunk
    else:
        pending = chunk
        while pending:
            # Never inflate more than one byte past the limit: that byte alone proves the body is too large.
            body += decoder.decompress(pending, limit - len(body) + 1)
            if len(body) > limit:
                raise BodyTooLarge
            pending = decoder.unconsumed_tail
    if len(body) > limit:
        raise BodyTooLarge
