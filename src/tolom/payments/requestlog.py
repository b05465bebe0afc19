"""The record of every gateway request (PRODUCT invariant 5): who asked what, and our answer."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert

from tolom.db.schema import gateway_requests

_SECRET_KEYS = ("password", "secret", "token", "pass", "pwd", "authorization", "signature")
_MAX_VALUE = 256
_MAX_KEYS = 32
_STRANGER_PARAMS = 768  # characters of a 401's parameters kept
_STRANGER_RESPONSE = 255  # and of its answer: with the other columns, under 1 KB


def clean_text(value: str, limit: int = _MAX_VALUE) -> str:
    """A value safe to store: NUL (which PostgreSQL text refuses) escaped, length capped."""
    cleaned = value.replace("\x00", "\\x00")
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


def redact(params: list[tuple[str, str]], budget: int | None = None) -> str:
    """The parameters as JSON, with anything secret-looking removed and sizes bounded;
    with a `budget`, only as many as fit in that many characters."""
    kept: list[list[str]] = []
    for key, value in params[:_MAX_KEYS]:
        hidden = any(word in key.lower() for word in _SECRET_KEYS)
        kept.append([clean_text(key, 64), "***" if hidden else clean_text(value)])
    if len(params) > _MAX_KEYS:
        kept.append(["…", f"{len(params) - _MAX_KEYS} more"])
    text = json.dumps(kept, ensure_ascii=False)
    while budget is not None and len(text) > budget and kept:
        kept = [[clean_text(k, 32), clean_text(v, 64)] for k, v in kept[:-1]]
        text = json.dumps([*kept, ["…", f"{len(params) - len(kept)} more"]], ensure_ascii=False)
    return text


@dataclass(slots=True)
class Exchange:
    """One request and, once known, its answer; written with `record`."""

    protocol: str
    peer: str
    method: str
    params: list[tuple[str, str]]
    service: str | None = None
    agent_id: int | None = None
    command: str | None = None
    txn_id: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class Answer:
    """A rendered protocol answer: what goes back to the agent and into the log."""

    http_status: int
    result: int | None
    body: str
    media_type: str  # the adapter's: the core knows no protocol
    headers: tuple[tuple[str, str], ...] = ()  # e.g. Retry-After; not logged


def log_row(exchange: Exchange, answer: Answer, payment_id: int | None = None) -> dict[str, Any]:
    """The `gateway_requests` row for an exchange and its answer (column name → value).

    A request refused as unauthenticated (401) is anybody's: only a bounded summary of it
    is kept (at most 1 KB of parameters and answer), so strangers cannot fill the log.
    """
    stranger = answer.http_status == 401
    return {
        "received_at": exchange.received_at,
        "duration_us": int((time.perf_counter() - exchange.started) * 1_000_000),
        "protocol": exchange.protocol,
        "service": exchange.service,
        "agent_id": exchange.agent_id,
        "peer": clean_text(exchange.peer, 64),
        "method": exchange.method[:8],
        "command": clean_text(exchange.command, 16) if exchange.command else None,
        "txn_id": exchange.txn_id,
        "params": redact(exchange.params, _STRANGER_PARAMS if stranger else None),
        "http_status": answer.http_status,
        "result": answer.result,
        "response": clean_text(answer.body, _STRANGER_RESPONSE) if stranger else answer.body,
        "payment_id": payment_id,
    }


def record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert request records (`log_row`) into `gateway_requests`, in the caller's
    transaction. (The PostgreSQL gateway road has its own: `pgbatch.record_and_commit`.)"""
    conn.execute(insert(gateway_requests), rows)
