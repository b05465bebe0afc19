"""The REST agent gateway (`/api/v1/agent/...`): JSON in, JSON or problem details out.

Like the OSMP adapter it holds no payment rule: it checks the signature, reads the JSON,
calls the same core (`payments.service`) and maps the core's outcomes to HTTP statuses and
problem codes. Routes take the raw request rather than FastAPI-parsed bodies, because the
signature covers the exact bytes and because every request, malformed ones included, is
authenticated first and logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from starlette.requests import Request
from starlette.responses import Response

from tolom.agents.service import GATEWAY, Agent
from tolom.gateway import signing, step
from tolom.httpkit.bodies import BodyTooLarge, read_limited
from tolom.httpkit.clients import request_address
from tolom.httpkit.problems import (
    CANCEL_PROBLEMS,
    PAY_PROBLEMS,
    PROBLEM_MEDIA_TYPE,
    FieldError,
    Problem,
    ProblemError,
    invalid,
    make_problem,
    problem_body,
    problem_headers,
    responses,
)
from tolom.identifiers import is_txn_id
from tolom.money import AMOUNT_PATTERN, AMOUNT_RULE, MalformedAmount, format_amount, parse_amount
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
from tolom.payments.requestlog import Answer, Exchange
from tolom.payments.service import txn_date_problem
from tolom.payments.wording import t
from tolom.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/agent", tags=["agent"])

SECURITY_SCHEME: dict[str, Any] = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": (
        "`Tolom-HMAC-SHA256 agent=<code>,timestamp=<unix seconds>,signature=<hex>`: "
        "HMAC-SHA256 with the agent's signing key over "
        "`METHOD\\nPATH?QUERY\\nTIMESTAMP\\nhex(SHA-256(body))`; the timestamp must be "
        "within 5 minutes of the server's clock. See docs/agents-rest.md."
    ),
}
JSON_MEDIA_TYPE = "application/json"

_AUTH_PROBLEMS = (
    "unauthenticated",
    "bad_signature",
    "stale_timestamp",
    "agent_disabled",
    "address_not_allowed",
    "request_too_large",
    "unsupported_media_type",
    "invalid_request",
    "temporarily_unavailable",
)
# What a check answers about the account; a pay answers these too (it checks first).
_ACCOUNT_PROBLEMS = (
    "invalid_account",
    "account_not_found",
    "account_inactive",
    "invoice_already_paid",
    "service_not_allowed",
)
_TXN_ID = r"^[0-9]{1,20}$"


def _amount(value: str) -> str:
    """The amount as the agent wrote it, if `money.parse_amount` reads it: its grammar is
    the only one (the schema's `pattern` is the same `money.AMOUNT_PATTERN`, shown)."""
    try:
        parse_amount(value)
    except MalformedAmount as error:
        raise ValueError(AMOUNT_RULE) from error
    return value


Amount = Annotated[
    str,
    AfterValidator(_amount),
    Field(
        description="Som with at most 2 decimals, as a string",
        json_schema_extra={"pattern": AMOUNT_PATTERN},
    ),
]


# --- the wire format ------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckIn(_Strict):
    """Can this account be paid, and who or what is it?"""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"service": "sochi", "account": "01904202310427"}]}
    )

    service: Service = Field(description="sochi: balance top-up by INN; eds: invoice number")
    account: str = Field(min_length=1, max_length=32, description="INN (14) or invoice (16)")


class CheckOut(BaseModel):
    service: Service
    account: str
    name: str = Field(description="Who or what the account is, for the agent's app")
    amount_due: str | None = Field(description="eds: the amount the invoice asks for")
    min_amount: str | None = Field(description="sochi: the smallest amount this agent may pay")
    max_amount: str | None = Field(description="sochi: the largest amount this agent may pay")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "service": "sochi",
                    "account": "01904202310427",
                    "name": "ОсОО «Ромашка»",
                    "amount_due": None,
                    "min_amount": "1.00",
                    "max_amount": "1000000.00",
                }
            ]
        }
    )


