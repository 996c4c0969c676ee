"""Allow ``python -m census_exporter``."""

from census_exporter.cli.main import main

raise SystemExit(main())
