"""The gateway step: what every agent request goes through between parsing and rendering.

An adapter (OSMP, REST) reads its protocol, authenticates the agent through `agent()` (from
the cache; the database only on a miss) and builds a `Call`: the exchange to record, the
agent, a command (check, pay, cancel, status — or none, when the adapter has already
refused) and how to render a result. `execute()` carries the call through one unit of
work: the core's use case, the adapter's rendering, the request record, one commit. The
adapter then only sends the answer.

Group commit: calls that arrive while earlier ones are in flight travel together in the
next transaction (at most `gateway_batch_max` of them, at most
`gateway_batch_concurrency` transactions at once per process). Each call gets its own
answer; nothing is answered before its transaction committed. If a batch fails, each of
its calls is run again alone, so one bad item never fails its neighbours; a call that
fails alone is answered "retry" and recorded apart (or spooled while the database is away).

On PostgreSQL, `sochi` pays and checks take `payments.pgbatch` (one server-side call for
the whole batch); every other command runs the core in Python, alone in its transaction.
On SQLite, every command runs the Python core, batched (one writer: one fsync for many).

A sandbox agent's command turns off at the start of `execute`, before the group commit and
the batch road: `payments.sandbox` answers it in a transaction of its own, reading and
writing no real table but the outbox, whose sandbox events only sandbox endpoints get (its
request is recorded like any other).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from tolom import metrics
from tolom.agents.service import Agent
from tolom.db.engine import driver_error, is_outage, is_temporary
from tolom.db.groupcommit import GroupCommit
from tolom.payments import pgbatch, sandbox, service
from tolom.payments.model import (
    CancelOutcome,
    CancelResult,
    CheckResult,
    Outcome,
    PayRequest,
    PayResult,
    Service,
)
from tolom.payments.records import PaymentRecord
from tolom.payments.requestlog import Answer, Exchange, log_row, record
from tolom.payments.unit import log_failure, record_separately
from tolom.runtime import Runtime

log = logging.getLogger("tolom.gateway")


# --- what an adapter hands over -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    service: Service
    account: str


@dataclass(frozen=True, slots=True)
class Pay:
    request: PayRequest


@dataclass(frozen=True, slots=True)
class Cancel:
    txn_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Status:
    txn_id: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a status command found: the payment, or None; `retry` when we could not look."""

    record: PaymentRecord | None
    retry: bool = False


Command = Check | Pay | Cancel | Status


@dataclass(slots=True)
class Call:
    """One authenticated request on its way through the step (`command` None: record only)."""

    exchange: Exchange
    agent: Agent | None
    command: Command | None
    render: Callable[[Any], Answer]
    # For a request refused as unauthenticated: the "too many requests" answer (given the
    # seconds to wait) once its address is over the stranger limit (`httpkit.strangers`).
    too_many: Callable[[int], Answer] | None = None


def refused(
    exchange: Exchange, answer: Answer, too_many: Callable[[int], Answer] | None = None
) -> Call:
    """A call the adapter has answered already (bad credentials, malformed): record it.
    `too_many` marks an unauthenticated request: see `Call.too_many`."""
    return Call(exchange, None, None, lambda _result: answer, too_many)


class Unavailable(Exception):
    """The agents' table is out of reach: the adapter answers "retry"."""


async def agent(runtime: Runtime, code: str) -> Agent | None:
    """The agent with this code (None: no such agent); from the cache when fresh."""
    cached = runtime.agents.cached(code)
    if cached is not runtime.agents.MISS:
        return cached  # type: ignore[return-value]
    try:
        return await run_in_threadpool(runtime.agents.get, code)
    except Exception as error:
        log.warning("cannot authenticate, database unreachable: %s", type(error).__name__)
        if runtime.settings.metrics_enabled:
            metrics.database_unavailable("gateway")
        raise Unavailable from error


async def execute(runtime: Runtime, call: Call) -> Answer:
    """Run the call in a unit of work (batched with its neighbours) and return its answer.

    An unauthenticated request from an address over the stranger limit is answered at once
    and not recorded: strangers cannot fill the request log.
    """
    if call.too_many is not None:
        wait = runtime.strangers.admit(call.exchange.peer)
        if wait is not None:
            return call.too_many(max(1, math.ceil(wait)))
    agent_ = call.agent
    if agent_ is not None and agent_.sandbox and call.command is not None:
        answer = await _sandbox(runtime, call)  # the one branch: no real table, no batch road
    else:
        answer = await _lanes(runtime).submit(call)
    if runtime.settings.metrics_enabled:
        exchange = call.exchange
        metrics.observe_gateway(
            exchange.protocol,
            exchange.service,
            exchange.command,
            answer.http_status if answer.result is None else answer.result,
            exchange.started,
        )
    return answer


