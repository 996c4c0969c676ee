"""The Census webhook receiver: its own listener, verification, a bounded queue, and the announcements it
hands the refresher (:mod:`census_exporter.refresh.announcements`). docs/webhooks.md describes it.

``signature`` verifies ``X-Signature``; ``events`` parses a verified body; ``intake`` holds the rate limiter,
the duplicate memory and the queue; ``app`` is the WSGI app; ``metrics`` renders its metrics; ``receiver``
wires them to a listener.
"""
