"""RFC 9457 problem details: the one shape of every error of the JSON APIs.

Each problem has a stable machine-readable `code` (integrators branch on it), the HTTP
status that goes with it, a Russian `detail` for people, and for bad input the list of
fields at fault.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from tolom.payments.model import CancelOutcome, Outcome

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5

# code: (HTTP status, title). The title is constant per code; `detail` varies.
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid_request": (422, "Неверный запрос"),
    "invalid_account": (422, "Неверный формат лицевого счёта"),
    "amount_too_small": (422, "Сумма меньше допустимой"),
    "amount_too_large": (422, "Сумма больше допустимой"),
    "export_too_large": (422, "Слишком много платежей для одной выгрузки"),
    "registry_invalid": (422, "Файл реестра отклонён"),
    "unauthenticated": (401, "Нужна аутентификация"),
    "stale_timestamp": (401, "Метка времени подписи вне допустимого окна"),
    "bad_signature": (401, "Подпись запроса неверна"),
    "invalid_api_key": (401, "Неверный или отозванный ключ API"),
    "agent_disabled": (403, "Агент отключён"),
    "address_not_allowed": (403, "Запрос с неразрешённого адреса"),
    "service_not_allowed": (403, "Услуга недоступна для этого агента"),
    "insufficient_scope": (403, "Недостаточно прав ключа API"),
    "account_not_found": (404, "Лицевой счёт не найден"),
    "payment_not_found": (404, "Платёж не найден"),
    "customer_not_found": (404, "Абонент не найден"),
    "invoice_not_found": (404, "Счёт не найден"),
    "account_code_not_found": (404, "Счёт учёта не найден"),
    "charge_not_found": (404, "Списание не найдено"),
    "order_not_found": (404, "Заказ не найден"),
    "agent_not_found": (404, "Агент не найден"),
    "discrepancy_not_found": (404, "Расхождение не найдено"),
    "not_found": (404, "Не найдено"),
    "method_not_allowed": (405, "Метод не поддерживается"),
    "account_inactive": (409, "Лицевой счёт не активен"),
    "invoice_already_paid": (409, "Счёт уже оплачен"),
    "txn_id_conflict": (409, "txn_id уже использован с другими данными"),
    "reference_conflict": (409, "Ссылка уже использована с другими данными"),
    "customer_exists": (409, "Абонент с таким ИНН уже есть"),
    "invoice_not_cancellable": (409, "Счёт нельзя аннулировать"),
    "cancel_window_closed": (409, "Срок отмены истёк"),
    "balance_spent": (409, "Сумма уже израсходована с баланса"),
    "already_served": (409, "Оплаченное уже выдано"),
    "order_state_conflict": (409, "Заказ в состоянии, которое этого не допускает"),
    "refund_impossible": (409, "Возврат некуда зачислить"),
    "customer_blocked": (409, "Абонент заблокирован"),
    "idempotency_conflict": (409, "Ключ идемпотентности уже использован с другими данными"),
    "charge_not_awaiting": (409, "Списание уже не ожидает оплаты"),
    "charge_not_charged": (409, "Списание не проведено"),
    "day_closed": (409, "День сверки закрыт"),
    "reconciliation_refused": (409, "Сверка не допускает этого действия"),
    "request_too_large": (413, "Слишком большой запрос"),
    "unsupported_media_type": (415, "Нужен Content-Type: application/json"),
    "too_many_requests": (429, "Слишком много запросов, повторите позже"),
    "temporarily_unavailable": (503, "Временная ошибка, повторите запрос позже"),
    "internal_error": (500, "Внутренняя ошибка"),
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
    status, title = PROBLEMS[code]
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
    """Retry-After on temporary failures. (A 401's challenge depends on the API: its
    adapter adds it.)"""
    if problem.status == 503:
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
    "missing": "обязательное поле",
    "extra_forbidden": "неизвестное поле",
    "string_type": "нужна строка",
    "int_type": "нужно целое число",
    "int_parsing": "нужно целое число",
    "bool_type": "нужно true или false",
    "bool_parsing": "нужно true или false",
    "list_type": "нужен список",
    "dict_type": "нужен объект",
    "model_type": "нужен объект",
    "model_attributes_type": "нужен объект",
    "string_pattern_mismatch": "неверный формат",
    "string_too_short": "слишком короткое значение",
    "string_too_long": "слишком длинное значение",
    "too_short": "слишком мало элементов",
    "too_long": "слишком много элементов",
    "enum": "недопустимое значение",
    "literal_error": "недопустимое значение",
    "greater_than_equal": "слишком малое значение",
    "less_than_equal": "слишком большое значение",
    "greater_than": "слишком малое значение",
    "less_than": "слишком большое значение",
    "date_from_datetime_parsing": "нужна дата ГГГГ-ММ-ДД",
    "date_parsing": "нужна дата ГГГГ-ММ-ДД",
    "date_type": "нужна дата ГГГГ-ММ-ДД",
    "json_invalid": "тело запроса — не JSON",
    "json_type": "тело запроса — не JSON",
    "value_error": "неверное значение",
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
            message = str(item.get("ctx", {}).get("error", "")) or _MESSAGES[kind]
        else:
            message = _MESSAGES.get(kind, "неверное значение")
        found.append(FieldError(field=".".join(location) or "body", message=message))
    return found


def invalid(error: ValidationError | list[dict[str, Any]]) -> ProblemError:
    """A 422 naming each field at fault."""
    errors = field_errors(error)
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return ProblemError("invalid_request", f"Неверный запрос: {summary}", errors=errors)


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
}
CANCEL_PROBLEMS: dict[CancelOutcome, str] = {
    CancelOutcome.RETRY: "temporarily_unavailable",
    CancelOutcome.NOT_FOUND: "payment_not_found",
    CancelOutcome.WINDOW_CLOSED: "cancel_window_closed",
    CancelOutcome.BALANCE_SPENT: "balance_spent",
    CancelOutcome.ALREADY_SERVED: "already_served",
    CancelOutcome.MALFORMED: "invalid_request",
}
