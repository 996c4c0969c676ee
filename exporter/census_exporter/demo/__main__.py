"""A stand-alone simulated Census organization: ``python -m census_exporter.demo``.

Two workspaces whose runs keep starting, failing and finishing: "marketing", read over V1 with its workspace
API key, and "sales", read over V2 as a Fivetran group with the organization's personal access token. The
tokens are public constants of :mod:`census_exporter.demo`; the docker-compose demo points one exporter at
both.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from census_exporter.converters import NumberRange
from census_exporter.defaults import DEMO_SEED, DEMO_SYNCS
from census_exporter.demo import (
    DEMO_MARKETING_API_KEY,
    DEMO_ORGANIZATION_PAT,
    DEMO_SALES_GROUP_ID,
    DemoActivity,
    SimulatedOrganization,
    SimulatedWorkspace,
    SimulatorServer,
)
from census_exporter.demo.organization import V2_VARIANTS, V2Variant
from census_exporter.http.server import parse_listen_address
from census_exporter.logs import setup_logging

log = logging.getLogger("census_exporter.demo")

PROG = "python -m census_exporter.demo"
DEFAULT_LISTEN_ADDRESS = "127.0.0.1:8080"
EXIT_USAGE = 2
# The host that means "every interface": not an address a client can use, so the logged URLs say loopback.
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - compared against, never bound here


def build_parser() -> argparse.ArgumentParser:
    """The command line of the simulator."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            'A simulated Census organization with two workspaces: "marketing" (V1, workspace API key) and '
            '"sales" (V2, Fivetran group sales_group, organization personal access token). The base URLs and '
            "the public demo tokens are logged at start. Stops on Ctrl-C or SIGTERM."
        ),
    )
    parser.add_argument(
        "--listen-address",
        type=_listen_address,
        default=parse_listen_address(DEFAULT_LISTEN_ADDRESS),
        metavar="HOST:PORT",
        help=(
            f"where to serve (default {DEFAULT_LISTEN_ADDRESS}; port 0 picks a free one). Loopback unless "
            "you say otherwise: 0.0.0.0:8080 serves every interface, as a container must."
        ),
    )
    parser.add_argument(
        "--seed",
        type=_number(int, 0, 2**32 - 1),
        default=DEMO_SEED,
        metavar="N",
        help=f"seed of the simulated history: the same seed, the same syncs and runs (default {DEMO_SEED})",
    )
    parser.add_argument(
        "--syncs",
        type=_number(int, 1, 20000),
        default=DEMO_SYNCS,
        metavar="N",
        help=f"syncs in each workspace (default {DEMO_SYNCS})",
    )
    parser.add_argument(
        "--latency",
        type=_number(float, 0, 60),
        default=0.0,
        metavar="SECONDS",
        help="delay added to every answer, up to 60 (default 0)",
    )
    parser.add_argument(
        "--v2-variant",
        choices=tuple(V2_VARIANTS),
        default="param-required",
        metavar="VARIANT",
        help="how the V2 dialect treats the group, since Census has not published it (default "
        "param-required): " + "; ".join(f"{name}: {meaning}" for name, meaning in V2_VARIANTS.items()),
    )
    return parser


def build_organization(
    seed: int, syncs: int, variant: V2Variant = "param-required"
) -> tuple[SimulatedOrganization, Callable[[], None]]:
    """The two-workspace organization and the callable that moves both workspaces' activity on.

    Outside ``param-required`` the sales workspace's sync ids start after marketing's: Fivetran ids are
    unique across groups, which matters once a V2 variant lists every group at once.
    """
    organization = SimulatedOrganization(pat=DEMO_ORGANIZATION_PAT, variant=variant)
    marketing, sales = SimulatedWorkspace(), SimulatedWorkspace()
    member = organization.add_workspace("marketing", group_id="marketing_group", workspace=marketing)
    member.api_key = DEMO_MARKETING_API_KEY
    organization.add_workspace("sales", group_id=DEMO_SALES_GROUP_ID, workspace=sales)
    # Another seed for sales, so the two workspaces do not show the very same runs.
    activities = [
        DemoActivity(marketing, seed=seed, syncs=syncs),
        DemoActivity(
            sales,
            seed=seed + 1,
            syncs=syncs,
            first_sync_id=1001 if variant == "param-required" else 1001 + syncs,
        ),
    ]

    def advance() -> None:
        for activity in activities:
            activity.advance()

    return organization, advance


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the simulated organization until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    setup_logging("info", "logfmt")
    host, port = args.listen_address
    organization, advance = build_organization(args.seed, args.syncs, args.v2_variant)
    # Installed before the port opens, so a signal during start-up also ends the process cleanly.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = organization.serve(
            host=host, port=port, latency_seconds=args.latency, before_request=advance
        )
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        print(
            f"{PROG}: error: cannot listen on {_address(host, port)} (--listen-address): {reason}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _log_how_to_connect(server, host)
    log.info("V2 variant %s: %s", args.v2_variant, V2_VARIANTS[args.v2_variant])
    stop.wait()
    log.info("shutting down")
    server.close()
    return 0


def _log_how_to_connect(server: SimulatorServer, host: str) -> None:
    every_interface = host == EVERY_INTERFACE
    root = f"http://{_address('127.0.0.1' if every_interface else host, server.port)}"
    log.info(
        "simulated Census organization listening on %s%s",
        _address(host, server.port),
        " (every interface: other machines and containers use this host's name in the URLs below)"
        if every_interface
        else "",
    )
    log.info(
        "workspace marketing: api_version v1, api_url %s/api/v1, "
        "workspace API key %s (DEMO_MARKETING_API_KEY)",
        root,
        DEMO_MARKETING_API_KEY,
    )
    log.info(
        "workspace sales: api_version v2, api_url %s/api/v2, group_id %s, "
        "personal access token %s (DEMO_ORGANIZATION_PAT)",
        root,
        DEMO_SALES_GROUP_ID,
        DEMO_ORGANIZATION_PAT,
    )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen_address(text: str) -> tuple[str, int]:
    try:
        host, port = parse_listen_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not host:
        raise argparse.ArgumentTypeError(
            f"{text!r} names no host: say 127.0.0.1 for this machine only, 0.0.0.0 for every interface"
        )
    return host, port


def _number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], int | float]:
    """The exporter's own range check, as an argparse type: its message is shown as it is."""
    check = NumberRange(kind, low, high)

    def convert(text: str) -> int | float:
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


if __name__ == "__main__":
    sys.exit(main())
