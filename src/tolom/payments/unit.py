"""A use case as one unit of work together with the record of the request that asked for it.

Every caller of the core that answers somebody — the agent gateways, the cash desk, the
operator API, reconciliation — runs the use case, renders its own answer from the result
and stores the request record (`gateway_requests`) in the same transaction. When that
transaction fails, the answer is "retry", and the record is written on its own; when even
that fails (the database is away), it goes to the local spool and reaches the table later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Connection, Engine

from tolom.db.engine import driver_error, is_temporary
from tolom.payments.requestlog import Answer, Exchange, log_row, record

log = logging.getLogger("tolom.gateway")

Result = TypeVar("Result")


class Spool(Protocol):
    """Where request records go while the database cannot take them."""

    def append(self, row: dict[str, object]) -> None: ...


def run_logged(
    engine: Engine,
    exchange: Exchange,
    use_case: Callable[[Connection], Result],
    render: Callable[[Result], Answer],
    *,
    retry: Result,
    payment_of: Callable[[Result], int | None],
    spool: Spool | None = None,
) -> tuple[Result, Answer]:
    """Run `use_case` and record its answer in one transaction; the result and the answer.

    Any failure rolls everything back and answers `retry` (rendered), which is always safe:
    nothing moved, and a repeat finds the payment if a commit did go through before the
    connection broke.
    """
    try:
        with engine.begin() as conn:
            result = use_case(conn)
            answer = render(result)
            record(conn, [log_row(exchange, answer, payment_of(result))])
        return result, answer
    except Exception as error:
        log_failure(exchange, error)
    answer = render(retry)
    record_separately(engine, [(exchange, answer, None)], spool=spool)
    return retry, answer


def record_separately(
    engine: Engine,
    records: list[tuple[Exchange, Answer, int | None]],
    *,
    spool: Spool | None = None,
) -> None:
    """Store request records in a transaction of their own (or, failing that, the spool).

    Never raises: the answers go out whatever happens here.
    """
    rows = [log_row(exchange, answer, payment_id) for exchange, answer, payment_id in records]
    try:
        with engine.begin() as conn:
            record(conn, rows)
        return
    except Exception as error:
        log.error(
            "could not record %d request(s): %s; %s",
            len(rows),
            type(driver_error(error) or error).__name__,
            "spooled" if spool is not None else "lost",
        )
    if spool is not None:
        for row in rows:
            spool.append(row)


def log_failure(exchange: Exchange, error: BaseException) -> None:
    """One log line per failed request: who, what, why (SQLSTATE or class) and how long."""
    original = driver_error(error)
    fields = {
        "agent_id": exchange.agent_id,
        "protocol": exchange.protocol,
        "command": exchange.command,
        "txn_id": exchange.txn_id,
        "sqlstate": getattr(original, "sqlstate", None),
        "error": type(original or error).__name__,
        "duration_ms": round((time.perf_counter() - exchange.started) * 1000, 1),
    }
    temporary = is_temporary(error)
    log.log(
        logging.WARNING if temporary else logging.ERROR,
        "%s failed, answered 'retry'",
        exchange.command or "request",
        extra={key: value for key, value in fields.items() if value is not None},
        exc_info=None if temporary else error,
    )