class PayIn(_Strict):
    """A payment. `txn_id` is the agent's idempotency key: repeat it freely."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "txn_id": "1234567",
                    "txn_date": "2026-11-21T14:30:05+06:00",
                    "service": "sochi",
                    "account": "01904202310427",
                    "amount": "500.00",
                }
            ]
        }
    )

    txn_id: str = Field(pattern=_TXN_ID, description="1–20 digits; '0090' and '90' are one")
    txn_date: str = Field(
        max_length=40, description="When the customer paid: ISO 8601 with a UTC offset"
    )
    service: Service
    account: str = Field(min_length=1, max_length=32)
    amount: Amount

    @field_validator("txn_date")
    @classmethod
    def _with_offset(cls, value: str) -> str:
        parse_txn_date(value)
        return value


class PaymentOut(BaseModel):
    """A payment as it stands now."""

    receipt: int = Field(description="Our payment number; print it on the receipt")
    txn_id: str
    service: Service
    account: str
    amount: str
    status: Literal["accepted", "reversed"]
    txn_date: datetime | None = Field(default=None, description="UTC")
    business_date: date | None = Field(default=None, description="The agent-local day")
    created_at: datetime | None = Field(default=None, description="When we accepted it, UTC")
    cancel_reason: str | None = None
    cancelled_at: datetime | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "receipt": 1001,
                    "txn_id": "1234567",
                    "service": "sochi",
                    "account": "01904202310427",
                    "amount": "500.00",
                    "status": "accepted",
                    "txn_date": "2026-11-21T08:30:05Z",
                    "business_date": "2026-11-21",
                    "created_at": "2026-11-21T08:30:06Z",
                    "cancel_reason": None,
                    "cancelled_at": None,
                }
            ]
        }
    )


class CancelIn(_Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Клиент ошибся номером ИНН"}]}
    )

    reason: str = Field(min_length=1, max_length=500, description="Why; kept with the reversal")


def parse_txn_date(value: str) -> datetime:
    """ISO 8601 with an offset, plausible as the core says (`service.txn_date_problem`):
    a field error names txn_date rather than a bare refusal."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError(t("agent.rest.datetime_format")) from error
    if moment.tzinfo is None:
        raise ValueError(t("agent.rest.timezone_needed"))
    problem = txn_date_problem(moment, datetime.now(UTC))
    if problem is not None:
        raise ValueError(problem)
    return moment


# --- rendering ------------------------------------------------------------------------


def _json(status: int, model: BaseModel, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, None, model.model_dump_json(), JSON_MEDIA_TYPE, headers)


CHALLENGE = f'{signing.SCHEME} realm="tolom"'


def _problem(problem: Problem) -> Answer:
    headers = problem_headers(problem)
    if problem.status == 401:
        headers["WWW-Authenticate"] = CHALLENGE
    return Answer(
        problem.status, None, problem_body(problem), PROBLEM_MEDIA_TYPE, tuple(headers.items())
    )


def _too_many(wait: int) -> Answer:
    """429 for an address that sent too many requests without a valid signature."""
    problem = make_problem("too_many_requests", t("agent.rest.too_many_strangers", wait=wait))
    headers = (("Retry-After", str(wait)),)
    return Answer(429, None, problem_body(problem), PROBLEM_MEDIA_TYPE, headers)


def _check_answer(service: Service, account: str) -> Callable[[CheckResult], Answer]:
    def answer(result: CheckResult) -> Answer:
        if result.outcome is not Outcome.OK:
            return _problem(make_problem(PAY_PROBLEMS[result.outcome], result.message))
        return _json(
            200,
            CheckOut(
                service=service,
                account=account,
                name=result.display_name or "",
                amount_due=_som(result.amount_due),
                min_amount=_som(result.min_amount),
                max_amount=_som(result.max_amount),
            ),
        )

    return answer


def _pay_answer(request: PayIn, exchange: Exchange) -> Callable[[PayResult], Answer]:
    """Render a pay; the core has put the payment's key (txn_id as stored) in the exchange."""

    def answer(result: PayResult) -> Answer:
        if result.outcome is not Outcome.OK:
            code = PAY_PROBLEMS[result.outcome]
            return _problem(make_problem(code, result.message, txn_id=request.txn_id))
        assert result.payment_id is not None and result.amount is not None
        body = PaymentOut(
            receipt=result.payment_id,
            txn_id=exchange.txn_id or request.txn_id,
            service=request.service,
            account=request.account,
            amount=format_amount(result.amount),
            status="reversed" if result.status == "reversed" else "accepted",
            txn_date=result.txn_date,
            business_date=result.business_date,
            created_at=result.created_at,
            cancel_reason=result.reversal.reason if result.reversal else None,
            cancelled_at=result.reversal.created_at if result.reversal else None,
        )
        replayed = (("Idempotent-Replayed", "true"),) if result.replayed else ()
        return _json(200, body, replayed)

    return answer


