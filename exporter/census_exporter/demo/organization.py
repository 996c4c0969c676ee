"""SimulatedOrganization: several Census workspaces behind one simulator, spoken to as V1 and as V2.

One :class:`SimulatorServer` (through its ``router`` hook) serves, for every hosted workspace:

* V1 workspace APIs (``/api/v1/syncs`` ...) with that workspace's own API key, exactly as the plain
  simulator does;
* the V1 organization API with the personal access token (PAT): ``GET /api/v1/workspaces`` and
  ``GET /api/v1/workspaces/{id}/api_key`` (403 where the PAT's user is not an admin), and
  ``GET /api/v1/workspace`` with a workspace key;
* the V2 dialect with the PAT: ``/api/v2`` prefix, the workspace chosen by its Fivetran ``group_id``,
  ``/activations`` (string ids) in place of ``/destinations``, sync and run ids as strings (or integers,
  ``id_form="int"``), ``group_id`` in every object, and a groups listing for discovery.

What Census has not published about V2 is decided in one place each (see docs/census-api-versions.md):
:data:`GROUP_PARAMETER`, :data:`MISSING_GROUP_STATUS`, :data:`GROUPS_ROUTE` and :data:`V2_LIST_ROUTES`.
How V2 lists treat the group is unknown, so the organization serves each plausible behaviour as a
:data:`V2Variant` (:data:`V2_VARIANTS` describes them), chosen when it is built.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from census_exporter.demo.server import API_PREFIX, Query, SimulatorServer
from census_exporter.demo.workspace import JSON, SimulatedWorkspace, iso

V2_PREFIX = "/api/v2"
# ASSUMED: how V2 list calls name the group. Census has not published it; a query parameter is the
# working assumption, and a wrong guess must be fixed here only.
GROUP_PARAMETER = "group_id"
# ASSUMED: the answer to a V2 list call without a group (400, as for any missing required parameter).
MISSING_GROUP_STATUS = 400
# ASSUMED: where a PAT lists the Fivetran groups it can see (for discovery). Not published for V2.
GROUPS_ROUTE = "/groups"
# The V2 calls that list objects of one group, so need GROUP_PARAMETER.
V2_LIST_ROUTES = (r"/syncs", r"/sources", r"/activations", r"/syncs/[^/]+/sync_runs")

IdForm = Literal["int", "string"]

#: How V2 list calls treat the group: each is a way V2 may turn out to behave (docs/census-api-versions.md).
V2Variant = Literal[
    "param-required",
    "param-ignored",
    "param-ignored-untagged",
    "param-ignored-connections-tagged",
    "param-refused",
    "no-groups-route",
]
V2_VARIANTS: dict[V2Variant, str] = {
    "param-required": "lists need ?group_id= and answer only that group; objects carry group_id",
    "param-ignored": "lists ignore ?group_id= and answer every group; objects carry group_id",
    "param-ignored-untagged": "lists ignore ?group_id= and answer every group; objects carry no group_id",
    "param-ignored-connections-tagged": "lists ignore ?group_id= and answer every group; syncs and runs "
    "carry no group_id, sources and activations do",
    "param-refused": "any call naming ?group_id= is answered 400; lists answer every group; objects carry "
    "group_id",
    "no-groups-route": "no groups listing (404); ?group_id= optional and honoured; objects carry group_id",
}
#: Run ids given to each hosted workspace (outside ``param-required``, whose runs keep their old ids).
RUN_IDS_PER_GROUP = 10_000_000
#: The answer to a V2 call naming ``group_id`` in the ``param-refused`` variant.
REFUSED_PARAMETER_STATUS = 400

_ADJECTIVES = ("glimmering", "quiet", "brisk", "amber", "lucid", "mellow", "nimble", "sturdy")
_ANIMALS = ("donkey", "heron", "otter", "lynx", "marmot", "ibis", "walrus", "gecko")


def activation_id(destination_id: int) -> str:
    """The V2 string id of a V1 destination, in Fivetran's ``adjective_animal`` style; stable."""
    adjective = _ADJECTIVES[destination_id % len(_ADJECTIVES)]
    animal = _ANIMALS[(destination_id // len(_ADJECTIVES)) % len(_ANIMALS)]
    if destination_id < len(_ADJECTIVES) * len(_ANIMALS):
        return f"{adjective}_{animal}"
    return f"{adjective}_{animal}_{destination_id}"


@dataclass
class HostedWorkspace:
    """A workspace of the organization: its V1 identity, its V2 group and its simulated contents."""

    workspace_id: int
    name: str
    group_id: str
    api_key: str
    workspace: SimulatedWorkspace
    administered: bool = True  # whether the PAT's user is an admin here (V1 api_key, V2 visibility)
    created_at: str | None = field(default=None)


class SimulatedOrganization:
    """Several :class:`HostedWorkspace` served by one simulator; V1 and V2 at once."""

    def __init__(
        self,
        pat: str = "secret-token:org-pat",
        *,
        id_form: IdForm = "string",
        variant: V2Variant = "param-required",
        refused_status: int = REFUSED_PARAMETER_STATUS,
    ) -> None:
        """``refused_status``: the answer to ``?group_id=`` in ``param-refused`` (400, or 422 as Rails APIs
        often answer an unpermitted parameter)."""
        if variant not in V2_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(V2_VARIANTS)}")
        self.refused_status = refused_status
        self.pat = pat
        self.id_form: IdForm = id_form
        self.variant: V2Variant = variant
        self.members: list[HostedWorkspace] = []
        self.server: SimulatorServer | None = None
        self._lock = threading.Lock()

    def add_workspace(
        self,
        name: str,
        *,
        group_id: str | None = None,
        administered: bool = True,
        workspace: SimulatedWorkspace | None = None,
    ) -> HostedWorkspace:
        """Host a workspace (a fresh one unless given); its ids and key are derived from its position."""
        with self._lock:
            number = len(self.members) + 1
            member = HostedWorkspace(
                workspace_id=1000 + number,
                name=name,
                group_id=group_id or f"group_{number}",
                api_key=f"secret-token:workspace-{number}",
                workspace=workspace or SimulatedWorkspace(),
                administered=administered,
            )
            member.created_at = iso(member.workspace.clock())
            if self.variant != "param-required":
                # Lists may mix every group's objects here, and Fivetran's ids are unique across groups.
                member.workspace.number_runs_from(1 + (number - 1) * RUN_IDS_PER_GROUP)
            self.members.append(member)
            return member

    def serve(self, **server_options: Any) -> SimulatorServer:
        """Start one simulator on loopback that answers for every hosted workspace; return it running."""
        if not self.members:
            raise ValueError("host at least one workspace before serving")
        server = SimulatorServer(
            self.members[0].workspace, token=self.pat, router=self.route, **server_options
        )
        self.server = server
        return server.start()

    # ------------------------------------------------------------------ routing

    def route(self, path: str, query: Query, authorization: str | None) -> tuple[int, Any]:
        """The :data:`census_exporter.demo.server.Router` of this organization."""
        token = (
            authorization[len("Bearer ") :] if authorization and authorization.startswith("Bearer ") else None
        )
        if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
            if token != self.pat:
                return _unauthorized()
            return self._v2(path[len(V2_PREFIX) :].rstrip("/"), query)
        if path.startswith(API_PREFIX + "/"):
            return self._v1(path, query, token)
        return 404, _error(404, "Not found")

    def _v1(self, path: str, query: Query, token: str | None) -> tuple[int, Any]:
        route = path[len(API_PREFIX) :].rstrip("/")
        if route == "/workspaces" or route.startswith("/workspaces/"):
            if token != self.pat:
                return _unauthorized()
            return self._organization(route, query)
        member = next((m for m in self.members if m.api_key == token), None)
        if member is None:
            return _unauthorized()
        if route == "/workspace":
            return 200, {"status": "success", "data": _workspace_record(member)}
        return self._server().answer(path, query, member.workspace)

    def _organization(self, route: str, query: Query) -> tuple[int, Any]:
        if route == "/workspaces":
            return 200, self._listing([_workspace_record(m) for m in self.members], query, route)
        match = re.fullmatch(r"/workspaces/(\d+)/api_key", route)
        member = next((m for m in self.members if match and m.workspace_id == int(match.group(1))), None)
        if member is None:
            return 404, _error(404, "Workspace not found")
        if not member.administered:
            return 403, _error(403, "You must be an organization admin or workspace owner to do this.")
        return 200, {"api_key": member.api_key}

    def _v2(self, route: str, query: Query) -> tuple[int, Any]:
        visible = [m for m in self.members if m.administered]
        variant = self.variant
        if route == GROUPS_ROUTE:
            if variant == "no-groups-route":
                return 404, {"status": 404}  # V2 404 bodies can be this bare (Terraform's tests)
            groups = [{"id": m.group_id, "name": m.name, "created_at": m.created_at} for m in visible]
            return 200, self._listing(groups, query, route)
        if route == "/destinations" or route.startswith("/destinations/"):
            return 404, _error(404, "Not found: V2 serves destinations as /activations")
        group_ids = query.get(GROUP_PARAMETER)
        if group_ids and variant == "param-refused":
            message = f"found unpermitted parameter: :{GROUP_PARAMETER}"
            return self.refused_status, _error(self.refused_status, message)
        listing = any(re.fullmatch(pattern, route) for pattern in V2_LIST_ROUTES)
        honoured = variant in ("param-required", "no-groups-route")
        if group_ids and honoured:
            candidates = [m for m in visible if m.group_id == group_ids[0]]
            if not candidates:
                return 404, _error(404, "Group not found")
        elif listing and variant == "param-required":
            return MISSING_GROUP_STATUS, _error(MISSING_GROUP_STATUS, f"{GROUP_PARAMETER} is required")
        else:
            candidates = visible  # one object by id (ids are unique across groups), or every group's list
        if route in ("/syncs", "/sources", "/activations") and len(candidates) > 1:
            return self._every_group(route, query, candidates)
        v1_route = "/destinations" if route == "/activations" else route
        status: int = 404
        body: Any = _error(404, "Not found")
        for member in candidates:
            status, body = self._server().answer(API_PREFIX + v1_route, query, member.workspace)
            if status == 200:
                return status, self._as_v2(body, route, member)
        return status, body

    def _every_group(self, route: str, query: Query, members: list[HostedWorkspace]) -> tuple[int, Any]:
        """One page of a list across every group, as a V2 that does not scope lists would answer it."""
        records: list[JSON] = []
        for member in members:
            workspace = member.workspace
            with workspace.lock:
                if route == "/syncs":
                    items = list(workspace.syncs.values())
                elif route == "/sources":
                    items = list(workspace.sources.values())
                else:
                    items = list(workspace.destinations.values())
            records.extend(self._object_as_v2(dict(item), route, member) for item in items)
        return 200, self._listing(records, query, route)

    # ------------------------------------------------------------------ V2 shapes

    def _as_v2(self, body: JSON, route: str, member: HostedWorkspace) -> JSON:
        converted = dict(body)
        converted.pop("next", None)  # V2 pages with the pagination block only
        data = body.get("data")
        if isinstance(data, list):
            converted["data"] = [self._object_as_v2(item, route, member) for item in data]
        elif isinstance(data, dict):
            converted["data"] = self._object_as_v2(data, route, member)
        return converted

    def _object_as_v2(self, record: JSON, route: str, member: HostedWorkspace) -> JSON:
        converted = dict(record)
        if self.variant == "param-ignored-untagged" or (
            self.variant == "param-ignored-connections-tagged"
            and not route.startswith(("/sources", "/activations"))
        ):
            converted.pop("group_id", None)
        else:
            converted["group_id"] = member.group_id
        if route == "/activations":
            if isinstance(record.get("id"), int):  # a raw record stays exactly as a test wrote it
                converted["id"] = activation_id(record["id"])
        elif route.endswith("/sync_runs") or route.startswith("/sync_runs/"):
            converted["id"] = self._id(record.get("id"))
            converted["sync_id"] = self._id(record.get("sync_id"))
        elif route.startswith("/syncs"):
            converted["id"] = self._id(record.get("id"))
            destination = record.get("destination_attributes")
            if isinstance(destination, dict) and isinstance(destination.get("connection_id"), int):
                converted["destination_attributes"] = {
                    **destination,
                    "connection_id": activation_id(destination["connection_id"]),
                }
        return converted

    def _id(self, value: Any) -> Any:
        return str(value) if self.id_form == "string" and isinstance(value, int) else value

    # ------------------------------------------------------------------ helpers

    def _listing(self, items: list[JSON], query: Query, route: str) -> JSON:
        """One page of ``items``, paged exactly like the workspace listings (without the V1 ``next`` link)."""
        page = self._server()._page(items, query, API_PREFIX + route, newest_first=False)
        page.pop("next", None)
        return page

    def _server(self) -> SimulatorServer:
        if self.server is None:
            raise RuntimeError("the organization is not being served")
        return self.server


def base_url(server: SimulatorServer, api_version: Literal["v1", "v2"]) -> str:
    """The API base URL of a served organization for one API version."""
    return f"http://127.0.0.1:{server.port}/api/{api_version}"


def _workspace_record(member: HostedWorkspace) -> JSON:
    return {
        "id": member.workspace_id,
        "name": member.name,
        "organization_id": 1,
        "created_at": member.created_at,
        "notification_emails": [],
    }


def _error(status: int, message: str) -> JSON:
    return {"status": status, "message": message}


def _unauthorized() -> tuple[int, JSON]:
    return 401, _error(401, "Invalid credentials for the requested resource.")
