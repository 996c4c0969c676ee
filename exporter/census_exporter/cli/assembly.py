"""Flags and environment into a Config: the single workspace the flags describe, or a workspaces file.

Exits 2 with one line naming the flag on bad input, before anything starts.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence

from census_exporter.census.client import default_api_url
from census_exporter.cli.flags import build_parser
from census_exporter.cli.parser import Parser
from census_exporter.cli.tokens import (
    SECRET_FILE_FLAG,
    WEBHOOK_SECRET_ENV,
    WEBHOOKS_DOC,
    flag_token,
    flag_webhook_secrets,
)
from census_exporter.cli.workspaces_file import from_workspaces_file
from census_exporter.config import Config, Discovery, Exposition


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment into a Config; exits 2 with one line naming the flag on bad input."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.resolve(argv, environ)
    if len(set(args.listen_address)) < len(args.listen_address):
        parser.error(
            "argument --web.listen-address (env CENSUS_EXPORTER_WEB_LISTEN_ADDRESS): "
            "an address is given twice"
        )
    (host, port), *more_addresses = args.listen_address
    common = {
        "cache_ttl_seconds": args.cache_ttl,
        "concurrency": args.concurrency,
        "request_timeout_seconds": args.request_timeout,
        "refresh_timeout_seconds": args.refresh_timeout,
        "max_requests_per_second": args.max_requests_per_second,
        "max_response_bytes": args.max_response_bytes,
        "max_syncs_per_workspace": args.max_syncs_per_workspace,
        "max_syncs": args.max_syncs,
        "max_workspaces_per_discovery": args.max_workspaces_per_discovery,
        "max_workspaces": args.max_workspaces,
        "refresh_workers": args.refresh_workers,
        "listen_host": host,
        "listen_port": port,
        "more_listen_addresses": tuple(more_addresses),
        "telemetry_path": args.telemetry_path,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "duration_buckets": args.duration_buckets,
        "exposition": Exposition(
            duration_histogram=args.duration_histogram,
            record_totals=args.record_totals,
            run_details=args.run_details,
        ),
        "demo": args.demo,
        "demo_seed": args.demo_seed,
        "demo_syncs": args.demo_syncs,
        "web_config_file": args.web_config_file,
        "notices": tuple(parser.warnings),
        "web_config_settle_seconds": args.web_config_settle,
        "webhook_listen": args.webhook_listen_address,
        "webhook_reconcile_interval_seconds": args.webhook_reconcile_interval,
        "webhook_max_requests_per_second": args.webhook_max_requests_per_second,
        "storage_path": args.storage_path,
    }
    if args.config_file is not None:
        if "webhook_secret_files" in parser.given:
            parser.error(
                f"{SECRET_FILE_FLAG}: not allowed together with --config.file (each "
                "workspace names its webhook_secret_file)"
            )
        config = from_workspaces_file(parser, args, environ, common)
        return _checked_webhooks(parser, config)
    if args.api_url and args.region:
        parser.error("argument --census.api-url: not allowed together with --census.region")
    _check_dialect(parser, args)
    api_url = args.api_url or default_api_url(args.api_version, args.region)
    token = flag_token(parser, args, environ)
    if args.api_version == "v2" and not args.group_id and not args.demo:
        # No group named: watch every group the PAT sees, each under its own `workspace` label.
        every_group = Discovery(
            name=api_url, api_url=api_url, token=token, api_version="v2", unscoped_name=args.workspace
        )
        config = Config(
            api_url=api_url,
            token=token,
            workspace=args.workspace,
            api_version="v2",
            discoveries=(every_group,),
            **common,
        )
        return _checked_webhooks(parser, config)
    config = Config(
        api_url=api_url,
        token=token,
        workspace=args.workspace,
        api_version=args.api_version,
        group_id=args.group_id,
        webhook_secrets=flag_webhook_secrets(parser, args, environ),
        **common,
    )
    return _checked_webhooks(parser, config)


def _checked_webhooks(parser: Parser, config: Config) -> Config:
    """Exit 2 when the receiver is asked for without any secret; a note when secrets go unused."""
    with_secrets = [w.name for w in config.watched() if w.webhook_secrets]
    if config.webhook_listen is not None and not with_secrets and not config.demo:
        parser.error(
            "argument --web.webhook-listen-address (env CENSUS_EXPORTER_WEB_WEBHOOK_LISTEN_ADDRESS): no "
            "workspace has a webhook secret "
            f"(--web.webhook-secret-file, {WEBHOOK_SECRET_ENV} or webhook_secret_file in --config.file)",
            WEBHOOKS_DOC,
        )
    if config.webhook_listen is None and with_secrets:
        from dataclasses import replace  # noqa: PLC0415

        note = (
            f"webhook secrets are set for {', '.join(with_secrets)} but --web.webhook-listen-address is "
            "off: no webhook is received"
        )
        return replace(config, notices=(*config.notices, note))
    return config


def _check_dialect(parser: Parser, args: argparse.Namespace) -> None:
    """Exit 2 when --census.group-id or --census.api-url does not fit --census.api-version.

    V2 without --census.group-id is allowed: every group the token sees is watched (parse_config)."""
    if args.api_version == "v1" and args.group_id:
        parser.error(
            "argument --census.group-id (env CENSUS_GROUP_ID): only valid with --census.api-version v2"
        )
    found = re.search(r"/api/(v\d+)/*$", args.api_url or "")
    if found and found.group(1) != args.api_version:
        parser.error(
            f"argument --census.api-url (env CENSUS_API_URL): ends in /api/{found.group(1)} but "
            f"--census.api-version is {args.api_version}"
        )
