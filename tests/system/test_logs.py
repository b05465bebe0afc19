"""Log lines for `tolom serve` and `tolom worker`: one event per line, extras kept."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime

import pytest
from uvicorn.config import Config

from tolom import logs

EXTRA = {
    "agent": "optima",
    "txn_id": "1",
    "command": "pay",
    "sqlstate": "57P01",
    "error": "OperationalError",
    "duration_ms": 12.3,
}


def emit(formatter: logging.Formatter, **kwargs: object) -> str:
    """What one `log.warning("pay failed", …)` call writes through `formatter`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.Logger("tolom.payments.service")  # detached: no global state touched
    logger.addHandler(handler)
    logger.warning("pay failed", **kwargs)  # type: ignore[arg-type]
    return stream.getvalue()


def fail() -> None:
    raise RuntimeError("server closed the connection\nunexpectedly")


def test_json_is_one_object_per_line_with_the_extras() -> None:
    output = emit(logs.JsonFormatter(), extra=EXTRA)
    assert output.count("\n") == 1 and output.endswith("\n")
    entry = json.loads(output)
    assert entry == {
        "time": entry["time"],
        "level": "WARNING",
        "logger": "tolom.payments.service",
        "message": "pay failed",
        **EXTRA,
    }
    assert entry["time"].endswith("Z")
    assert datetime.fromisoformat(entry["time"]).utcoffset() is not None


def test_json_exception_is_named_not_traced() -> None:
    try:
        fail()
    except RuntimeError:
        output = emit(logs.JsonFormatter(), extra=EXTRA, exc_info=True)
    assert output.count("\n") == 1
    entry = json.loads(output)
    assert entry["exc_type"] == "builtins.RuntimeError"
    assert entry["exc"] == "server closed the connection\nunexpectedly"
    assert "Traceback" not in output
    assert entry["agent"] == "optima"


def test_json_keeps_odd_values_and_its_own_keys() -> None:
    output = emit(logs.JsonFormatter(), extra={"path": object(), "time": "overridden?"})
    entry = json.loads(output)
    assert entry["path"].startswith("<object object")
    assert entry["time"] != "overridden?"


def test_text_is_one_line_with_key_value_pairs() -> None:
    output = emit(logs.TextFormatter(), extra=EXTRA | {"peer": "10.0.0.1 via proxy"})
    assert output.count("\n") == 1
    line = output.rstrip("\n")
    assert " WARNING tolom.payments.service: pay failed " in line
    assert line.endswith(
        " agent=optima txn_id=1 command=pay sqlstate=57P01 error=OperationalError"
        ' duration_ms=12.3 peer="10.0.0.1 via proxy"'
    )
    assert datetime.fromisoformat(line.split(" ", 1)[0]).utcoffset() is not None


def test_text_keeps_the_event_on_its_first_line() -> None:
    try:
        fail()
    except RuntimeError:
        output = emit(logs.TextFormatter(), extra={"error": "a\nb"}, exc_info=True)
    first, *rest = output.rstrip("\n").split("\n")
    assert first.endswith('pay failed error="a\\nb"')
    assert rest[0] == "Traceback (most recent call last):"  # for a person at a terminal


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back what dictConfig changes, for the tests that run after."""
    names = ["uvicorn", "uvicorn.error", "uvicorn.access", "httpx"]
    root = logging.getLogger()
    saved = [(root, root.level, root.handlers[:], root.propagate)]
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.handlers[:], logger.propagate))
    yield
    for logger, level, handlers, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


@pytest.mark.parametrize("format", ["text", "json"])
@pytest.mark.usefixtures("restore_logging")
def test_configuration_is_a_valid_uvicorn_log_config(format: logs.LogFormat) -> None:
    applied = logs.configure(format, "debug")
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("tolom.anything").getEffectiveLevel() == logging.DEBUG
    # uvicorn applies it again in every worker, after tweaking its named formatters.
    Config(app="tolom.app:create_app", log_config=applied, use_colors=True).configure_logging()
    Config(app="tolom.app:create_app", log_config=applied, use_colors=False).configure_logging()
    for name in ("uvicorn", "uvicorn.access"):
        [handler] = logging.getLogger(name).handlers
        expected = logs.JsonFormatter if format == "json" else logs.TextFormatter
        assert isinstance(handler.formatter, expected)


def test_uvicorn_access_lines_are_named_fields_in_json() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5000", "GET", "/osmp?command=check", "1.1", 200),
        None,
    )
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["message"] == '10.0.0.1:5000 - "GET /osmp?command=check HTTP/1.1" 200'
    assert entry["status_code"] == 200
    assert entry["path"] == "/osmp?command=check"


def test_wrong_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        logs.config("xml", "INFO")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level"):
        logs.config("json", "LOUD")
