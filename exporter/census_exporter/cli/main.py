"""Start-up: a Config from the flags, the demo if asked for, the servers, then wait for signals.

SIGINT and SIGTERM stop the exporter; SIGHUP reloads its files (:mod:`census_exporter.cli.reload`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from census_exporter import __version__
from census_exporter.cli.api_versions import log_api_version_notice
from census_exporter.cli.assembly import parse_config
from census_exporter.cli.parser import EXIT_USAGE
from census_exporter.cli.reload import Reloader
from census_exporter.config import TokenSource
from census_exporter.logs import setup_logging

log = logging.getLogger("census_exporter")

#: How long a thread may hold the GIL while another waits (CPython's default is 5 ms). A request for
#: /readyz or /metrics passes the GIL back and forth a dozen times (accept, hand-off, read, answer); with
#: the refresh threads parsing thousands of runs, each hand-back waited up to the whole interval, and
#: /readyz took up to 127 ms where it must answer within 100 ms (benchmarks/fleet.py, docs/sizing.md).
GIL_SWITCH_INTERVAL_SECONDS = 0.001


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter until SIGINT or SIGTERM; SIGHUP reloads its files (:class:`Reloader`)."""
    from census_exporter.exporter import Exporter  # noqa: PLC0415 - keep --help fast

    # Before anything else: SIGHUP's default action ends the process (under systemd's Restart=on-failure
    # it would stay down), and a reload manager may send one at any moment.
    stop, reload_requested, wake = threading.Event(), threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        (reload_requested if signum == signal.SIGHUP else stop).set()
        wake.set()

    signal.signal(signal.SIGHUP, on_signal)
    config = parse_config(argv)
    setup_logging(config.log_level, config.log_format)
    for notice in config.notices:
        log.warning("%s", notice)
    simulator = None
    if config.demo:
        from dataclasses import replace  # noqa: PLC0415

        from census_exporter.demo import (  # noqa: PLC0415
            DEMO_GROUP_ID,
            DEMO_TOKEN,
            demo_api_url,
            start_demo,
        )

        group_id = (config.group_id or DEMO_GROUP_ID) if config.api_version == "v2" else None
        simulator = start_demo(
            seed=config.demo_seed,
            syncs=config.demo_syncs,
            api_version=config.api_version,
            group_id=group_id or DEMO_GROUP_ID,
        )
        config = replace(
            config,
            api_url=demo_api_url(simulator, config.api_version),
            token=TokenSource(value=DEMO_TOKEN),
            group_id=group_id,
        )
        if config.webhook_listen is not None:
            from census_exporter.demo.webhooks import DEMO_WEBHOOK_SECRET  # noqa: PLC0415

            config = replace(config, webhook_secrets=(TokenSource(value=DEMO_WEBHOOK_SECRET),))
    from census_exporter.storage import StorageError  # noqa: PLC0415

    try:
        exporter = Exporter(config)
    except StorageError as error:
        print(f"census-exporter: error: argument --storage.path: {error}", file=sys.stderr)
        if simulator is not None:
            simulator.close()
        return EXIT_USAGE
    except OSError as error:
        from census_exporter.exporter import WebhookListenError  # noqa: PLC0415

        reason = (error.strerror or type(error).__name__).lower()
        address = error.filename or _address(config.listen_host, config.listen_port)
        flag = "--web.listen-address"
        if isinstance(error, WebhookListenError) and config.webhook_listen is not None:
            address, flag = _address(*config.webhook_listen), "--web.webhook-listen-address"
        print(f"census-exporter: error: cannot listen on {address} ({flag}): {reason}", file=sys.stderr)
        if simulator is not None:
            simulator.close()
        return EXIT_USAGE
    # Only once the configuration is known to work: a warning above an error line would hide the error.
    log_api_version_notice(config)
    if simulator is not None:
        log.info("demo workspace: simulated Census API %s at %s", config.api_version, config.api_url)
    else:
        # Validated to hold no credentials, so safe to print; shows at once which region the token must match.
        if config.config_file is None:
            log.info("Census API at %s", config.api_url)
        for workspace in config.workspaces:
            log.info(
                "workspace %s: Census API %s at %s", workspace.name, workspace.api_version, workspace.api_url
            )
        for discovery in config.discoveries:
            log.info(
                "discovery: every %s the token can see at %s, listed every %gs",
                "group" if discovery.api_version == "v2" else "workspace",
                discovery.api_url,
                discovery.relist_interval_seconds,
            )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    reloader = Reloader(exporter, config, os.environ)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    exporter.start()
    scheme = "https" if exporter.http.tls else "http"
    log.info(
        "census-exporter %s listening on %s (%s)",
        __version__,
        ", ".join(
            f"{scheme}://{_address(*address)}{config.telemetry_path}" for address in exporter.http.addresses
        ),
        f"workspaces from {config.config_file}" if config.config_file else f"workspace {config.workspace}",
    )
    sender = None
    if exporter.webhooks is not None and config.webhook_listen is not None:
        hooks_host, hooks_port = exporter.webhooks.http.addresses[0]
        log.info(
            "webhook receiver listening on http://%s/webhooks/census/<workspace>",
            _address(hooks_host, hooks_port),
        )
        if simulator is not None:
            from census_exporter.demo.webhooks import WebhookSender  # noqa: PLC0415

            loopback = "127.0.0.1" if hooks_host in ("0.0.0.0", "::", "") else hooks_host  # noqa: S104
            url = f"http://{_address(loopback, exporter.webhooks.port)}/webhooks/census/{config.workspace}"
            # Held until the first listing: an event before it names a sync the exporter has not seen.
            sender = WebhookSender(url, ready=lambda: exporter.refresher.snapshot.listed).start()
            simulator.workspace.run_listeners.append(sender)
            log.info("demo workspace: the simulator posts signed webhooks for its runs to %s", url)
    # A signal may be delivered to any thread; Python runs its handler in the main thread only once that
    # thread is back in the interpreter, which a wait without timeout may never be. So wait in slices.
    while not stop.is_set():
        wake.wait(0.5)
        wake.clear()
        if reload_requested.is_set() and not stop.is_set():
            reload_requested.clear()
            try:
                reloader.reload()
            except Exception as error:  # noqa: BLE001 - a reload must never end the process
                log.error("SIGHUP: reload failed: %s: %s", type(error).__name__, error)
    log.info("shutting down")
    if sender is not None:
        sender.close()
    stopped = exporter.close()
    if simulator is not None:
        simulator.close()
    if not stopped:
        # A stuck server thread must not turn SIGTERM into SIGKILL after the grace period.
        logging.shutdown()
        os._exit(0)
    return 0
