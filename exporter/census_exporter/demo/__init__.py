"""The built-in demo workspace: a simulated Census API used by ``--demo``, the tests and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from census_exporter.demo.activity import DemoActivity
from census_exporter.demo.organization import HostedWorkspace, SimulatedOrganization, base_url
from census_exporter.demo.server import Fault, SimulatorServer
from census_exporter.demo.workspace import SimulatedWorkspace, reference_workspace

DEMO_TOKEN = "secret-token:demo-workspace"  # noqa: S105 - the simulator's own, public, token
DEMO_GROUP_ID = "demo_group"
"""The Fivetran group of the demo workspace when it is spoken to as V2."""

# The stand-alone simulated organization (``python -m census_exporter.demo``, the docker-compose demo).
DEMO_MARKETING_API_KEY = "secret-token:demo-marketing"
"""The V1 workspace API key of the simulated organization's "marketing" workspace."""
DEMO_ORGANIZATION_PAT = "secret-token:demo-organization-pat"
"""The personal access token of the simulated organization; it reads the "sales" group over V2."""
DEMO_SALES_GROUP_ID = "sales_group"
"""The Fivetran group of the simulated organization's "sales" workspace."""

__all__ = [
    "DEMO_GROUP_ID",
    "DEMO_MARKETING_API_KEY",
    "DEMO_ORGANIZATION_PAT",
    "DEMO_SALES_GROUP_ID",
    "DEMO_TOKEN",
    "DemoActivity",
    "Fault",
    "HostedWorkspace",
    "SimulatedOrganization",
    "SimulatedWorkspace",
    "SimulatorServer",
    "demo_api_url",
    "reference_workspace",
    "start_demo",
]


def start_demo(
    seed: int = 0,
    syncs: int = 25,
    failing_sync_ids: frozenset[int] = frozenset(),
    latency_seconds: float = 0.0,
    *,
    api_version: Literal["v1", "v2"] = "v1",
    group_id: str = DEMO_GROUP_ID,
    clock: Callable[[], float] = time.time,
) -> SimulatorServer:
    """Start the simulated API on an ephemeral loopback port with demo activity; return it running.

    With ``api_version="v2"`` the workspace is the Fivetran group ``group_id`` of a
    :class:`SimulatedOrganization` whose personal access token is :data:`DEMO_TOKEN`; its base URL is
    :func:`demo_api_url`. ``clock`` drives the activity: a clock that stands still freezes the workspace
    as it was at the start (no run starts or finishes), for measurements that must not depend on timing.
    """
    workspace = SimulatedWorkspace()
    activity = DemoActivity(workspace, seed=seed, syncs=syncs, failing_sync_ids=failing_sync_ids, clock=clock)
    if api_version == "v2":
        organization = SimulatedOrganization(pat=DEMO_TOKEN)
        organization.add_workspace("demo", group_id=group_id, workspace=workspace)
        return organization.serve(latency_seconds=latency_seconds, before_request=activity.advance)
    server = SimulatorServer(
        workspace,
        token=DEMO_TOKEN,
        latency_seconds=latency_seconds,
        before_request=activity.advance,
    )
    return server.start()


def demo_api_url(server: SimulatorServer, api_version: Literal["v1", "v2"]) -> str:
    """The base URL at which a server from :func:`start_demo` speaks ``api_version``."""
    return base_url(server, api_version)