def payment_out(record: PaymentRecord) -> PaymentOut:
    return PaymentOut(
        receipt=record.id,
        txn_id=record.txn_id,
        service=Service(record.service),
        account=record.account,
        amount=format_amount(record.amount),
        status="reversed" if record.status == "reversed" else "accepted",
        txn_date=record.txn_date,
        business_date=record.business_date,
        created_at=record.created_at,
        cancel_reason=record.reversal.reason if record.reversal else None,
        cancelled_at=record.reversal.created_at if record.reversal else None,
    )


def _cancel_answer(txn_id: str) -> Callable[[CancelResult], Answer]:
    def answer(result: CancelResult) -> Answer:
        if result.outcome is not CancelOutcome.OK or result.record is None:
            code = CANCEL_PROBLEMS.get(result.outcome, "temporarily_unavailable")
            return _problem(make_problem(code, result.message, txn_id=txn_id))
        replayed = (("Idempotent-Replayed", "true"),) if result.replayed else ()
        return _json(200, payment_out(result.record), replayed)

    return answer


def _status_answer(txn_id: str) -> Callable[[step.Lookup], Answer]:
    def answer(lookup: step.Lookup) -> Answer:
        if lookup.retry:
            return _problem(make_problem("temporarily_unavailable"))
        found = lookup.record
        if found is None:
            detail = t("agent.rest.payment_missing", txn_id=txn_id)
            return _problem(make_problem("payment_not_found", detail, txn_id=txn_id))
        return _json(200, payment_out(found))

    return answer


def _som(amount: int | None) -> str | None:
    return None if amount is None else format_amount(amount)


# --- the request's way through ----------------------------------------------------------

Body = TypeVar("Body", bound=BaseModel)


class _Call:
    """One agent request: read and authenticated, then interpreted by its route."""

    def __init__(self, request: Request, runtime: Runtime, command: str, body: bytes) -> None:
        self.runtime = runtime
        self.body = body
        self.method = request.method
        self.target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        self.content_type = request.headers.get("content-type", "")
        self.authorization = request.headers.get("authorization")
        self.exchange = Exchange(
            protocol="rest",
            peer=request_address(request, runtime.settings.trusted_proxies),
            method=request.method,
            params=[("path", self.target)],
            command=command,
        )

    def refuse(self, problem: Problem) -> step.Call:
        """An answer given without reaching the core; the step records it all the same."""
        if problem.status != 401:
            return step.refused(self.exchange, _problem(problem))
        return step.refused(self.exchange, _problem(problem), _too_many)

    async def authenticate(self) -> Agent:
        """The signing agent (from the cache; the database on a miss), or ProblemError."""
        claimed = signing.parse_authorization(self.authorization)
        if claimed is None:
            raise ProblemError(
                "unauthenticated",
                t("agent.rest.no_authorization", scheme=signing.SCHEME),
            )
        try:
            found = await step.agent(self.runtime, claimed.agent)
        except step.Unavailable as error:
            raise ProblemError("temporarily_unavailable") from error
        agent = found if found is not None and found.kind == GATEWAY else None
        key = agent.signing_key if agent is not None else None
        if not signing.signature_matches(key, claimed, self.method, self.target, self.body):
            detail = (
                t("agent.rest.bad_signature")
                if agent is None or key is not None
                else t("agent.rest.no_signing_key")
            )
            raise ProblemError("bad_signature", detail)
        assert agent is not None
        self.exchange.agent_id = agent.id
        if not signing.fresh(claimed.timestamp, time.time()):
            raise ProblemError(
                "stale_timestamp",
                t(
                    "agent.rest.stale_timestamp",
                    timestamp=claimed.timestamp,
                    now=int(time.time()),
                    skew=signing.MAX_SKEW_SECONDS,
                ),
            )
        if not agent.enabled:
            raise ProblemError("agent_disabled")
        if not agent.allows_address(self.exchange.peer):
            raise ProblemError("address_not_allowed")
        return agent

    def parse(self, model: type[Body]) -> Body:
        """The JSON body as `model`; ProblemError 415/422 otherwise. Logs the fields."""
        if self.content_type.split(";")[0].strip().lower() != JSON_MEDIA_TYPE:
            raise ProblemError("unsupported_media_type")
        try:
            raw = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise ProblemError("invalid_request", t("agent.rest.not_json")) from error
        except RecursionError:  # nested deeper than the parser's own limit
            raise ProblemError("invalid_request", _TOO_DEEP) from None
        if _depth(raw) > MAX_JSON_DEPTH:
            raise ProblemError("invalid_request", _TOO_DEEP)
        if isinstance(raw, dict):
            self.exchange.params += [(str(k), _loggable(v)) for k, v in raw.items()]
            if isinstance(raw.get("service"), str):
                self.exchange.service = raw["service"][:16]
            if isinstance(raw.get("txn_id"), str) and is_txn_id(raw["txn_id"]):
                self.exchange.txn_id = raw["txn_id"]
        with_nul = _fields_with_nul(raw)
        if with_nul:  # PostgreSQL text cannot hold it: refused alike on every database
            message = t("agent.rest.nul")
            raise ProblemError(
                "invalid_request",
                t("agent.invalid_request", summary=f"{', '.join(with_nul)}: {message}"),
                errors=[FieldError(field=f, message=message) for f in with_nul],
            )
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            raise invalid(error) from error


