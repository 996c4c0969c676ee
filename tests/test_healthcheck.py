"""The container health check against real exporter processes under TLS, basic auth and mutual TLS.

Each test starts ``python -m census_exporter --demo`` with a web config and runs
``python -m census_exporter.healthcheck --pid <its pid>`` as Docker's HEALTHCHECK would, so the check
finds the flags and environment in /proc, as it does in the container.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from tests.conftest import wait_for
from tests.stack import Process, free_port
from tests.test_web_config import issue, make_ca, write_ca

PASSWORD = "correct horse battery staple"
PASSWORD_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


class Exporter:
    """A real exporter process with ``--demo`` on a loopback port."""

    def __init__(
        self, directory: Path, flags: list[str], env: Mapping[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.port = free_port()
        self.process = Process(
            [
                sys.executable,
                "-m",
                "census_exporter",
                "--demo",
                f"--web.listen-address={host}:{self.port}",
                *flags,
            ],
            directory / f"exporter-{self.port}.log",
            env={**os.environ, **(env or {})},
        )
        wait_for(self._listening, timeout=30, what=lambda: f"the exporter to listen: {self.process.output()}")

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def _listening(self) -> bool:
        assert self.process.process.poll() is None, self.process.output()
        try:
            with httpx.Client(verify=False, timeout=2) as client:
                client.get(f"https://127.0.0.1:{self.port}/healthz")
        except httpx.ConnectError:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
            except httpx.ConnectError:
                return False
            except httpx.HTTPError:
                return True
        except httpx.HTTPError:
            return True
        return True


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Exporter]]:
    exporters: list[Exporter] = []
    yield exporters
    for exporter in exporters:
        if exporter.process.process.poll() is None:
            os.kill(exporter.pid, signal.SIGCONT)
        exporter.process.stop()


def healthcheck(pid: int, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "census_exporter.healthcheck", "--pid", str(pid)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )


def web_config(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, Any]:
    ca = make_ca("healthcheck CA")
    issue(ca, tmp_path, "server")
    client_cert, client_key = issue(ca, tmp_path, "client", client=True)
    write_ca(ca, tmp_path / "ca.crt")
    return {
        "section": {"cert_file": "server.crt", "key_file": "server.key"},
        "client": (client_cert, client_key),
    }


def test_tls_and_basic_auth_are_healthy_where_the_old_check_was_not(
    tmp_path: Path, tls: dict[str, Any], started: list[Exporter]
) -> None:
    path = web_config(
        tmp_path, {"tls_server_config": tls["section"], "basic_auth_users": {"prometheus": PASSWORD_HASH}}
    )
    exporter = Exporter(tmp_path, [f"--web.config.file={path}"])
    started.append(exporter)
    # The image's former check: plain HTTP, no credentials.
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/healthz", timeout=4)
    result = healthcheck(exporter.pid)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        f"healthy: https://127.0.0.1:{exporter.port}/healthz: 401 from the exporter"
    )
    # It sent no credential, so no bcrypt ran for it (only for this scrape): it costs nothing under a flood.
    metrics = httpx.get(
        f"https://127.0.0.1:{exporter.port}/metrics",
        auth=("prometheus", PASSWORD),
        verify=ssl.create_default_context(cafile=str(tmp_path / "ca.crt")),
        timeout=10,
    ).text
    assert "census_exporter_basic_auth_password_verifications_total 1.0" in metrics.splitlines()


def test_the_web_config_from_the_environment_and_a_wildcard_listener(
    tmp_path: Path, tls: dict[str, Any], started: list[Exporter]
) -> None:
    path = web_config(tmp_path, {"tls_server_config": tls["section"]})
    exporter = Exporter(tmp_path, [], env={"CENSUS_EXPORTER_WEB_CONFIG_FILE": str(path)}, host="")
    started.append(exporter)
    port = exporter.port
    result = healthcheck(exporter.pid)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"healthy: https://127.0.0.1:{port}/healthz: 200"


def test_plain_http_without_a_web_config(tmp_path: Path, started: list[Exporter]) -> None:
    exporter = Exporter(tmp_path, [])
    started.append(exporter)
    result = healthcheck(exporter.pid)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"healthy: http://127.0.0.1:{exporter.port}/healthz: 200"


def test_mutual_tls_with_and_without_the_client_certificate(
    tmp_path: Path, tls: dict[str, Any], started: list[Exporter]
) -> None:
    section = {
        **tls["section"],
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "ca.crt",
    }
    path = web_config(tmp_path, {"tls_server_config": section})
    exporter = Exporter(tmp_path, [f"--web.config.file={path}"])
    started.append(exporter)
    without = healthcheck(exporter.pid)
    assert without.returncode == 0, without.stdout + without.stderr
    assert "the TLS listener completes a TLSv1.3 handshake (mutual TLS: set" in without.stdout
    cert, key = tls["client"]
    given = healthcheck(
        exporter.pid,
        {
            "CENSUS_EXPORTER_HEALTHCHECK_CERT_FILE": str(cert),
            "CENSUS_EXPORTER_HEALTHCHECK_KEY_FILE": str(key),
        },
    )
    assert given.returncode == 0, given.stdout + given.stderr
    assert given.stdout.strip() == f"healthy: https://127.0.0.1:{exporter.port}/healthz: 200"


@pytest.mark.slow  # real processes and timeouts, 10-16 s
def test_a_stopped_exporter_or_a_stranger_on_its_port_is_unhealthy(
    tmp_path: Path, tls: dict[str, Any], started: list[Exporter]
) -> None:
    path = web_config(
        tmp_path, {"tls_server_config": tls["section"], "basic_auth_users": {"prometheus": PASSWORD_HASH}}
    )
    exporter = Exporter(tmp_path, [f"--web.config.file={path}"])
    started.append(exporter)
    # Frozen: the kernel still accepts the connection, nothing answers; the check gives up in time.
    os.kill(exporter.pid, signal.SIGSTOP)
    try:
        frozen = subprocess.run(
            [sys.executable, "-m", "census_exporter.healthcheck", "--pid", str(exporter.pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.kill(exporter.pid, signal.SIGCONT)
    assert frozen.returncode == 1, frozen.stdout
    assert frozen.stdout.startswith("unhealthy: https://127.0.0.1:")
    # Not an exporter at all (this test process is not either, but its child, the exporter, would be found,
    # as behind an init).
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            stranger = healthcheck(sleeper.pid)
        finally:
            sleeper.kill()
    assert stranger.returncode == 1
    assert (
        stranger.stdout.strip()
        == f"unhealthy: process {sleeper.pid} (and its children) is not census-exporter"
    )
    behind_init = healthcheck(os.getpid())
    assert behind_init.returncode == 0, behind_init.stdout
    # A web config that no longer parses is unhealthy with the file's error: the exporter keeps its running
    # config, but would not start again with this one.
    path.write_text("tls_server_config: {cert_file: server.crt}\n")
    broken = healthcheck(exporter.pid)
    assert broken.returncode == 1
    assert broken.stdout.startswith("unhealthy: web config ")
