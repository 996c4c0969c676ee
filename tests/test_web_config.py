"""--web.config.file: TLS, mutual TLS and basic auth with real TLS clients, rotation, and invalid files.

Certificates (a CA, server, client, an expired one, another CA) are made at test time with `cryptography`.
"""

from __future__ import annotations

import base64
import datetime
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from census_exporter import basic_auth
from census_exporter.web_config import WebConfigError, load_web_config
from tests.conftest import Harness, HarnessFactory, require_tool, wait_for

PASSWORD = "correct horse battery staple"
# Cost 4: the tests check the protocol, not bcrypt's strength.
PASSWORD_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@dataclass
class Issuer:
    """A CA: its key and certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(key, cert)


def issue(
    issuer: Issuer, directory: Path, stem: str, *, client: bool = False, expired: bool = False
) -> tuple[Path, Path]:
    """A leaf certificate and key signed by ``issuer``, written as PEM files."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    if not client:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer.key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    _replace(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _replace(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert_path, key_path


def _replace(path: Path, data: bytes) -> None:
    """Write atomically, as a Kubernetes Secret volume or cert-manager does (a new inode each time)."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_ca(issuer: Issuer, path: Path) -> Path:
    path.write_bytes(issuer.cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class Pki:
    directory: Path
    ca: Issuer
    ca_file: Path
    other_ca: Issuer
    server_cert: Path
    server_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca("census test CA")
    server_cert, server_key = issue(ca, tmp_path, "server")
    return Pki(tmp_path, ca, write_ca(ca, tmp_path / "ca.crt"), make_ca("other CA"), server_cert, server_key)


def write_web_config(path: Path, document: dict[str, Any]) -> Path:
    _replace(path, yaml.safe_dump(document).encode())
    return path


def tls_section(pki: Pki, **extra: str) -> dict[str, str]:
    return {"cert_file": "server.crt", "key_file": "server.key", **extra}


def client_context(pki: Pki, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


StartExporter = Callable[[dict[str, Any]], Harness]


@pytest.fixture
def start_exporter(harness_factory: HarnessFactory, pki: Pki) -> StartExporter:
    def start(document: dict[str, Any]) -> Harness:
        path = write_web_config(pki.directory / "web.yml", document)
        return harness_factory(web_config_file=str(path))

    return start


def https(harness: Harness, path: str = "/healthz") -> str:
    return f"https://127.0.0.1:{harness.exporter.port}{path}"


# ------------------------------------------------------------------ TLS


def test_tls_serves_https_and_plain_http_fails_cleanly(pki: Pki, start_exporter: StartExporter) -> None:
    harness = start_exporter({"tls_server_config": tls_section(pki)})
    assert httpx.get(https(harness), verify=client_context(pki), timeout=10).text == "ok\n"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{harness.exporter.port}/healthz", timeout=10)
    # The server shrugged the plain-HTTP client off and keeps serving.
    response = httpx.get(https(harness, "/metrics"), verify=client_context(pki), timeout=10)
    assert response.status_code == 200


def test_openssl_s_client_verifies_the_chain(pki: Pki, start_exporter: StartExporter) -> None:
    openssl = require_tool("openssl")
    harness = start_exporter({"tls_server_config": tls_section(pki)})
    result = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{harness.exporter.port}",
            "-CAfile",
            str(pki.ca_file),
            "-verify_return_error",
        ],
        input="",
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verify return code: 0 (ok)" in result.stdout


def test_mutual_tls_requires_a_client_certificate_from_the_configured_ca(
    pki: Pki, start_exporter: StartExporter
) -> None:
    good_client = issue(pki.ca, pki.directory, "prometheus", client=True)
    foreign_client = issue(pki.other_ca, pki.directory, "intruder", client=True)
    harness = start_exporter(
        {
            "tls_server_config": tls_section(
                pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.crt"
            )
        }
    )
    with pytest.raises(httpx.TransportError):
        httpx.get(https(harness), verify=client_context(pki), timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(https(harness), verify=client_context(pki, foreign_client), timeout=10)
    response = httpx.get(https(harness), verify=client_context(pki, good_client), timeout=10)
    assert response.status_code == 200


def test_relaxing_mutual_tls_waits_for_the_settle_period(pki: Pki, start_exporter: StartExporter) -> None:
    good_client = issue(pki.ca, pki.directory, "prometheus", client=True)
    harness = start_exporter(
        {
            "tls_server_config": tls_section(
                pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.crt"
            )
        }
    )
    source = harness.exporter.http.web_config
    assert source is not None
    write_web_config(pki.directory / "web.yml", {"tls_server_config": tls_section(pki, min_version="TLS12")})
    for _ in range(3):  # each new connection looks at the file; none may get in without a certificate
        with pytest.raises(httpx.TransportError):
            httpx.get(https(harness), verify=client_context(pki), timeout=10)
    assert source.weakening_pending
    assert source.reloads["weakening_deferred"] == 1
    response = httpx.get(https(harness), verify=client_context(pki, good_client), timeout=10)
    assert response.status_code == 200


def test_an_expired_server_certificate_is_rejected_by_the_client(
    pki: Pki, start_exporter: StartExporter
) -> None:
    issue(pki.ca, pki.directory, "expired", expired=True)
    harness = start_exporter({"tls_server_config": {"cert_file": "expired.crt", "key_file": "expired.key"}})
    with pytest.raises(httpx.ConnectError, match="expired"):
        httpx.get(https(harness), verify=client_context(pki), timeout=10)


def test_min_version_tls13_refuses_a_tls12_only_client(pki: Pki, start_exporter: StartExporter) -> None:
    harness = start_exporter({"tls_server_config": tls_section(pki, min_version="TLS13")})
    old_client = client_context(pki)
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError):
        httpx.get(https(harness), verify=old_client, timeout=10)
    assert httpx.get(https(harness), verify=client_context(pki), timeout=10).status_code == 200


def test_a_rotated_certificate_is_served_on_the_next_connection(
    pki: Pki, start_exporter: StartExporter
) -> None:
    harness = start_exporter({"tls_server_config": tls_section(pki)})

    def served_serial() -> int:
        with (
            httpx.Client(verify=client_context(pki), timeout=10) as client,
            client.stream("GET", https(harness)) as response,
        ):
            ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
            der = ssl_object.getpeercert(True)
        return x509.load_der_x509_certificate(der).serial_number

    before = served_serial()
    issue(pki.ca, pki.directory, "server")  # cert-manager renews: new files, same names
    after = x509.load_pem_x509_certificate(pki.server_cert.read_bytes()).serial_number
    assert after != before
    assert served_serial() == after


# ------------------------------------------------------------------ basic auth


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth_protects_every_endpoint(
    pki: Pki, start_exporter: StartExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bytes] = []
    real_checkpw = basic_auth.bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        checks.append(password)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(basic_auth.bcrypt, "checkpw", counting_checkpw)
    harness = start_exporter({"basic_auth_users": {"prometheus": PASSWORD_HASH}})
    for path in ("/", "/metrics", "/healthz", "/readyz"):
        response = harness.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = harness.get("/metrics", **_basic("prometheus", "wrong password"))
    assert wrong.status_code == 401
    assert harness.get("/metrics", **_basic("nobody", PASSWORD)).status_code == 401
    checks.clear()
    for _ in range(3):
        assert harness.get("/metrics", **_basic("prometheus", PASSWORD)).status_code == 200
    assert len(checks) == 1, "bcrypt must run once per credential, not once per scrape"


def test_basic_auth_over_tls_and_a_changed_password_applies_without_restart(
    pki: Pki, start_exporter: StartExporter
) -> None:
    harness = start_exporter(
        {"tls_server_config": tls_section(pki), "basic_auth_users": {"prometheus": PASSWORD_HASH}}
    )
    with httpx.Client(verify=client_context(pki), timeout=10) as client:
        assert client.get(https(harness), headers=_basic("prometheus", PASSWORD)).status_code == 200
        new_hash = bcrypt.hashpw(b"rotated", bcrypt.gensalt(rounds=4)).decode()
        write_web_config(
            pki.directory / "web.yml",
            {"tls_server_config": tls_section(pki), "basic_auth_users": {"prometheus": new_hash}},
        )
        wait_for(
            lambda: client.get(https(harness), headers=_basic("prometheus", PASSWORD)).status_code == 401,
            what="the old password to stop working",
        )
        assert client.get(https(harness), headers=_basic("prometheus", "rotated")).status_code == 200


# ------------------------------------------------------------------ invalid files


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"tls_server_config": {"cert_file": "server.crt"}}, "tls_server_config.key_file"),
        ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "ca": "x"}}, "ca"),
        ({"basic_auth_user": {}}, "basic_auth_user"),
        ({"basic_auth_users": {"prometheus": "plain-text"}}, "basic_auth_users.prometheus"),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "min_version": "SSL3",
                }
            },
            "min_version",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            "client_ca_file",
        ),
        ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "server.key"}}, "tls_server_config"),
    ],
)
def test_an_invalid_web_config_names_the_field(pki: Pki, document: dict[str, Any], field: str) -> None:
    path = write_web_config(pki.directory / "web.yml", document)
    with pytest.raises(WebConfigError) as raised:
        load_web_config(path)
    assert str(path) in str(raised.value)
    assert field in str(raised.value)


def test_an_invalid_web_config_refuses_to_start_with_one_line(pki: Pki) -> None:
    path = write_web_config(pki.directory / "web.yml", {"tls_server_config": {"cert_file": "server.crt"}})
    result = subprocess.run(
        [sys.executable, "-m", "census_exporter", "--demo", "--web.config.file", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--web.config.file" in lines[0] and str(path) in lines[0] and "key_file" in lines[0]


def test_a_broken_rotation_keeps_the_previous_config(pki: Pki, start_exporter: StartExporter) -> None:
    harness = start_exporter({"basic_auth_users": {"prometheus": PASSWORD_HASH}})
    assert harness.get("/healthz", **_basic("prometheus", PASSWORD)).status_code == 200
    (pki.directory / "web.yml").write_text("basic_auth_users: [not, a, mapping]\n")
    assert harness.get("/healthz").status_code == 401  # still protected
    assert harness.get("/healthz", **_basic("prometheus", PASSWORD)).status_code == 200
