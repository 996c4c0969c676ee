"""The container's health check: ``python -m census_exporter.healthcheck [--pid PID]``.

Docker runs a ``HEALTHCHECK`` without the container's arguments, so the check reads the running
exporter's own command line and environment (``/proc/PID/cmdline`` and ``/proc/PID/environ``; PID 1 in the
container, or its child when an init such as ``docker run --init`` is PID 1) and resolves them with the
exporter's own parser: it asks ``/healthz`` on the address the exporter listens on, over the scheme its
``--web.config.file`` sets. What counts as healthy (docs/security.md, "The container health check"):

- ``200`` from ``/healthz``;
- with ``basic_auth_users``: the exporter's own ``401`` (``WWW-Authenticate: Basic realm="census-exporter"``).
  The file holds only bcrypt hashes, so the check has no password to send; the 401 is written by the same
  worker threads that answer ``/healthz``, so it proves as much. No credential is sent, so no bcrypt runs;
- with TLS: HTTPS to the loopback address without verifying the certificate (it names the service, not
  127.0.0.1, and nothing secret is sent). With ``client_auth_type: RequireAndVerifyClientCert`` the check
  presents ``CENSUS_EXPORTER_HEALTHCHECK_CERT_FILE`` / ``CENSUS_EXPORTER_HEALTHCHECK_KEY_FILE`` when set;
  without them a completed TLS 1.3 handshake counts as alive (it proves the listener and its TLS, not the
  workers: the request itself would be refused).

Exit 0 when healthy, 1 otherwise (Docker's convention), with one line saying why.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from census_exporter.cli.flags import build_parser
from census_exporter.http.server import parse_listen_address
from census_exporter.web_config import WebConfig, WebConfigError, load_web_config

TIMEOUT_SECONDS = 4.0
REALM = 'Basic realm="census-exporter"'
CERT_FILE_ENV = "CENSUS_EXPORTER_HEALTHCHECK_CERT_FILE"
KEY_FILE_ENV = "CENSUS_EXPORTER_HEALTHCHECK_KEY_FILE"
#: A command line or environment larger than this is not an exporter's (the kernel caps argv at 2 MiB).
MAX_PROC_BYTES = 4 * 1024 * 1024


class HealthcheckError(Exception):
    """The exporter's flags could not be found or read."""


@dataclass(frozen=True)
class Target:
    """Where and how to ask: the exporter's listener and its web config (None: none is configured)."""

    host: str
    port: int
    web_config: WebConfig | None


def exporter_arguments(pid: int, proc: Path = Path("/proc")) -> tuple[list[str], dict[str, str]]:
    """The flags and environment of the exporter running as ``pid``, or as its only child (an init's)."""
    for candidate in (pid, *_children(proc, pid)):
        argv = _read_nul_separated(proc / str(candidate) / "cmdline")
        flags = _flags_after_program(argv)
        if flags is not None:
            environ = dict(
                entry.split("=", 1)
                for entry in _read_nul_separated(proc / str(candidate) / "environ")
                if "=" in entry
            )
            return flags, environ
    raise HealthcheckError(f"process {pid} (and its children) is not census-exporter")


def _children(proc: Path, pid: int) -> list[int]:
    try:
        text = (proc / str(pid) / "task" / str(pid) / "children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()[:16]]


def _read_nul_separated(path: Path) -> list[str]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PROC_BYTES + 1)
    except OSError as error:
        raise HealthcheckError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_PROC_BYTES:
        raise HealthcheckError(f"{path} is larger than {MAX_PROC_BYTES} bytes")
    return [part.decode("utf-8", "surrogateescape") for part in data.split(b"\0") if part]


def _flags_after_program(argv: Sequence[str]) -> list[str] | None:
    """What follows ``census-exporter`` (the console script) or ``-m census_exporter`` in ``argv``."""
    for index, word in enumerate(argv[:4]):
        if os.path.basename(word) == "census-exporter":
            return list(argv[index + 1 :])
        if word == "-m" and index + 1 < len(argv) and argv[index + 1] == "census_exporter":
            return list(argv[index + 2 :])
    return None


def resolve_target(argv: Sequence[str], environ: Mapping[str, str]) -> Target:
    """The listener and web config the exporter resolves from ``argv`` and ``environ``, as it would."""
    parser = build_parser()
    try:
        args, _ = parser.parse_known_args(list(argv))
    except SystemExit:
        raise HealthcheckError("the exporter's command line does not parse") from None
    listen = _setting_text(parser, args, environ, "listen_address")
    try:
        host, port = parse_listen_address(listen) if listen is not None else _default_listen(parser)
    except ValueError as error:
        raise HealthcheckError(f"listen address: {error}") from None
    path = _setting_text(parser, args, environ, "web_config_file")
    web_config = None
    if path is not None:
        try:
            web_config = load_web_config(path)
        except WebConfigError as error:
            raise HealthcheckError(str(error)) from None
    return Target(_loopback(host), port, web_config)


