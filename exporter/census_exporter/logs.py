"""Logging in logfmt or JSON, one line per event, with the API token redacted as a last line of defence.

The code never formats the token into a message; :class:`RedactingFilter` still replaces any secret
registered in :mod:`census_exporter.redaction` that reaches a record (an exception message from a library,
say) with ``[REDACTED]``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import Context, ContextVar, copy_context

from census_exporter import redaction
from census_exporter.redaction import MAX_REDACTED_SECRETS, REDACTED

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
#: Other spellings users bring from other tools.
LEVEL_ALIASES = {"warning": "warn"}
__all__ = ["MAX_REDACTED_SECRETS", "REDACTED", "RedactingFilter"]

#: The workspace whose refresh is logging, if any: every line it logs carries ``workspace=<name>``.
#: Set for a refresh's threads (the worker pool carries it into each task), so no message repeats it.
CURRENT_WORKSPACE: ContextVar[str | None] = ContextVar("census_workspace", default=None)


def workspace_context(workspace: str) -> Context:
    """A context whose log lines carry ``workspace``; one per thread (a context runs in one at once)."""
    context = copy_context()
    context.run(CURRENT_WORKSPACE.set, workspace)
    return context


class WorkspaceField(logging.Filter):
    """Stamps each record with the workspace being refreshed when it was logged (``record.workspace``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the field; never drops a record."""
        if not hasattr(record, "workspace"):
            record.workspace = CURRENT_WORKSPACE.get()
        return True


def parse_level(text: str) -> str:
    """The canonical name of a log level, case-insensitive (``INFO``, ``Warning``); ValueError if unknown."""
    name = text.strip().lower()
    name = LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LEVELS)}")
    return name


class RedactingFilter(logging.Filter):
    """Replaces every registered secret in a record's rendered message."""

    @staticmethod
    def register(secret: str) -> None:
        """Redact ``secret`` from now on, in logs and in API text (:func:`.redaction.register`)."""
        redaction.register(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message, scrub it, and freeze the result into the record."""
        if not redaction.SECRETS.secrets:
            return True
        message = record.getMessage()
        text = redaction.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are rendered later by the formatter; scrub the exception text now.
            record.exc_text = redaction.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if text != message or record.args:
            record.msg, record.args = text, None
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{int(record.msecs):03d}Z"


def _level(record: logging.LogRecord) -> str:
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


class _FieldsFormatter(logging.Formatter):
    """The fields every line carries; subclasses choose the encoding."""

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        """ts, level, logger, workspace (in a refresh), msg, and the exception text when there is one."""
        fields = {
            "ts": _timestamp(record),
            "level": _level(record),
            "logger": record.name,
        }
        workspace = getattr(record, "workspace", None)
        if isinstance(workspace, str):
            fields["workspace"] = workspace
        fields["msg"] = record.getMessage()
        if record.exc_text:
            fields["exception"] = record.exc_text
        elif record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return fields


class LogfmtFormatter(_FieldsFormatter):
    """``ts=... level=... logger=... msg="..."``, as Prometheus components log."""

    def format(self, record: logging.LogRecord) -> str:
        """One logfmt line."""
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in self.fields(record).items())


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\\\n\t'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


class JsonFormatter(_FieldsFormatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        return json.dumps(self.fields(record), ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Route all logging to stderr in the chosen format, with redaction; ``level`` as :func:`parse_level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(WorkspaceField())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    threshold = LEVELS[parse_level(level)]
    root.setLevel(threshold)
    # httpx logs every request at INFO and httpcore every socket event at DEBUG; the client logs its own
    # requests (without headers), so even --log.level=debug keeps these two at warn.
    for library in ("httpx", "httpcore"):
        logging.getLogger(library).setLevel(max(logging.WARNING, threshold))
