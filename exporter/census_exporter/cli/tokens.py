"""The secrets of the workspace the flags describe: the API token and the webhook secrets.

Neither has a flag of its own (argv is public): the token comes from CENSUS_API_TOKEN or
--census.token-file, the webhook secrets from --web.webhook-secret-file or CENSUS_EXPORTER_WEBHOOK_SECRET.
Each is read at start, so a missing one stops the exporter (exit 2) instead of failing every refresh.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from census_exporter.cli.parser import Parser
from census_exporter.config import EmptyTokenError, TokenError, TokenSource

TOKEN_ENV = "CENSUS_API_TOKEN"  # noqa: S105 - the variable's name, not a token
#: The single workspace's webhook secret, when it does not come from a file (never a flag: argv is public).
WEBHOOK_SECRET_ENV = "CENSUS_EXPORTER_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
WEBHOOKS_DOC = "docs/webhooks.md"
SECRET_FILE_FLAG = "argument --web.webhook-secret-file (env CENSUS_EXPORTER_WEB_WEBHOOK_SECRET_FILE)"  # noqa: S105


def flag_token(parser: Parser, args: argparse.Namespace, environ: Mapping[str, str]) -> TokenSource:
    """The token source; exits 2 saying which source is missing, empty or unreadable."""
    if args.token_file:
        token = TokenSource(path=args.token_file)
        try:
            token()
        except EmptyTokenError:
            if not args.demo:
                parser.error(f"token file {args.token_file} is empty (--census.token-file)")
        except TokenError as error:
            parser.error(f"argument --census.token-file (env CENSUS_API_TOKEN_FILE): {error}")
        return token
    raw = environ.get(TOKEN_ENV)
    try:
        token = TokenSource(value=raw)
    except TokenError as error:
        parser.error(f"{TOKEN_ENV}: {error}")
    if not args.demo and not token():
        # An empty variable counts as unset, as every other one does (a secret whose key is missing often
        # renders as one): the same error, saying that the variable was there but empty.
        empty = "" if raw is None else f"; {TOKEN_ENV} is set but empty, which counts as unset"
        parser.error(
            f"no API token: set {TOKEN_ENV} or --census.token-file, or give --config.file "
            f"(or use --demo){empty}"
        )
    return token


def flag_webhook_secrets(
    parser: Parser, args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[TokenSource, ...]:
    """The single workspace's webhook secrets, read now, so a missing one stops the start (exit 2)."""
    sources: list[TokenSource] = []
    for path in args.webhook_secret_files or ():
        source = TokenSource(path=path)
        try:
            value = source()
        except TokenError as error:
            message = str(error).replace("token file", "webhook secret file")
            parser.error(f"{SECRET_FILE_FLAG}: {message}", WEBHOOKS_DOC)
        if not value:
            parser.error(f"{SECRET_FILE_FLAG}: {path} is empty", WEBHOOKS_DOC)
        sources.append(source)
    raw = environ.get(WEBHOOK_SECRET_ENV, "")
    if raw.strip():
        try:
            sources.append(TokenSource(value=raw))
        except TokenError:
            parser.error(f"{WEBHOOK_SECRET_ENV}: the secret contains characters that are not printable ASCII")
    return tuple(sources)