async def _sandbox(runtime: Runtime, call: Call) -> Answer:
    """A sandbox agent's command: `payments.sandbox` in a transaction of its own, after the
    slow magic account's delay (slept here, in the event loop: no thread is held)."""
    command = call.command
    if isinstance(command, Check | Pay):
        account = command.account if isinstance(command, Check) else command.request.account
        kind = command.service if isinstance(command, Check) else command.request.service
        if sandbox.is_slow(kind, account):
            await asyncio.sleep(runtime.settings.sandbox_slow_seconds)
    answers = await run_in_threadpool(run_batch, runtime, [call], sandboxed=True)
    return answers[0]


def _run_sandbox(conn: Connection, call: Call) -> Any:
    """`_run_core` for a sandbox agent: the same commands, answered by `payments.sandbox`."""
    command, agent_ = call.command, call.agent
    assert command is not None and agent_ is not None
    if isinstance(command, Check):
        return sandbox.check(conn, agent_, command.service, command.account)
    if isinstance(command, Pay):
        return sandbox.pay(conn, agent_, command.request)
    if isinstance(command, Cancel):
        return sandbox.cancel(conn, agent_, command.txn_id, command.reason)
    return Lookup(sandbox.find(conn, agent_, command.txn_id))


# --- running a batch: one transaction -------------------------------------------------------


def _retry(command: Command | None) -> Any:
    if isinstance(command, Check):
        return CheckResult(Outcome.RETRY, service.TEMPORARY_MESSAGE)
    if isinstance(command, Pay):
        return PayResult(Outcome.RETRY, service.TEMPORARY_MESSAGE)
    if isinstance(command, Cancel):
        return CancelResult(CancelOutcome.RETRY, service.TEMPORARY_MESSAGE)
    if isinstance(command, Status):
        return Lookup(None, retry=True)
    return None


def _payment_of(result: Any) -> int | None:
    if isinstance(result, PayResult | CancelResult):
        return result.payment_id
    if isinstance(result, Lookup) and result.record is not None:
        return result.record.id
    return None


def _fast(call: Call, postgresql: bool) -> bool:
    """Whether the call takes PostgreSQL's batched road (`payments.pgbatch`)."""
    if not postgresql or call.agent is None:
        return False
    command = call.command
    if isinstance(command, Check):
        return command.service is Service.SOCHI
    if isinstance(command, Pay):
        return command.request.service is Service.SOCHI and command.request.manual is None
    return False


def _run_core(conn: Connection, call: Call) -> Any:
    """The Python core for one call, in the batch's transaction (a savepoint inside)."""
    command, agent_ = call.command, call.agent
    if command is None:
        return None
    assert agent_ is not None
    if isinstance(command, Check):
        return service.check(conn, agent_, command.service, command.account)
    if isinstance(command, Pay):
        return service.pay(conn, agent_, command.request)
    if isinstance(command, Cancel):
        return service.cancel(conn, agent_, command.txn_id, command.reason)
    return Lookup(service.find(conn, agent_, command.txn_id))


def _results(conn: Connection, calls: Sequence[Call], postgresql: bool) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    checks: list[tuple[int, Agent, str]] = []
    pays: list[tuple[int, Agent, PayRequest]] = []
    by_core: list[int] = []
    for n, call in enumerate(calls):
        if not _fast(call, postgresql):
            by_core.append(n)
            continue
        assert call.agent is not None
        if isinstance(call.command, Check):
            early = service.precheck(call.agent, call.command.service, call.command.account)
            if early is not None:
                results[n] = early
            else:
                checks.append((n, call.agent, call.command.account))
        elif isinstance(call.command, Pay):
            prepared = service.prepare_pay(call.agent, call.command.request)
            if isinstance(prepared, PayResult):
                results[n] = prepared
            else:
                pays.append((n, call.agent, prepared))
    if checks or pays:
        checked, paid = pgbatch.check_and_pay(
            conn, [(a, account) for _, a, account in checks], [(a, r) for _, a, r in pays]
        )
        for (n, _, _), checked_result in zip(checks, checked, strict=True):
            results[n] = checked_result
        for (n, _, _), paid_result in zip(pays, paid, strict=True):
            results[n] = paid_result
    for n in by_core:
        results[n] = _run_core(conn, calls[n])
    return results