def _setting_text(
    parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str], dest: str
) -> str | None:
    """A flag's text from the command line, else its environment variable (empty counts as unset)."""
    given = getattr(args, dest, None)
    if isinstance(given, list) and given:  # a repeatable flag: the first is asked
        given = given[0]
    if isinstance(given, str):
        return given
    for setting in getattr(parser, "settings", ()):
        if setting.dest == dest and environ.get(setting.env, "").strip():
            return environ[setting.env]
    return None


def _default_listen(parser: argparse.ArgumentParser) -> tuple[str, int]:
    for setting in getattr(parser, "settings", ()):
        if setting.dest == "listen_address":
            host, port = setting.default
            return str(host), int(port)
    raise HealthcheckError("the exporter's parser has no listen address")


def _loopback(host: str) -> str:
    """The address to ask: a wildcard listener is asked on loopback, a named one on its own address."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - recognising the wildcard, not binding to it
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def check(target: Target, environ: Mapping[str, str], timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """Ask ``/healthz``: (healthy, one line saying why)."""
    tls = target.web_config.tls if target.web_config is not None else None
    users = bool(target.web_config and target.web_config.users)
    where = f"{'https' if tls else 'http'}://{_authority(target)}/healthz"
    connection: http.client.HTTPConnection
    if tls is not None:
        context = _client_context(environ)
        if (
            tls.client_auth_type == "RequireAndVerifyClientCert"
            and not environ.get(CERT_FILE_ENV, "").strip()
        ):
            return _handshake(target, context, timeout, where)
        connection = http.client.HTTPSConnection(target.host, target.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.request("GET", "/healthz", headers={"Connection": "close"})
        response = connection.getresponse()
        status, authenticate = response.status, response.getheader("WWW-Authenticate", "")
        response.read(1024)
    except ssl.SSLError as error:
        return False, f"{where}: TLS failed: {error.reason or error}"
    except (OSError, http.client.HTTPException) as error:
        return False, f"{where}: {type(error).__name__}: {error}"
    finally:
        connection.close()
    if status == 200:
        return True, f"{where}: 200"
    if status == 401 and users and authenticate == REALM:
        return True, f"{where}: 401 from the exporter (basic auth is on; no credential is sent)"
    return False, f"{where}: HTTP {status}"


def _handshake(target: Target, context: ssl.SSLContext, timeout: float, where: str) -> tuple[bool, str]:
    """Mutual TLS without a client certificate: only whether the listener completes its side of TLS.

    In TLS 1.3 the server sends its certificate and Finished before it reads the client's (missing)
    certificate, so a completed client handshake shows the listener alive; a request would be refused.
    """
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=timeout) as raw,
            context.wrap_socket(raw) as wrapped,
        ):
            version = wrapped.version()
    except ssl.SSLError as error:
        return False, f"{where}: TLS failed: {error.reason or error}"
    except OSError as error:
        return False, f"{where}: {type(error).__name__}: {error}"
    return True, (
        f"{where}: the TLS listener completes a {version} handshake (mutual TLS: set {CERT_FILE_ENV} and "
        f"{KEY_FILE_ENV} to ask /healthz itself)"
    )


def _authority(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def _client_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Loopback to the container's own exporter: its certificate names the service, and nothing secret is sent.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    cert, key = environ.get(CERT_FILE_ENV, "").strip(), environ.get(KEY_FILE_ENV, "").strip()
    if cert:
        try:
            context.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as error:
            raise HealthcheckError(f"{CERT_FILE_ENV}: cannot load the client certificate: {error}") from None
    return context


def main(argv: Sequence[str] | None = None) -> int:
    """Check the exporter running as ``--pid`` (default 1); print one line; 0 healthy, 1 not."""
    parser = argparse.ArgumentParser(prog="census-exporter-healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, default=1, help="the exporter's process id (default 1)")
    options = parser.parse_args(argv)
    try:
        flags, environ = exporter_arguments(options.pid)
        healthy, line = check(resolve_target(flags, environ), os.environ)
    except HealthcheckError as error:
        healthy, line = False, str(error)
    print(("healthy: " if healthy else "unhealthy: ") + line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