# Our bodies are flat objects; nesting this deep is an attack on the parsers, refused
# before anything walks the value recursively.
MAX_JSON_DEPTH = 32
_TOO_DEEP = t("agent.rest.too_deep", depth=MAX_JSON_DEPTH)


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if not isinstance(item, list):
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, level + 1) for child in item)
    return deepest


def _fields_with_nul(value: Any, path: str = "") -> list[str]:
    """The JSON paths of the strings (keys included) that contain U+0000."""
    if isinstance(value, str):
        return [path or "body"] if "\x00" in value else []
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found += [where] if "\x00" in str(key) else _fields_with_nul(item, where)
        return found
    if isinstance(value, list):
        return [f for n, item in enumerate(value) for f in _fields_with_nul(item, f"{path}.{n}")]
    return []


def _loggable(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)[:256]


async def _serve(
    request: Request, command: str, handle: Callable[[_Call, Agent], step.Call]
) -> Response:
    """Read the body, authenticate, let the route build its call, one gateway step."""
    runtime: Runtime = request.app.state.runtime
    too_large = False
    try:
        body = await read_limited(request, runtime.settings.max_request_bytes)
    except BodyTooLarge:
        body, too_large = b"", True
    call = _Call(request, runtime, command, body)
    if too_large:  # unread, so its signature cannot be checked: refused to anyone
        work = call.refuse(make_problem("request_too_large"))
    else:
        try:
            work = handle(call, await call.authenticate())
        except ProblemError as error:
            work = call.refuse(error.problem)
    answer = await step.execute(runtime, work)
    return Response(
        answer.body,
        status_code=answer.http_status,
        media_type=answer.media_type,
        headers=dict(answer.headers),
    )


def _txn_id_from_path(call: _Call, request_txn_id: str) -> str:
    if not is_txn_id(request_txn_id):
        raise ProblemError("invalid_request", t("agent.rest.bad_txn_id_in_path"))
    call.exchange.txn_id = request_txn_id
    return request_txn_id


# --- routes -----------------------------------------------------------------------------


# Request bodies the routes read themselves; the app adds their schemas to the document.
REQUEST_MODELS: list[type[BaseModel]] = []


