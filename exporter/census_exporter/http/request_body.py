"""Whether a buffered request holds its whole body, or one over the cap: the framing read from bytes alone.

The listener (:mod:`census_exporter.http.cheroot_adapter`) gathers a request in its selector; with a body cap
it asks here whether what arrived is complete (``Content-Length`` or chunked), malformed, or over the cap and
to be refused unread. Nothing here touches a socket.
"""

from __future__ import annotations

import re

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


def body_complete(buffered: bytes, cap: int) -> bool | None:
    """Whether ``buffered`` (a request's header block and what followed it) holds its whole body.

    True as well when the body is over ``cap`` and will be refused unread: a ``Content-Length`` above it,
    or a chunked body whose well-formed chunks pass it, or whose framing passes ``_MAX_FRAMING``
    (:func:`body_over_cap` tells these apart). ``None``
    for a body that cannot be read: two lengths, a length that is no number, or a chunked framing that is
    not one. The worker then reads only buffered bytes, so no client can hold it by sending slowly.
    """
    return body_state(buffered, cap)[0]


def body_over_cap(buffered: bytes, cap: int) -> bool:
    """Whether the complete request in ``buffered`` (see :func:`body_complete`) has a body over ``cap``."""
    return body_state(buffered, cap)[1]


def body_state(buffered: bytes, cap: int) -> tuple[bool | None, bool]:
    """(complete, over the cap) of the body after the header block in ``buffered``."""
    end = buffered.index(HEADERS_END)
    head, body = buffered[: end + 2], buffered[end + 4 :]
    lengths = _CONTENT_LENGTH.findall(head)
    if _TRANSFER_ENCODING.search(head):
        return (None, False) if lengths else _chunked_state(body, cap)
    if not lengths:
        return True, False
    if len(lengths) > 1 or not lengths[0].strip().isdigit():
        return None, False
    length = int(lengths[0])
    return length > cap or len(body) >= length, length > cap


def _chunked_state(body: bytes, cap: int) -> tuple[bool | None, bool]:
    position, total = 0, 0
    while True:
        line_end = body.find(b"\r\n", position, position + _MAX_CHUNK_LINE)
        if line_end < 0:
            return (None if len(body) - position >= _MAX_CHUNK_LINE else False), False
        size_text = body[position:line_end].split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            return None, False
        size = int(size_text, 16)
        if size == 0:
            # The last chunk, then the empty line (trailers are not taken).
            tail = body[line_end + 2 : line_end + 4]
            if len(tail) < 2:
                return (False if b"\r\n".startswith(tail) else None), False
            return (True if tail == b"\r\n" else None), False
        total += size
        position = line_end + 2 + size + 2
        if total > cap or position - total > _MAX_FRAMING:
            return True, True  # refused unread
        if len(body) < position:
            return False, False
