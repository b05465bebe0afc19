"""The OSMP (QIWI "protocol for providers") adapter: parse, call the core, render XML.

No rule about payments lives here: this module only translates between the protocol's
parameters and result codes and the core's requests and outcomes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

from starlette.requests import Request
from starlette.responses import Response

from tolom.agents.service import Agent, verify_secret
from tolom.gateway import step
from tolom.gateway.peers import basic_credentials
from tolom.httpkit.bodies import BodyTooLarge, read_limited
from tolom.httpkit.clients import request_address
from tolom.identifiers import is_txn_id
from tolom.money import AMOUNT_RULE, MalformedAmount, format_amount, parse_amount
from tolom.payments.model import CheckResult, Outcome, PayRequest, PayResult, Service
from tolom.payments.requestlog import Answer, Exchange
from tolom.payments.service import TEMPORARY_MESSAGE
from tolom.payments.wording import t
from tolom.runtime import Runtime

log = logging.getLogger(__name__)

RESULT_CODES: dict[Outcome, int] = {
    Outcome.OK: 0,
    Outcome.RETRY: 1,
    Outcome.BAD_ACCOUNT: 4,
    Outcome.NOT_FOUND: 5,
    Outcome.FORBIDDEN: 7,
    Outcome.ALREADY_PAID: 7,
    Outcome.INACTIVE: 79,
    Outcome.TOO_SMALL: 241,
    Outcome.TOO_LARGE: 242,
    Outcome.CONFLICT: 300,
    Outcome.MALFORMED: 300,
    Outcome.PENDING: 90,  # the sandbox's magic account only (payments.sandbox)
}
MEDIA_TYPE = "text/xml; charset=utf-8"
RESULT_NOT_AUTHORISED = 8  # "forbidden for technical reasons": the body of a 401/403
_TXN_DATE = re.compile(r"[0-9]{14}")
_MAX_FIELDS = 32


class Malformed(Exception):
    """The request breaks the protocol; the message (`payments.wording`) goes into <comment>."""


@dataclass(frozen=True, slots=True)
class OsmpRequest:
    command: str
    txn_id: str
    account: str
    sum: int | None
    txn_date_raw: str | None


def render(
    *,
    result: int,
    comment: str,
    txn_id: str | None = None,
    prv_txn: int | None = None,
    amount: int | None = None,
    fields: list[tuple[str, str]] | None = None,
) -> str:
    """The XML answer; every value escaped, sums as %.2f."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<response>\n']
    if txn_id is not None:
        parts.append(f"<osmp_txn_id>{txn_id}</osmp_txn_id>\n")
    if prv_txn is not None:
        parts.append(f"<prv_txn>{prv_txn}</prv_txn>\n")
    if amount is not None:
        parts.append(f"<sum>{format_amount(amount)}</sum>\n")
    parts.append(f"<result>{result}</result>\n<comment>{escape(comment)}</comment>\n")
    if fields:
        parts.append("<fields>")
        for number, (name, value) in enumerate(fields, start=1):
            parts.append(f"<field{number} name={quoteattr(name)}>{escape(value)}</field{number}>")
        parts.append("</fields>\n")
    parts.append("</response>\n")
    return "".join(parts)


def parse_params(query: str, body: bytes) -> list[tuple[str, str]]:
    """All parameters from the query string and a form body, in order; Malformed if broken."""
    try:
        text = body.decode("utf-8")
        params = parse_qsl(
            query, keep_blank_values=True, errors="strict", max_num_fields=_MAX_FIELDS
        )
        if text:
            params += parse_qsl(
                text, keep_blank_values=True, errors="strict", max_num_fields=_MAX_FIELDS
            )
    except UnicodeDecodeError as error:
        raise Malformed(t("agent.osmp.not_utf8")) from error
    except ValueError as error:
        raise Malformed(t("agent.osmp.too_many_params")) from error
    if len(params) > _MAX_FIELDS:
        raise Malformed(t("agent.osmp.too_many_params"))
    return params


