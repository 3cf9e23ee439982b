"""Logging setup with redaction.

Redaction happens twice, so a secret cannot slip through whichever path a record takes:

1. :func:`install_record_redaction` wraps the log record factory: every record created in this process --
   by cxbridge, httpx, simple-salesforce or a plugin -- has its message (``msg % args``), exception text and
   stack text passed through :func:`cxbridge.secrets.redact` when it is created. Records are only created for
   enabled levels, so disabled debug logging costs nothing.
2. :class:`RedactingFilter` does the same on a handler, for records that were built elsewhere (e.g. unpickled
   from another process, or created before the factory was installed).

:func:`setup_logging` installs both and a handler writing either ``key=value`` text or one JSON object per line.
"""

from __future__ import annotations

import json as _json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from .secrets import redact

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "format_exception",
    "install_record_redaction",
    "redact_record",
    "setup_logging",
]

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_factory_lock = threading.Lock()
_original_factory: Callable[..., logging.LogRecord] | None = None


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place: message with its args merged, exception and stack text, extra fields."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string must not lose the line; keep its parts visible
        message = f"{record.msg!r} % {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(record.__dict__.items()):
        if name not in _STANDARD_ATTRS and isinstance(value, str):
            setattr(record, name, redact(value))
    return record


class RedactingFilter(logging.Filter):
    """A handler (or logger) filter that redacts secrets from every record it passes; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_record_redaction() -> None:
    """Wrap the process's log record factory so every record is redacted at creation (idempotent)."""
    global _original_factory
    with _factory_lock:
        if _original_factory is not None:
            return
        original = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(original(*args, **kwargs))

        _original_factory = original
        logging.setLogRecordFactory(factory)


def uninstall_record_redaction() -> None:
    """Restore the record factory that was active before :func:`install_record_redaction` (tests)."""
    global _original_factory
    with _factory_lock:
        if _original_factory is not None:
            logging.setLogRecordFactory(_original_factory)
            _original_factory = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, extra fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        redact_record(record)
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                data[name] = (
                    value if isinstance(value, (str, int, float, bool, type(None))) else redact(repr(value))
                )
        if record.exc_text:
            data["exc"] = record.exc_text
        return _json.dumps(data, default=str)


class _TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` -- extra fields appended so they stay greppable."""

    def format(self, record: logging.LogRecord) -> str:
        redact_record(record)
        line = super().format(record)
        extras = [
            f"{name}={value}"
            for name, value in record.__dict__.items()
            if name not in _STANDARD_ATTRS and not name.startswith("_")
        ]
        if extras:
            head, sep, tail = line.partition("\n")
            line = head + " " + redact(" ".join(extras)) + sep + tail
        return line


def setup_logging(
    debug: bool = False, json: bool | None = None, *, stream: TextIO | None = None
) -> logging.Handler:
    """Configure the root logger for the CLI and daemon; returns the handler it installed.

    :param debug: log at DEBUG (else INFO for cxbridge, WARNING for third-party libraries).
    :param json: write one JSON object per line (for log shippers) instead of text; None (the default) reads
        ``CXBRIDGE_LOG_JSON`` (``1``/``true``), so the daemon's format is set where it is deployed.
    :param stream: where to write (default ``sys.stderr``).

    Calling it again replaces the handler it installed before. Every handler already on the root logger (e.g.
    pytest's capture handler) also gets a :class:`RedactingFilter`.
    """
    if json is None:
        json = os.environ.get("CXBRIDGE_LOG_JSON", "").strip().lower() in {"1", "true", "yes", "on"}
    install_record_redaction()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_cxbridge", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._cxbridge = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    for other in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in other.filters):
            other.addFilter(RedactingFilter())
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("cxbridge").setLevel(logging.DEBUG if debug else logging.INFO)
    return handler


def format_exception(exc: BaseException, *, debug: bool = False) -> str:
    """What the CLI prints for an error: one redacted line, or with ``debug`` the redacted traceback."""
    if debug:
        return redact("".join(traceback.format_exception(exc)).rstrip("\n"))
    kind = getattr(exc, "kind", None)
    text = str(exc) or type(exc).__name__
    if not hasattr(exc, "kind"):
        text = f"{type(exc).__name__}: {text}"
    line = " ".join(text.split())
    return redact(f"error: {line}" if kind is None else f"error ({kind}): {line}")
