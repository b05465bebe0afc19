"""RFC 9457 problem details: the one shape of every error of the JSON APIs.

Each problem has a stable machine-readable `code` (integrators branch on it), the HTTP
status that goes with it, a Russian `detail` for people, and for bad input the list of
fields at fault. Titles and field messages are catalogue texts (`agent.problem.*`,
`agent.field.*`), worded where every text agents read is (`payments.wording`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from tolom.payments.model import CancelOutcome, Outcome
from tolom.payments.wording import t
from tolom.texts import N_

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5

# code: (HTTP status, title's key). The title is constant per code; `detail` varies.
PROBLEMS: dict[str, tuple[int, str]] = {
    # Not an error: the pay is not finished yet (OSMP 90); repeat it after Retry-After with
    # the same txn_id and data. No receipt: only a 200 carries one.
    "payment_pending": (202, N_("agent.problem.payment_pending")),
    "invalid_request": (422, N_("agent.problem.invalid_request")),
    "invalid_account": (422, N_("agent.problem.invalid_account")),
    "amount_too_small": (422, N_("agent.problem.amount_too_small")),
    "amount_too_large": (422, N_("agent.problem.amount_too_large")),
    "export_too_large": (422, N_("agent.problem.export_too_large")),
    "registry_invalid": (422, N_("agent.problem.registry_invalid")),
    "unauthenticated": (401, N_("agent.problem.unauthenticated")),
    "stale_timestamp": (401, N_("agent.problem.stale_timestamp")),
    "bad_signature": (401, N_("agent.problem.bad_signature")),
    "invalid_api_key": (401, N_("agent.problem.invalid_api_key")),
    "agent_disabled": (403, N_("agent.problem.agent_disabled")),
    "address_not_allowed": (403, N_("agent.problem.address_not_allowed")),
    "service_not_allowed": (403, N_("agent.problem.service_not_allowed")),
    "insufficient_scope": (403, N_("agent.problem.insufficient_scope")),
    "account_not_found": (404, N_("agent.problem.account_not_found")),
    "payment_not_found": (404, N_("agent.problem.payment_not_found")),
    "customer_not_found": (404, N_("agent.problem.customer_not_found")),
    "invoice_not_found": (404, N_("agent.problem.invoice_not_found")),
    "account_code_not_found": (404, N_("agent.problem.account_code_not_found")),
    "charge_not_found": (404, N_("agent.problem.charge_not_found")),
    "order_not_found": (404, N_("agent.problem.order_not_found")),
    "agent_not_found": (404, N_("agent.problem.agent_not_found")),
    "discrepancy_not_found": (404, N_("agent.problem.discrepancy_not_found")),
    "not_found": (404, N_("agent.problem.not_found")),
    "method_not_allowed": (405, N_("agent.problem.method_not_allowed")),
    "account_inactive": (409, N_("agent.problem.account_inactive")),
    "invoice_already_paid": (409, N_("agent.problem.invoice_already_paid")),
    "txn_id_conflict": (409, N_("agent.problem.txn_id_conflict")),
    "reference_conflict": (409, N_("agent.problem.reference_conflict")),
    "customer_exists": (409, N_("agent.problem.customer_exists")),
    "invoice_not_cancellable": (409, N_("agent.problem.invoice_not_cancellable")),
    "cancel_window_closed": (409, N_("agent.problem.cancel_window_closed")),
    "balance_spent": (409, N_("agent.problem.balance_spent")),
    "already_served": (409, N_("agent.problem.already_served")),
    "order_state_conflict": (409, N_("agent.problem.order_state_conflict")),
    "refund_impossible": (409, N_("agent.problem.refund_impossible")),
    "customer_blocked": (409, N_("agent.problem.customer_blocked")),
    "idempotency_conflict": (409, N_("agent.problem.idempotency_conflict")),
    "charge_not_awaiting": (409, N_("agent.problem.charge_not_awaiting")),
    "charge_not_charged": (409, N_("agent.problem.charge_not_charged")),
    "day_closed": (409, N_("agent.problem.day_closed")),
    "reconciliation_refused": (409, N_("agent.problem.reconciliation_refused")),
    "request_too_large": (413, N_("agent.problem.request_too_large")),
    "unsupported_media_type": (415, N_("agent.problem.unsupported_media_type")),
    "too_many_requests": (429, N_("agent.problem.too_many_requests")),
    "temporarily_unavailable": (503, N_("agent.problem.temporarily_unavailable")),
    "internal_error": (500, N_("agent.problem.internal_error")),
}


class FieldError(BaseModel):
    """One input field at fault."""

    field: str = Field(examples=["amount"])
    message: str = Field(examples=["неверный формат"])
    line: int | None = Field(
        default=None, description="A file's line (1-based), when the fault is in a file."
    )


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (media type application/problem+json)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:tolom:problem:txn_id_conflict",
                    "title": "txn_id уже использован с другими данными",
                    "status": 409,
                    "code": "txn_id_conflict",
                    "detail": "txn_id 1234567 уже использован с другим лицевым счётом или суммой",
                }
            ]
        }
    )

    type: str = Field(description="urn:tolom:problem:{code}")
    title: str
    status: int
    code: str = Field(description="Stable machine-readable code; branch on this.")
    detail: str = Field(description="What went wrong, in Russian, for people.")
    errors: list[FieldError] | None = Field(default=None, description="Fields at fault.")
    txn_id: str | None = None


class ProblemError(Exception):
    """Raise anywhere in an API handler to answer with a problem."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        txn_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.problem = make_problem(code, detail, errors=errors, txn_id=txn_id)
        self.headers = headers or {}