def interpret(params: list[tuple[str, str]]) -> OsmpRequest:
    """Check the protocol-level shape of a request; the business rules are the core's."""
    values: dict[str, str] = {}
    for key, value in params:
        if key in values:
            raise Malformed(t("agent.osmp.repeated_param", name=key))
        values[key] = value
    command = values.get("command")
    if command not in ("check", "pay"):
        raise Malformed(t("agent.osmp.unknown_command"))
    txn_id = values.get("txn_id")
    if txn_id is None or not is_txn_id(txn_id):
        raise Malformed(t("agent.osmp.bad_txn_id"))
    account = values.get("account")
    if account is None:
        raise Malformed(t("agent.osmp.no_account"))
    amount: int | None = None
    raw_sum = values.get("sum")
    if raw_sum is not None and (command == "pay" or raw_sum != ""):
        try:
            amount = parse_amount(raw_sum)
        except MalformedAmount as error:
            raise Malformed(t("agent.osmp.bad_sum", rule=AMOUNT_RULE)) from error
    elif command == "pay":
        raise Malformed(t("agent.osmp.no_sum"))
    txn_date = values.get("txn_date")
    if command == "pay" and (txn_date is None or not _TXN_DATE.fullmatch(txn_date)):
        raise Malformed(t("agent.osmp.txn_date_format"))
    return OsmpRequest(command, txn_id, account, amount, txn_date)


def agent_local_time(raw: str, agent: Agent) -> datetime:
    """txn_date (YYYYMMDDHHMMSS, agent-local wall time) as an aware datetime."""
    try:
        naive = datetime.strptime(raw, "%Y%m%d%H%M%S")
    except ValueError as error:
        raise Malformed(t("agent.osmp.txn_date_impossible")) from error
    return naive.replace(tzinfo=agent.timezone)


def _check_answer(request: OsmpRequest) -> Callable[[CheckResult], Answer]:
    def answer(result: CheckResult) -> Answer:
        fields: list[tuple[str, str]] = []
        if result.outcome is Outcome.OK and result.display_name is not None:
            fields.append(("name", result.display_name))
            if result.amount_due is not None:
                fields.append(("amount", format_amount(result.amount_due)))
        code = RESULT_CODES[result.outcome]
        body = render(
            result=code,
            comment=result.message,
            txn_id=request.txn_id,
            amount=request.sum,
            fields=fields,
        )
        return Answer(200, code, body, MEDIA_TYPE)

    return answer


def _pay_answer(request: OsmpRequest) -> Callable[[PayResult], Answer]:
    def answer(result: PayResult) -> Answer:
        code = RESULT_CODES[result.outcome]
        ok = result.outcome is Outcome.OK
        body = render(
            result=code,
            comment=result.message,
            txn_id=request.txn_id,
            prv_txn=result.payment_id if ok else None,
            amount=result.amount if ok else request.sum,
        )
        return Answer(200, code, body, MEDIA_TYPE)

    return answer


async def endpoint(request: Request) -> Response:
    """GET or POST /gateway/osmp/{service}: parse, authenticate, one gateway step, answer."""
    if request.method not in ("GET", "POST"):  # Starlette adds HEAD to GET routes: no pays
        return Response(status_code=405, headers={"Allow": "GET, POST"})
    runtime: Runtime = request.app.state.runtime
    service = Service(request.path_params["service"])
    exchange = Exchange(
        protocol="osmp",
        service=service.value,
        peer=request_address(request, runtime.settings.trusted_proxies),
        method=request.method,
        params=[],
    )
    unreadable: Malformed | None = None
    try:
        body = await _read_body(request, runtime.settings.max_request_bytes)
        exchange.params = parse_params(request.url.query, body)
    except Malformed as error:
        unreadable = error  # answered after authentication: strangers get 401, not details
    call = await _call(
        runtime,
        service,
        exchange,
        basic_credentials(request.headers.get("authorization")),
        unreadable,
    )
    answer = await step.execute(runtime, call)
    return Response(
        answer.body,
        status_code=answer.http_status,
        media_type=answer.media_type,
        headers=dict(answer.headers) or None,
    )


