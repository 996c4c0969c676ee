"""Organization records for discovery: V1 workspaces (``GET /workspaces``) and V2 Fivetran groups."""

from __future__ import annotations

from dataclasses import dataclass

from census_exporter.census.models.fields import (
    NAME_LIMIT,
    WORD_ID,
    Skipped,
    check_id,
    known,
    mapping,
    parse_id,
    parse_text,
)


@dataclass(frozen=True, slots=True)
class OrganizationWorkspace:
    """A V1 workspace as the organization API lists it (``GET /workspaces``), for discovery."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Group:
    """A V2 Fivetran group (what V1 called a workspace) as the groups listing gives it, for discovery.

    ``id`` is kept as the text the API sent (``decent_dropsy``, or digits): it is sent back as the group.
    """

    id: str
    name: str


def parse_organization_workspace(raw: object) -> OrganizationWorkspace | Skipped:
    """A workspace from ``GET /workspaces``: an API id, and a name cleaned like a sync label (else the id).

    ``organization_id``, ``created_at`` and ``notification_emails`` (addresses) are never read.
    """
    record = mapping(raw)
    workspace_id = parse_id(record.get("id"))
    if workspace_id is None:
        return Skipped("workspace without a usable id")
    return OrganizationWorkspace(
        id=workspace_id, name=parse_text(record.get("name"), NAME_LIMIT) or str(workspace_id)
    )


def parse_group(raw: object) -> Group | Skipped:
    """A group from the V2 groups listing: its id as text, and a name cleaned like a sync label (else the id).

    A string id is kept exactly as sent (``007`` stays ``007``) once it passes as an id; an integer one must
    be an API id (:func:`check_id`).
    """
    record = mapping(raw)
    group_id = _group_id(record.get("id"))
    if group_id is None:
        return Skipped("group without a usable id")
    return Group(id=group_id, name=parse_text(record.get("name"), NAME_LIMIT) or group_id)


def _group_id(value: object) -> str | None:
    if isinstance(value, str):
        return value if WORD_ID.fullmatch(value) else None
    checked = known(check_id(value))
    return None if checked is None else str(checked)
