"""--web.listen-address: `:PORT` is dual-stack, and the flag is repeatable, each address served (issue 21).

Over real HTTP against the real CLI in demo mode. The dual-stack test has to listen on the wildcard address
(that is the feature); it uses an ephemeral port and stops at once.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import wait_for


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")


@contextmanager
def exporter(*addresses: str) -> Iterator[list[str]]:
    """The real CLI on the demo workspace, serving ``addresses``; yields the base URLs it logs."""
    argv = [sys.executable, "-m", "census_exporter", "--demo", "--demo.syncs", "3"]
    for address in addresses:
        argv += ["--web.listen-address", address]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CENSUS_", "WEB_", "LOG_"))}
    process = subprocess.Popen(argv, env=clean, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        stderr = process.stderr

        def listening() -> list[str] | None:
            line = stderr.readline()
            if "listening on" not in line:
                return None
            return re.findall(r"(https?://\S+?)/metrics", line)

        yield wait_for(listening, timeout=30, interval=0, what="the listening log line")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@needs_ipv6
def test_a_port_without_host_answers_over_ipv4_and_ipv6() -> None:
    with exporter(":0") as urls:
        assert len(urls) == 1
        url = urls[0]
        assert url.startswith("http://[::]:"), url  # one dual-stack socket
        port = int(url.rpartition(":")[2])
        for base in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
            wait_for(lambda base=base: _ready(base), what=f"{base}/readyz")
            response = httpx.get(base + "/metrics", timeout=5)
            assert response.status_code == 200
            assert 'census_up{workspace="default"} 1.0' in response.text


@needs_ipv6
def test_a_repeated_flag_serves_each_address() -> None:
    with exporter("127.0.0.1:0", "[::1]:0") as urls:
        assert len(urls) == 2
        assert urls[0].startswith("http://127.0.0.1:") and urls[1].startswith("http://[::1]:")
        assert urls[0].rpartition(":")[2] != urls[1].rpartition(":")[2]
        for url in urls:
            wait_for(lambda url=url: _ready(url), what=f"{url}/readyz")
            assert 'census_syncs{workspace="default"} 3.0' in httpx.get(url + "/metrics", timeout=5).text
            assert httpx.get(url + "/", timeout=5).status_code == 200


def test_an_explicit_ipv4_address_is_ipv4_only() -> None:
    with exporter("127.0.0.1:0") as urls:
        port = int(urls[0].rpartition(":")[2])
        wait_for(lambda: _ready(urls[0]), what="readiness")
        if _ipv6_loopback():
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://[::1]:{port}/healthz", timeout=5)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CENSUS_", "WEB_", "LOG_"))}
    return subprocess.run(
        [sys.executable, "-m", "census_exporter", "--demo", *argv],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_taken_second_address_stops_the_start_naming_that_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--web.listen-address", "127.0.0.1:0", "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"census-exporter: error: cannot listen on 127.0.0.1:{port} (--web.listen-address): "
        "address already in use"
    ]


def test_the_same_address_twice_is_refused() -> None:
    result = run("--web.listen-address", "127.0.0.1:10049", "--web.listen-address=127.0.0.1:10049")
    assert result.returncode == 2
    assert "an address is given twice" in result.stderr and result.stderr.count("\n") == 1


def test_the_variable_takes_several_addresses_separated_by_commas() -> None:
    from census_exporter.cli.assembly import parse_config

    config = parse_config(["--demo"], {"CENSUS_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:1, [::1]:2"})
    assert (config.listen_host, config.listen_port, config.more_listen_addresses) == (
        "127.0.0.1",
        1,
        (("::1", 2),),
    )
    flags = parse_config(["--demo", "--web.listen-address", ":1", "--web.listen-address", "[::1]:2"], {})
    assert (flags.listen_host, flags.listen_port, flags.more_listen_addresses) == ("", 1, (("::1", 2),))
