"""Basic auth's cost over real HTTP: what a failed check costs, the verified-credential cache, the cap.

No timing assertions: each test counts bcrypt verifications (the exporter's own counter, and the real
``bcrypt.checkpw`` wrapped to record its calls) and the results the server gave.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml

from census_exporter import basic_auth
from tests.conftest import Harness, HarnessFactory, Scrape

PASSWORD = "correct horse battery staple"
CHEAP = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
DEARER = bcrypt.hashpw(b"other password", bcrypt.gensalt(rounds=6)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Checks:
    """The real checkpw, counting calls, the hashes' costs, and the most calls running at once."""

    def __init__(self) -> None:
        self.costs: list[int] = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()
        self._real = basic_auth.bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.costs.append(int(hashed[4:6]))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return self._real(password, hashed)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Checks:
    counting = Checks()
    monkeypatch.setattr(basic_auth.bcrypt, "checkpw", counting)
    return counting


def start(harness_factory: HarnessFactory, path: Path, users: dict[str, str]) -> Harness:
    path.write_text(yaml.safe_dump({"basic_auth_users": users}))
    return harness_factory(web_config_file=str(path))


def own(harness: Harness) -> Scrape:
    return harness.scrape(**basic("prometheus", PASSWORD))


def counts(scrape: Scrape) -> dict[str, float]:
    found = {
        dict(labels)["result"]: value
        for labels, value in scrape.all("census_exporter_basic_auth_checks_total").items()
    }
    found["verifications"] = scrape.value("census_exporter_basic_auth_password_verifications_total") or 0
    return found


def test_unknown_user_and_wrong_password_each_cost_one_verification_at_the_highest_cost(
    harness_factory: HarnessFactory, tmp_path: Path, checks: Checks
) -> None:
    harness = start(harness_factory, tmp_path / "web.yml", {"prometheus": CHEAP, "grafana": DEARER})
    for user, password in (("grafana", "wrong"), ("nobody", "wrong"), ("nobody", PASSWORD)):
        checks.costs.clear()
        response = harness.get("/metrics", **basic(user, password))
        assert response.status_code == 401
        assert checks.costs == [6], (user, checks.costs)  # one check; an unknown user's at the highest cost
    scrape = own(harness)
    assert counts(scrape)["failed"] == 3
    # The own scrape is the fourth verification; every failed request cost exactly one.
    assert counts(scrape)["verifications"] == 4
    assert harness.get("/metrics").status_code == 401
    assert counts(own(harness))["missing"] == 1


def test_a_repeated_valid_credential_is_served_from_the_cache_until_the_file_changes(
    harness_factory: HarnessFactory, tmp_path: Path, checks: Checks
) -> None:
    path = tmp_path / "web.yml"
    harness = start(harness_factory, path, {"prometheus": CHEAP})
    for _ in range(5):
        own(harness)
    assert len(checks.costs) == 1
    found = counts(own(harness))
    assert (found["verified"], found["cached"], found["verifications"]) == (1, 5, 1)
    # Another config in force empties the cache: the same credential is verified again, once.
    path.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": CHEAP, "grafana": DEARER}}))
    for _ in range(3):
        own(harness)
    assert len(checks.costs) == 2
    found = counts(own(harness))
    assert (found["verified"], found["verifications"]) == (2, 2)
    assert found["cached"] == 8  # every scrape but the two verified ones


def test_a_wrong_password_flood_never_runs_more_than_the_cap_and_cached_scrapes_pass(
    harness_factory: HarnessFactory, tmp_path: Path, checks: Checks
) -> None:
    # Cost 10 (tens of milliseconds a check): checks overlap, so the cap is what limits them.
    dear = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    harness = start(harness_factory, tmp_path / "web.yml", {"prometheus": dear})
    assert harness.get("/metrics", **basic("prometheus", PASSWORD)).status_code == 200  # now cached
    stop = threading.Event()
    flood_statuses: list[int] = []

    def flood() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                url = harness.base_url + "/metrics"
                flood_statuses.append(client.get(url, headers=basic("prometheus", "guess")).status_code)

    threads = [threading.Thread(target=flood) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        valid = [harness.get("/metrics", **basic("prometheus", PASSWORD)).status_code for _ in range(20)]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert valid == [200] * 20
    assert checks.most_running <= basic_auth.MAX_CONCURRENT_PASSWORD_CHECKS
    assert set(flood_statuses) <= {401, 429}
    found = counts(own(harness))
    assert found["busy"] == flood_statuses.count(429) > 0
    assert found["failed"] == flood_statuses.count(401)
    # Only checked requests ran bcrypt: the busy ones cost none.
    assert found["verifications"] == found["failed"] + found["verified"] == len(checks.costs)
    assert found["cached"] >= 20