async def _call(
    runtime: Runtime,
    service: Service,
    exchange: Exchange,
    credentials: tuple[str, str] | None,
    unreadable: Malformed | None,
) -> step.Call:
    """Authenticate and interpret: the call for the gateway step, or a refusal to record."""
    agent: Agent | None = None
    if credentials is not None:
        try:
            agent = verify_secret(await step.agent(runtime, credentials[0]), credentials[1])
        except step.Unavailable:
            return _refuse(exchange, 200, RESULT_CODES[Outcome.RETRY], TEMPORARY_MESSAGE)
    if agent is None:
        call = _refuse(
            exchange,
            401,
            RESULT_NOT_AUTHORISED,
            t("agent.osmp.bad_credentials"),
            (("WWW-Authenticate", 'Basic realm="tolom", charset="UTF-8"'),),
        )
        call.too_many = lambda wait: _too_many(exchange, wait)
        return call
    exchange.agent_id = agent.id
    if not agent.enabled:
        return _refuse(exchange, 403, RESULT_NOT_AUTHORISED, t("agent.osmp.agent_disabled"))
    if not agent.allows_address(exchange.peer):
        return _refuse(exchange, 403, RESULT_NOT_AUTHORISED, t("agent.osmp.address_not_allowed"))
    if unreadable is not None:
        return _refuse(exchange, 200, RESULT_CODES[Outcome.MALFORMED], str(unreadable))
    try:
        parsed = interpret(exchange.params)
        exchange.command, exchange.txn_id = parsed.command, parsed.txn_id
        if parsed.command == "check":
            return step.Call(
                exchange, agent, step.Check(service, parsed.account), _check_answer(parsed)
            )
        assert parsed.txn_date_raw is not None and parsed.sum is not None
        pay_request = PayRequest(
            service=service,
            txn_id=parsed.txn_id,
            account=parsed.account,
            amount=parsed.sum,
            txn_date=agent_local_time(parsed.txn_date_raw, agent),
            txn_date_raw=parsed.txn_date_raw,
        )
    except Malformed as error:
        return _refuse(exchange, 200, RESULT_CODES[Outcome.MALFORMED], str(error))
    return step.Call(exchange, agent, step.Pay(pay_request), _pay_answer(parsed))


def _safe_command(params: list[tuple[str, str]]) -> str | None:
    for key, value in params:
        if key == "command" and value in ("check", "pay"):
            return value
    return None


async def _read_body(request: Request, limit: int) -> bytes:
    if request.method != "POST":
        return b""
    try:
        return await read_limited(request, limit)
    except BodyTooLarge:
        raise Malformed(t("agent.osmp.too_large")) from None


def _too_many(exchange: Exchange, wait: int) -> Answer:
    """429 for an address that sent too many requests without valid credentials."""
    comment = t("agent.osmp.too_many_strangers", wait=wait)
    body = render(result=RESULT_NOT_AUTHORISED, comment=comment, txn_id=exchange.txn_id)
    return Answer(429, RESULT_NOT_AUTHORISED, body, MEDIA_TYPE, (("Retry-After", str(wait)),))


def _refuse(
    exchange: Exchange,
    http_status: int,
    code: int,
    comment: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> step.Call:
    """An answer given without reaching the core; the step records it all the same."""
    txn_id = exchange.txn_id or next(
        (v for k, v in exchange.params if k == "txn_id" and is_txn_id(v)), None
    )
    exchange.txn_id = txn_id
    exchange.command = exchange.command or _safe_command(exchange.params)
    body = render(result=code, comment=comment, txn_id=txn_id)
    return step.refused(exchange, Answer(http_status, code, body, MEDIA_TYPE, headers))