def make_problem(
    code: str,
    detail: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    txn_id: str | None = None,
) -> Problem:
    status, title_key = PROBLEMS[code]
    title = t(title_key)
    return Problem(
        type=f"urn:tolom:problem:{code}",
        title=title,
        status=status,
        code=code,
        detail=detail or title,
        errors=errors,
        txn_id=txn_id,
    )


def problem_body(problem: Problem) -> str:
    return json.dumps(problem.model_dump(exclude_none=True), ensure_ascii=False)


def problem_headers(problem: Problem) -> dict[str, str]:
    """Retry-After on temporary failures and unfinished pays. (A 401's challenge depends on
    the API: its adapter adds it.)"""
    if problem.status in (202, 503):
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return {}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return Response(
        problem_body(problem),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={**problem_headers(problem), **(headers or {})},
    )


_MESSAGES = {
    "missing": N_("agent.field.missing"),
    "extra_forbidden": N_("agent.field.unknown"),
    "string_type": N_("agent.field.string"),
    "int_type": N_("agent.field.integer"),
    "int_parsing": N_("agent.field.integer"),
    "bool_type": N_("agent.field.boolean"),
    "bool_parsing": N_("agent.field.boolean"),
    "list_type": N_("agent.field.list"),
    "dict_type": N_("agent.field.object"),
    "model_type": N_("agent.field.object"),
    "model_attributes_type": N_("agent.field.object"),
    "string_pattern_mismatch": N_("agent.field.format"),
    "string_too_short": N_("agent.field.too_short"),
    "string_too_long": N_("agent.field.too_long"),
    "too_short": N_("agent.field.too_few"),
    "too_long": N_("agent.field.too_many"),
    "enum": N_("agent.field.choice"),
    "literal_error": N_("agent.field.choice"),
    "greater_than_equal": N_("agent.field.too_small"),
    "less_than_equal": N_("agent.field.too_large"),
    "greater_than": N_("agent.field.too_small"),
    "less_than": N_("agent.field.too_large"),
    "date_from_datetime_parsing": N_("agent.field.date"),
    "date_parsing": N_("agent.field.date"),
    "date_type": N_("agent.field.date"),
    "json_invalid": N_("agent.field.not_json"),
    "json_type": N_("agent.field.not_json"),
    "value_error": N_("agent.field.value"),
}


def field_errors(error: ValidationError | list[dict[str, Any]]) -> list[FieldError]:
    """Pydantic's errors as (field, Russian message); our own validators speak Russian."""
    items = error.errors() if isinstance(error, ValidationError) else error
    found = []
    for item in items[:20]:
        location = [
            str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")
        ]
        kind = str(item.get("type", ""))
        if kind == "value_error":
            message = str(item.get("ctx", {}).get("error", "")) or t(_MESSAGES[kind])
        else:
            message = t(_MESSAGES.get(kind, _MESSAGES["value_error"]))
        found.append(FieldError(field=".".join(location) or "body", message=message))
    return found


def invalid(error: ValidationError | list[dict[str, Any]]) -> ProblemError:
    """A 422 naming each field at fault."""
    errors = field_errors(error)
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return ProblemError(
        "invalid_request", t("agent.invalid_request", summary=summary), errors=errors
    )


def responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """The `responses` entry of a route for these problem codes, for the OpenAPI document."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(PROBLEMS[code][0], []).append(code)
    return {
        status: {
            "description": ", ".join(found),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status, found in sorted(by_status.items())
    }


# The one map from the core's outcomes to problem codes: the agents' REST API, the
# operator API's reversals and manual payments all answer a core refusal with these.
PAY_PROBLEMS: dict[Outcome, str] = {
    Outcome.RETRY: "temporarily_unavailable",
    Outcome.BAD_ACCOUNT: "invalid_account",
    Outcome.NOT_FOUND: "account_not_found",
    Outcome.INACTIVE: "account_inactive",
    Outcome.FORBIDDEN: "service_not_allowed",
    Outcome.ALREADY_PAID: "invoice_already_paid",
    Outcome.TOO_SMALL: "amount_too_small",
    Outcome.TOO_LARGE: "amount_too_large",
    Outcome.CONFLICT: "txn_id_conflict",
    Outcome.MALFORMED: "invalid_request",
    Outcome.PENDING: "payment_pending",  # the sandbox's magic account only
}
CANCEL_PROBLEMS: dict[CancelOutcome, str] = {
    CancelOutcome.RETRY: "temporarily_unavailable",
    CancelOutcome.NOT_FOUND: "payment_not_found",
    CancelOutcome.WINDOW_CLOSED: "cancel_window_closed",
    CancelOutcome.BALANCE_SPENT: "balance_spent",
    CancelOutcome.ALREADY_SERVED: "already_served",
    CancelOutcome.MALFORMED: "invalid_request",
}