def _doc(model: type[BaseModel] | None, *params: dict[str, Any]) -> dict[str, Any]:
    """What FastAPI cannot see in a raw-request route: body schema, parameters, security."""
    extra: dict[str, Any] = {"security": [{"AgentSignature": []}]}
    if model is not None:
        REQUEST_MODELS.append(model)
        extra["requestBody"] = {
            "required": True,
            "content": {
                JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    if params:
        extra["parameters"] = list(params)
    return extra


_TXN_ID_PARAM = {
    "name": "txn_id",
    "in": "path",
    "required": True,
    "description": "The agent's txn_id of the payment",
    "schema": {"type": "string", "pattern": _TXN_ID},
    "example": "1234567",
}


@router.post(
    "/check",
    summary="Check an account before paying",
    description="Says whether the account can be paid and shows who or what it is. "
    "Changes nothing.",
    responses={
        200: {"model": CheckOut, "description": "The account can be paid"},
        **responses(*_AUTH_PROBLEMS, *_ACCOUNT_PROBLEMS),
    },
    openapi_extra=_doc(CheckIn),
)
async def check(request: Request) -> Response:
    def handle(call: _Call, agent: Agent) -> step.Call:
        asked = call.parse(CheckIn)
        return step.Call(
            call.exchange,
            agent,
            step.Check(asked.service, asked.account),
            _check_answer(asked.service, asked.account),
        )

    return await _serve(request, "check", handle)


@router.post(
    "/payments",
    summary="Pay (exactly once per txn_id)",
    description="Credits the customer's balance (sochi) or pays the invoice (eds). A repeat "
    "with the same txn_id and data gets the original answer (header Idempotent-Replayed); "
    "the same txn_id with other data gets 409 txn_id_conflict. On 503 repeat the request; "
    "on 202 payment_pending (the sandbox's magic account only) repeat it after Retry-After.",
    responses={
        200: {"model": PaymentOut, "description": "Accepted (now or earlier)"},
        **responses(
            *_AUTH_PROBLEMS,
            *_ACCOUNT_PROBLEMS,
            "amount_too_small",
            "amount_too_large",
            "txn_id_conflict",
            "payment_pending",
        ),
    },
    openapi_extra=_doc(PayIn),
)
async def pay(request: Request) -> Response:
    def handle(call: _Call, agent: Agent) -> step.Call:
        asked = call.parse(PayIn)
        pay_request = PayRequest(
            service=asked.service,
            txn_id=asked.txn_id,
            account=asked.account,
            amount=parse_amount(asked.amount),  # read by PayIn's validator already
            txn_date=parse_txn_date(asked.txn_date),
            txn_date_raw=asked.txn_date,
        )
        return step.Call(
            call.exchange, agent, step.Pay(pay_request), _pay_answer(asked, call.exchange)
        )

    return await _serve(request, "pay", handle)


@router.get(
    "/payments/{txn_id}",
    summary="How a payment stands",
    description="The payment with this txn_id, accepted or reversed. 404 if we never "
    "accepted it: a pay that was refused or never arrived.",
    responses={
        200: {"model": PaymentOut, "description": "The payment"},
        **responses(*_AUTH_PROBLEMS, "payment_not_found"),
    },
    openapi_extra=_doc(None, _TXN_ID_PARAM),
)
async def payment_status(request: Request) -> Response:
    def handle(call: _Call, agent: Agent) -> step.Call:
        txn_id = _txn_id_from_path(call, request.path_params["txn_id"])
        return step.Call(call.exchange, agent, step.Status(txn_id), _status_answer(txn_id))

    return await _serve(request, "status", handle)


@router.post(
    "/payments/{txn_id}/cancel",
    summary="Cancel (reverse) a payment",
    description="Reverses the payment with a new ledger entry, within the agent's cancel "
    "window (by default the payment's own business day in the agent's zone). A top-up is "
    "reversed only while the customer's balance still holds it. Cancelling twice gives the "
    "same answer.",
    responses={
        200: {"model": PaymentOut, "description": "Reversed (now or earlier)"},
        **responses(
            *_AUTH_PROBLEMS,
            "payment_not_found",
            "cancel_window_closed",
            "balance_spent",
            "already_served",
        ),
    },
    openapi_extra=_doc(CancelIn, _TXN_ID_PARAM),
)
async def cancel_payment(request: Request) -> Response:
    def handle(call: _Call, agent: Agent) -> step.Call:
        txn_id = _txn_id_from_path(call, request.path_params["txn_id"])
        asked = call.parse(CancelIn)
        return step.Call(
            call.exchange, agent, step.Cancel(txn_id, asked.reason), _cancel_answer(txn_id)
        )

    return await _serve(request, "cancel", handle)
