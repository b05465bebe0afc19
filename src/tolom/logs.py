"""Logging for `tolom serve` and `tolom worker`: one event, one line, as text or JSON.

A failure is logged once, with its context in `extra` rather than in the sentence:

    log.warning("pay failed", extra={"agent": "optima", "txn_id": "1", "sqlstate": "57P01"})

Text: `2026-01-05T09:00:00.123Z WARNING tolom.payments: pay failed agent=optima txn_id=1 …`.
JSON: `{"time": "…Z", "level": "WARNING", "logger": "tolom.payments", "message": "pay failed",
"agent": "optima", …}`; an exception adds `exc_type` and `exc` (no traceback: a collector
would split it into lines that no longer belong to the event). Text mode keeps the
traceback below the line, for a person at a terminal.

`configure` applies the configuration and returns it; the same dict is what `uvicorn.run`
takes as `log_config` (it applies it again in each worker process, so it must stay a plain,
picklable dict with importable formatter factories).
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
    "color_message",  # uvicorn's coloured copy of the message
}
_ACCESS_FIELDS = ("client_addr", "method", "path", "http_version", "status_code")


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed in `extra`."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line as named fields, for queries in JSON (text has the line)."""
    args = record.args
    if record.name != "uvicorn.access" or not isinstance(args, tuple):
        return {}
    if len(args) != len(_ACCESS_FIELDS):
        return {}
    return dict(zip(_ACCESS_FIELDS, args, strict=True))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the extras, the exception."""

    def __init__(self, use_colors: bool | None = None) -> None:
        # `use_colors`: uvicorn sets it on formatters named "default"/"access" when asked.
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in (_access_fields(record) | extra_fields(record)).items():
            entry.setdefault(key, value)  # an extra never hides the four above
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            entry["exc_type"] = f"{type(error).__module__}.{type(error).__qualname__}"
            entry["exc"] = str(error)
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value …`, the whole event on one line."""

    def __init__(self, use_colors: bool | None = None) -> None:
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        parts = [f"{_time(record)} {record.levelname} {record.name}: {message}"]
        parts.extend(f"{key}={_text_value(value)}" for key, value in extra_fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _text_value(value: object) -> str:
    """A value as `key=value` shows it: bare when unambiguous, else a JSON string."""
    text = value if isinstance(value, str) else str(value)
    if text and not any(c.isspace() or c in '="\\' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def config(format: LogFormat, level: str = "INFO") -> dict[str, Any]:
    """The `logging.config.dictConfig` dict; also a valid `uvicorn.run(log_config=…)`."""
    if format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {format!r}")
    name = level.upper()
    if not isinstance(logging.getLevelNamesMapping().get(name), int):
        raise ValueError(f"unknown log level {level!r}")
    formatter = f"{__name__}.{'JsonFormatter' if format == 'json' else 'TextFormatter'}"
    return {
        "version": 1,
        "disable_existing_loggers": False,  # module loggers made at import time keep working
        # Named as uvicorn's own, which it may adjust (use_colors) before applying.
        "formatters": {"default": {"()": formatter}, "access": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": name, "propagate": False},
            "uvicorn.error": {"level": name},
            "uvicorn.access": {"handlers": ["access"], "level": name, "propagate": False},
            "httpx": {"level": "WARNING"},  # the worker logs each delivery attempt itself
        },
        "root": {"handlers": ["default"], "level": name},
    }


def configure(format: LogFormat, level: str = "INFO") -> dict[str, Any]:
    """Apply the configuration to this process and return it (for `uvicorn.run`)."""
    result = config(format, level)
    logging.config.dictConfig(config(format, level))  # a copy: dictConfig may consume it
    return result