def run_calls(runtime: Runtime, calls: Sequence[Call]) -> list[Answer]:
    """A batch from the queue: on PostgreSQL, the calls of the fast road (and records) go
    together, every other call alone — they lock rows in no common order. Never raises."""
    if runtime.engine.dialect.name != "postgresql" or len(calls) == 1:
        return run_batch(runtime, calls)
    together = [n for n, call in enumerate(calls) if call.command is None or _fast(call, True)]
    answers: list[Answer | None] = [None] * len(calls)
    if together:
        batch = run_batch(runtime, [calls[n] for n in together])
        for n, answer in zip(together, batch, strict=True):
            answers[n] = answer
    for n, call in enumerate(calls):
        if answers[n] is None:
            answers[n] = run_batch(runtime, [call])[0]
    return [answer for answer in answers if answer is not None]


def run_batch(runtime: Runtime, calls: Sequence[Call], *, sandboxed: bool = False) -> list[Answer]:
    """Run calls in one transaction and return their answers; never raises. `sandboxed`:
    one sandbox agent's call (`_sandbox`), recorded without a payment id."""
    engine = runtime.engine
    postgresql = engine.dialect.name == "postgresql"
    for call in calls:  # the key the payment is stored under, for the record and the answer
        if call.agent is not None and isinstance(call.command, Pay | Cancel | Status):
            txn_id = (
                call.command.request.txn_id
                if isinstance(call.command, Pay)
                else call.command.txn_id
            )
            call.exchange.txn_id = service.payment_key(call.agent, txn_id)
    try:
        with engine.begin() as conn:
            if sandboxed:
                results = [_run_sandbox(conn, call) for call in calls]
            else:
                results = _results(conn, calls, postgresql)
            answers = [call.render(result) for call, result in zip(calls, results, strict=True)]
            rows = [
                log_row(call.exchange, answer, None if sandboxed else _payment_of(result))
                for call, answer, result in zip(calls, answers, results, strict=True)
            ]
            if postgresql:
                pgbatch.record_and_commit(conn, rows)  # the commit travels with the INSERT
            else:
                record(conn, rows)
        if runtime.spool.pending():  # the database is back: move what the outage spooled
            threading.Thread(target=runtime.spool.drain, args=(engine,), daemon=True).start()
        if runtime.settings.metrics_enabled and not sandboxed:
            _count_pays(calls, results)
        return answers
    except Exception as error:
        if len(calls) > 1 and not is_outage(error):
            # One item may have sunk the batch: each runs again alone and gets its own answer.
            log.warning(
                "a batch of %d failed (%s); running its calls one by one",
                len(calls),
                type(driver_error(error) or error).__name__,
            )
            return [run_batch(runtime, [call])[0] for call in calls]
        if runtime.settings.metrics_enabled and is_temporary(error):
            metrics.database_unavailable("gateway")
        answers = []
        for call in calls:
            log_failure(call.exchange, error)
            answers.append(call.render(_retry(call.command)))
        record_separately(
            engine,
            [(call.exchange, answer, None) for call, answer in zip(calls, answers, strict=True)],
            spool=runtime.spool,
        )
        return answers


def _count_pays(calls: Sequence[Call], results: Sequence[Any]) -> None:
    """Committed pays accepted now (a repeat's answer is not a new payment)."""
    for call, result in zip(calls, results, strict=True):
        if (
            isinstance(call.command, Pay)
            and isinstance(result, PayResult)
            and result.outcome is Outcome.OK
            and not result.replayed
        ):
            amount = result.amount if result.amount is not None else call.command.request.amount
            metrics.pay_accepted(call.command.request.service.value, amount)


def _lanes(runtime: Runtime) -> GroupCommit[Call, Answer]:
    """This event loop's group commit (futures belong to one loop)."""
    loop = asyncio.get_running_loop()
    lanes = runtime.group_commits.get(loop)
    if lanes is None:
        settings = runtime.settings
        sqlite = runtime.engine.dialect.name == "sqlite"
        lanes = GroupCommit[Call, Answer](
            lambda calls: run_calls(runtime, calls),
            max_batch=settings.gateway_batch_max,
            concurrency=1 if sqlite else settings.gateway_batch_concurrency,
            max_wait=settings.gateway_batch_wait_ms / 1000,
        )
        runtime.remember_group_commit(loop, lanes)
    return lanes
