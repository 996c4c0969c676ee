"""Census API records as frozen dataclasses and the tolerant parsers that build them, one module per area.

The Census API has changed shape over the years (capitalised legacy statuses, ``mode`` versus the flat
``schedule_frequency`` fields, null labels, null counts on failed runs, new run statuses). Every parser
takes whatever JSON arrived and returns either a model or a :class:`~.fields.Skipped` with a reason; nothing
raises on bad input. :mod:`.fields` holds the checks every area shares; :mod:`.syncs`, :mod:`.runs`,
:mod:`.connections` (sources, destinations, activations) and :mod:`.organization` (workspaces, groups)
one area each.
"""
