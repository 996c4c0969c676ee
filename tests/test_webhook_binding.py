"""What binds a signed event to a workspace, over real HTTP: the path and the workspace's secret always; with
API V2 also the body's ``group_id``, which must be the group the workspace watches (else 422, and nothing
changes). A V1 workspace named in the file has no Census id the exporter knows, so its ``workspace_id`` is
not compared."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from census_exporter.config import TokenSource
from census_exporter.demo import SimulatedOrganization, SimulatedWorkspace
from census_exporter.demo.organization import base_url
from census_exporter.webhooks.events import WebhookEvent, parse_event
from census_exporter.webhooks.intake import WebhookTarget
from census_exporter.webhooks.signature import WebhookSecrets
from tests.conftest import Harness, Scrape, wait_for
from tests.webhook_harness import WORKSPACE, deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-binding-40d7"
PAT = "secret-token:binding-organization"
GROUP = "decent_dropsy"
OTHER_GROUP = "glimmering_donkey"


@pytest.fixture
def v2_workspace() -> Iterator[tuple[SimulatedWorkspace, str]]:
    """Syncs 1 and 2 in the V2 group GROUP of a simulated organization, and the API's base URL."""
    organization = SimulatedOrganization(pat=PAT)
    workspace = workspace_with_syncs(2)
    organization.add_workspace("binding", group_id=GROUP, workspace=workspace)
    server = organization.serve()
    try:
        yield workspace, base_url(server, "v2")
    finally:
        server.close()


def _requests(scrape: Scrape, result: str) -> float | None:
    return scrape.value("census_webhook_requests_total", workspace=WORKSPACE, result=result)


def test_a_v2_event_about_another_group_changes_nothing_and_is_answered_422(
    harness_factory: Callable[..., Harness],
    v2_workspace: tuple[SimulatedWorkspace, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    workspace, api_url = v2_workspace
    harness = start_receiving(
        harness_factory,
        workspace,
        SECRET,
        cache_ttl=3600.0,
        api_url=api_url,
        api_version="v2",
        group_id=GROUP,
        token=PAT,
    )
    assert len(harness.scrape().all("census_sync_info")) == 2  # the group is watched
    run = workspace.add_run(1, "failed")
    event = webhook_event(1, int(run["id"]))
    # Signed with this workspace's secret, but about another group: a Census webhook of that group posting
    # to this workspace's path.
    with caplog.at_level(logging.WARNING, logger="census_exporter.webhooks"):
        for _ in range(3):
            response = deliver(harness, event | {"group_id": OTHER_GROUP}, secret=SECRET)
            assert response.status_code == 422
            assert response.text == "the event is about another Census workspace\n"
    scrape = harness.scrape()
    assert _requests(scrape, "wrong_workspace") == 3
    # Not taken: no event counted, nothing heard, nothing remembered.
    assert scrape.value("census_webhook_events_total", workspace=WORKSPACE, event="sync.failed") == 0
    assert scrape.value("census_webhook_last_event_timestamp_seconds", workspace=WORKSPACE) is None
    said = [r.getMessage() for r in caplog.records if "refused (422)" in r.getMessage()]
    assert said == [
        f"webhook for workspace {WORKSPACE} refused (422): signed with its secret, but the event's group_id "
        f"is not {GROUP}: is the Census webhook posting to /webhooks/census/{WORKSPACE} another workspace's?"
    ]
    assert all(OTHER_GROUP not in r.getMessage() for r in caplog.records)  # nothing of the body
    # The same event about this group is new (the refused one was not remembered), and read at once.
    assert deliver(harness, event | {"group_id": GROUP}, secret=SECRET).status_code == 202
    wait_for(
        lambda: harness.scrape().value("census_sync_runs_total", sync_id="1", status="failed") == 1,
        what="the failure, read for the event about this group",
    )
    # Without a group_id (the path and the secret bind it), an event is taken too.
    second = workspace.add_run(2, "failed")
    assert deliver(harness, webhook_event(2, int(second["id"])), secret=SECRET).status_code == 202
    wait_for(lambda: harness.scrape().value("census_sync_runs_total", sync_id="2", status="failed") == 1)
    assert _requests(harness.scrape(), "accepted") == 2


def test_a_v1_workspace_takes_any_workspace_id_since_the_exporter_knows_none(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = workspace_with_syncs(1)
    harness = start_receiving(harness_factory, workspace, SECRET, cache_ttl=3600.0)
    run = workspace.add_run(1, "failed")
    # A workspace named in the file (or by the flags) is reached with its API key alone: no call tells the
    # exporter its Census id, so the path and the per-workspace secret are what bind the event to it.
    response = deliver(harness, webhook_event(1, int(run["id"]), workspace_id=987654), secret=SECRET)
    assert response.status_code == 202
    wait_for(lambda: harness.scrape().value("census_sync_runs_total", sync_id="1", status="failed") == 1)
    assert _requests(harness.scrape(), "wrong_workspace") == 0


def _event(body: str) -> WebhookEvent:
    return parse_event(body.encode())


def test_only_ids_both_the_target_and_the_event_have_are_compared() -> None:
    secrets = WebhookSecrets([TokenSource(value=SECRET)])
    unknown = WebhookTarget("w", secrets, None, None)  # type: ignore[arg-type]
    v1 = WebhookTarget("w", secrets, None, None, census_workspace_id=3167)  # type: ignore[arg-type]
    v2 = WebhookTarget("w", secrets, None, None, census_group_id=GROUP)  # type: ignore[arg-type]
    base = '"event": "sync.failed", "sync_id": 1, "sync_run_id": 2'
    assert unknown.names_another(_event(f'{{{base}, "workspace_id": 1, "group_id": "x"}}')) is None
    assert v1.names_another(_event(f'{{{base}, "workspace_id": 3167}}')) is None
    assert v1.names_another(_event(f'{{{base}, "workspace_id": "3168"}}')) == "workspace_id is not 3167"
    assert v1.names_another(_event(f"{{{base}}}")) is None
    assert v2.names_another(_event(f'{{{base}, "group_id": "{GROUP}", "workspace_id": 1}}')) is None
    assert v2.names_another(_event(f'{{{base}, "group_id": "x"}}')) == f"group_id is not {GROUP}"
    assert v2.names_another(_event(f"{{{base}}}")) is None
    with pytest.raises(ValueError, match="group_id"):
        _event(f'{{{base}, "group_id": ["{GROUP}"]}}')
