"""The built-in demo workspace: a simulated Census API used by ``--demo``, the tests and the benchmarks."""

from __future__ import annotations

from census_exporter.demo.activity import DemoActivity
from census_exporter.demo.organization import HostedWorkspace, SimulatedOrganization
from census_exporter.demo.server import Fault, SimulatorServer
from census_exporter.demo.workspace import SimulatedWorkspace, reference_workspace

DEMO_TOKEN = "secret-token:demo-workspace"  # noqa: S105 - the simulator's own, public, token

__all__ = [
    "DEMO_TOKEN",
    "DemoActivity",
    "Fault",
    "HostedWorkspace",
    "SimulatedOrganization",
    "SimulatedWorkspace",
    "SimulatorServer",
    "reference_workspace",
    "start_demo",
]


def start_demo(
    seed: int = 0,
    syncs: int = 25,
    failing_sync_ids: frozenset[int] = frozenset(),
    latency_seconds: float = 0.0,
) -> SimulatorServer:
    """Start the simulated API on an ephemeral loopback port with demo activity; return it running."""
    workspace = SimulatedWorkspace()
    activity = DemoActivity(workspace, seed=seed, syncs=syncs, failing_sync_ids=failing_sync_ids)
    server = SimulatorServer(
        workspace,
        token=DEMO_TOKEN,
        latency_seconds=latency_seconds,
        before_request=activity.advance,
    )
    return server.start()
