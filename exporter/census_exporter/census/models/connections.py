"""Source and destination connections (V2: activations): the :class:`Connection` model and its parser.

Only what labels need is read: an id and a name; ``connection_details`` is never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from census_exporter.census.models.fields import (
    NAME_LIMIT,
    ConnectionId,
    Skipped,
    Unusable,
    check_connection_id,
    mapping,
    parse_text,
)


@dataclass(frozen=True, slots=True)
class Connection:
    """A source or destination connection: only what labels need."""

    id: ConnectionId
    name: str


def parse_connection(raw: object) -> Connection | Skipped:
    """A source or destination. The name falls back to the id; ``connection_details`` is never read."""
    record = mapping(raw)
    connection_id = check_connection_id(record.get("id"))
    if connection_id is None or isinstance(connection_id, Unusable):
        return Skipped("connection without a usable id")
    name = (
        parse_text(record.get("name"), NAME_LIMIT)
        or parse_text(record.get("label"), NAME_LIMIT)
        or str(connection_id)
    )
    return Connection(id=connection_id, name=name)
