"""Structured logging for the daemons.

One line per record; ``--log-format json`` gives machine-readable lines carrying every
``extra=`` field (``event=``, ``reason=``, ``service=``...). Secrets never reach a log line:
fields whose name suggests a secret are redacted before formatting.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

#: record attributes that belong to logging itself, not to the caller's ``extra=``
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)
#: substrings of field names whose values are never logged
_SECRET_HINTS = ("token", "secret", "password", "key_material", "authorization")
REDACTED = "<redacted>"


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    fields = {}
    for name, value in vars(record).items():
        if name in _STANDARD_ATTRS or name.startswith("_"):
            continue
        if any(hint in name.lower() for hint in _SECRET_HINTS):
            value = REDACTED
        fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extra_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable line with ``key=value`` pairs for the ``extra`` fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _extra_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger from flags, else ``PURELB_LOG_LEVEL`` / ``PURELB_LOG_FORMAT``."""
    level = (level or os.environ.get("PURELB_LOG_LEVEL") or "info").upper()
    fmt = (fmt or os.environ.get("PURELB_LOG_FORMAT") or "text").lower()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"log level {level!r} is not one of debug, info, warning, error")
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r} is not 'text' or 'json'")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
