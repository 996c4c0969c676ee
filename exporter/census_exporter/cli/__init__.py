"""The command line: flags (each with an environment variable) -> Config -> a running Exporter.

One job a module, in the order a start goes through them:

- :mod:`~census_exporter.cli.parser`: argparse with an environment variable per flag, one-line usage errors;
- :mod:`~census_exporter.cli.values`: converters of this exporter's flag values (the general ones are in
  :mod:`census_exporter.converters`, shared with the demo);
- :mod:`~census_exporter.cli.census_flags` and :mod:`~census_exporter.cli.serving_flags`: the flag table;
- :mod:`~census_exporter.cli.flags`: the whole parser, the end of --help and the docs' flag table;
- :mod:`~census_exporter.cli.tokens`: the API token and webhook secrets, which have no flag;
- :mod:`~census_exporter.cli.workspaces_file`: a workspaces file into workspaces and discoveries;
- :mod:`~census_exporter.cli.assembly`: flags and environment into a Config (``parse_config``);
- :mod:`~census_exporter.cli.api_versions`: the V1 retirement and EU V2 notices logged at start;
- :mod:`~census_exporter.cli.reload`: SIGHUP;
- :mod:`~census_exporter.cli.main`: start-up and the signal loop (``main``, the console entry point).
"""
