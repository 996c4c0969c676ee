"""The exporter's HTTP side, one job per module.

:mod:`.server` (the server: listeners per address, start and stop) on :mod:`.cheroot_adapter` (the cheroot
subclasses, with the listener's limits; those writing answers in :mod:`.cheroot_writer`) and :mod:`.tls`;
:mod:`.guard` (bodies, basic auth, failures); :mod:`.scrape` (the WSGI app and the scrape budget),
:mod:`.negotiation` and :mod:`.view_cache`; :mod:`.request_body` (body framing) and :mod:`.wsgi` (shared types
and environ keys).
"""
