"""The per-source rate limit of refused webhook requests: an IPv6 source is its /64 (rotating addresses in
one's own /64 does not dodge the limit, nor push every other source out of the table), an IPv4 client of a
dual-stack listener its IPv4 address. Over real HTTP on loopback (only ::1 there: the /64 keying itself is
tested on the limiter)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from census_exporter.exporter import WebhookListenError
from census_exporter.webhooks.intake import RateLimiter, source_key
from tests.conftest import Harness
from tests.webhook_harness import WORKSPACE, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-rate-19fe"
#: A refused request a second, bursts of 2: a quick flood is refused 429 after its first two.
RATE = 1.0


def test_an_ipv6_source_is_its_64_and_an_ipv4_mapped_one_its_ipv4_address() -> None:
    assert source_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("::1") == "::/64"
    # Not the /64 of ::ffff:0:0/96, which would put every IPv4 client of a dual-stack listener in one bucket.
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7" == source_key("192.0.2.7")
    assert source_key("::ffff:192.0.2.8") != source_key("::ffff:192.0.2.7")
    assert source_key("") == "" and source_key("not an address") == "not an address"


def test_rotating_addresses_in_one_64_shares_one_bucket_and_keeps_the_others() -> None:
    now = [0.0]
    limiter = RateLimiter(RATE, 2 * RATE, clock=lambda: now[0], size=16)
    assert limiter.allows("2001:db8:ffff::1") and limiter.allows("198.51.100.1")
    # A sender with a /64 tries a new address for each request, far more than the table holds.
    allowed = [limiter.allows(f"2001:db8:0:1::{n:x}") for n in range(1, 5000)]
    assert allowed[:2] == [True, True] and not any(allowed[2:])
    # The other sources were not pushed out of the table (their bucket is as they left it).
    assert limiter.allows("2001:db8:ffff::2") and not limiter.allows("2001:db8:ffff::3")
    assert limiter.allows("198.51.100.1") and not limiter.allows("::ffff:198.51.100.1")
    now[0] += 1.0  # a token back a second
    assert limiter.allows("2001:db8:0:1:abcd::1") and not limiter.allows("2001:db8:0:1:abcd::2")


def _receiving(harness_factory: Callable[..., Harness], host: str) -> Harness:
    try:
        return start_receiving(
            harness_factory,
            workspace_with_syncs(1),
            SECRET,
            cache_ttl=3600.0,
            webhook_listen=(host, 0),
            webhook_max_requests_per_second=RATE,
        )
    except WebhookListenError as error:
        pytest.skip(f"cannot listen on {host}: {error.strerror}")


def _flood(url: str, count: int, **transport: str) -> list[int]:
    """``count`` unsigned deliveries (each refused 401, or 429 once the source's tokens are spent)."""
    body = webhook_event(1, 7)
    with httpx.Client(transport=httpx.HTTPTransport(**transport), timeout=10) as client:
        return [client.post(url, json=body).status_code for _ in range(count)]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_refused_requests_over_ipv6_are_limited(harness_factory: Callable[..., Harness]) -> None:
    harness = _receiving(harness_factory, "::1")
    assert harness.exporter.webhooks is not None
    url = f"http://[::1]:{harness.exporter.webhooks.port}/webhooks/census/{WORKSPACE}"
    flood = _flood(url, 10)
    # The burst, then 429: a second may pass while the flood runs (one token back), not more.
    assert flood[:2] == [401, 401] and flood[-1] == 429 and flood.count(429) >= 6, flood
    refused = harness.scrape().value(
        "census_webhook_requests_total", workspace=WORKSPACE, result="rate_limited"
    )
    assert refused == flood.count(429)


def test_ipv4_clients_of_a_dual_stack_listener_are_limited_per_ipv4_address(
    harness_factory: Callable[..., Harness],
) -> None:
    # An IPv6 socket bound to the IPv4-mapped loopback: its clients' addresses are ::ffff:127.0.0.x.
    harness = _receiving(harness_factory, "::ffff:127.0.0.1")
    assert harness.exporter.webhooks is not None
    url = f"http://127.0.0.1:{harness.exporter.webhooks.port}/webhooks/census/{WORKSPACE}"
    flood = _flood(url, 10, local_address="127.0.0.1")
    assert flood[:2] == [401, 401] and flood[-1] == 429, flood
    # Another IPv4 client has its own bucket (the /64 of ::ffff:127.0.0.x would have been the same one).
    assert _flood(url, 2, local_address="127.0.0.2") == [401, 401]
