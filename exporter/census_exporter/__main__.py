"""Allow ``python -m census_exporter``."""

from census_exporter.cli import main

raise SystemExit(main())
