"""Whether a buffered request holds its whole body, or one over the cap: the framing read from bytes alone.

The listener (:mod:`census_exporter.http.cheroot_adapter`) gathers a request in its selector; with a body cap
it asks here whether what arrived is complete (``Content-Length`` or chunked), malformed, or over the cap and
to be refused unread. Nothing here touches a socket.
"""

from __future__ import annotations

import re
from typing import NamedTuple

HEADERS_END = b"\r\n\r\n"

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([^\r]*)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:[ \t]*([^\r]*)", re.IGNORECASE)
#: The longest chunk-size line taken (hex size, extensions, CRLF); a longer one is malformed.
_MAX_CHUNK_LINE = 64
#: Room for a chunked body's framing beyond the body cap when reading ahead in the selector.
MAX_CHUNK_OVERHEAD = 4096
#: The most framing (chunk-size lines and CRLFs) taken before the last chunk, leaving room for that one:
#: more (a body in chunks of a few bytes) is refused unread like a body over the cap, since neither the
#: selector's read-ahead nor cheroot's size backstop (the cap plus :data:`MAX_CHUNK_OVERHEAD`) takes it.
_MAX_FRAMING = MAX_CHUNK_OVERHEAD - 2 * _MAX_CHUNK_LINE


class BodyState(NamedTuple):
    """What a buffered request's body is: complete (or refused unread), over the cap, or badly framed."""

    #: The whole body is buffered; True as well when it is over the cap (refused unread).
    complete: bool
    #: A ``Content-Length`` above the cap, or a chunked body whose chunks or framing pass it.
    over_cap: bool = False
    #: Why the body cannot be read (two lengths, a length that is no number, a framing that is not one):
    #: answered 400 without reading further. ``None`` for a readable body.
    problem: str | None = None


def body_state(buffered: bytes, cap: int) -> BodyState:
    """What the body after the header block in ``buffered`` is (see :class:`BodyState`).

    Complete means the worker then reads only buffered bytes, so no client can hold it by sending slowly.
    A body is over ``cap`` when its ``Content-Length`` is, or its well-formed chunks pass it, or their
    framing passes ``_MAX_FRAMING``. Each problem is a short phrase, safe to log and to answer with.
    """
    end = buffered.index(HEADERS_END)
    head, body = buffered[: end + 2], buffered[end + 4 :]
    lengths = _CONTENT_LENGTH.findall(head)
    encodings = _TRANSFER_ENCODING.findall(head)
    if encodings:
        if lengths:
            return BodyState(False, problem="both Content-Length and Transfer-Encoding")
        codings = [c.strip().lower() for c in b",".join(encodings).split(b",") if c.strip()]
        if codings != [b"chunked"]:
            return BodyState(False, problem="a Transfer-Encoding other than chunked")
        return _chunked_state(body, cap)
    if not lengths:
        return BodyState(True)
    if len(lengths) > 1:
        return BodyState(False, problem="more than one Content-Length")
    if not lengths[0].strip().isdigit():
        return BodyState(False, problem="a Content-Length that is not a number")
    length = int(lengths[0])
    return BodyState(length > cap or len(body) >= length, over_cap=length > cap)


def _chunked_state(body: bytes, cap: int) -> BodyState:
    position, total = 0, 0
    while True:
        line_end = body.find(b"\r\n", position, position + _MAX_CHUNK_LINE)
        if line_end < 0:
            if len(body) - position >= _MAX_CHUNK_LINE:
                return BodyState(False, problem=f"a chunk size line over {_MAX_CHUNK_LINE} bytes")
            return BodyState(False)
        size_text = body[position:line_end].split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            return BodyState(False, problem="a chunk size that is not a hex number")
        size = int(size_text, 16)
        if size == 0:
            # The last chunk, then the empty line (trailers are not taken).
            tail = body[line_end + 2 : line_end + 4]
            if tail == b"\r\n":
                return BodyState(True)
            if len(tail) < 2 and b"\r\n".startswith(tail):
                return BodyState(False)
            return BodyState(False, problem="no empty line after the last chunk (trailers are not taken)")
        total += size
        position = line_end + 2 + size + 2
        if total > cap or position - total > _MAX_FRAMING:
            return BodyState(True, over_cap=True)  # refused unread
        if len(body) < position:
            return BodyState(False)
        if body[position - 2 : position] != b"\r\n":
            return BodyState(False, problem="a chunk not followed by CRLF")
