"""A token the Census API echoes back never reaches /metrics (either format) or the landing page."""

from __future__ import annotations

from pathlib import Path

from census_exporter.config import Exposition, TokenSource
from census_exporter.demo import SimulatedWorkspace
from census_exporter.redaction import REDACTED
from tests.conftest import TEST_TOKEN, HarnessFactory

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def hostile_workspace(secret: str) -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    workspace.add_source(7, f"warehouse {secret}", kind=secret)
    workspace.add_destination(8, f"{secret}-crm")
    workspace.add_sync(
        1, label=f"echo {secret} back", source_id=7, destination_id=8, destination_object=secret
    )
    # Split by a control character, which cleaning removes: the token must not come back whole.
    workspace.add_sync(2, label=secret[:5] + "\x00" + secret[5:], source_id=7, destination_id=8)
    workspace.add_run(1, "failed", error_code=secret, error_message=f"bad credentials {secret}")
    workspace.add_run(2, "completed")
    return workspace


def test_an_echoed_token_is_absent_from_every_page(harness_factory: HarnessFactory) -> None:
    harness = harness_factory(hostile_workspace(TEST_TOKEN), exposition=Exposition.everything())
    harness.refresh()
    pages = {
        "text": harness.get("/metrics"),
        "openmetrics": harness.get("/metrics", Accept=OPENMETRICS),
        "gzip": harness.get("/metrics", **{"Accept-Encoding": "gzip"}),
        "landing": harness.get("/"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert TEST_TOKEN not in response.text, name
        assert REDACTED in response.text, name  # the text is there, only the token is gone
    assert pages["gzip"].headers["Content-Encoding"] == "gzip"  # httpx decoded it for the check above
    scrape = harness.scrape()
    assert scrape.value("census_up", workspace="default") == 1
    labels = {value for (name, labels) in scrape.samples for key, value in labels}
    assert f"echo {REDACTED} back" in labels
    assert REDACTED in labels  # the sync whose label was the token split by a NUL


def test_a_token_read_from_a_file_is_redacted_too(harness_factory: HarnessFactory, tmp_path: Path) -> None:
    rotated = "secret-token:rotated-9c2e41d07a"
    token_file = tmp_path / "token"
    token_file.write_text(rotated)
    harness = harness_factory(
        hostile_workspace(rotated), token_source=TokenSource(path=str(token_file)), simulator_token=rotated
    )
    harness.refresh()
    for response in (harness.get("/metrics"), harness.get("/metrics", Accept=OPENMETRICS), harness.get("/")):
        assert response.status_code == 200
        assert rotated not in response.text
