"""The public receipt page `/r/{token}`: anyone holding a receipt's QR code or link can see
that the payment exists, its amount, time, payee and service, and whether it still stands.

No login: the token is the only key, 192 random bits. A token of the wrong shape is answered
"not found" without asking the database. Nothing on the page names the payer or the agent
(see `documents.receipts.Confirmation`). The page is not cached, not indexed, and loads
nothing from elsewhere. Russian by default; `?lang=ky` and `?lang=en` switch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import HTMLResponse

from tolom.db.engine import is_temporary
from tolom.documents import receipts
from tolom.formatting import date_time, som
from tolom.runtime import Runtime

router = APIRouter(include_in_schema=False)

LANGUAGES = ("ru", "ky", "en")
LANGUAGE_NAMES = {"ru": "Русский", "ky": "Кыргызча", "en": "English"}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",  # the token is in the address: never pass it on
    "X-Content-Type-Options": "nosniff",
}
RETRY_AFTER_SECONDS = 5

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "confirmed": "Платёж подтверждён",
        "confirmed_note": "Получатель принял этот платёж.",
        "reversed": "Платёж отменён",
        "reversed_note": "Платёж был принят, а затем отменён (сторнирован). Он недействителен.",
        "number": "Квитанция №",
        "amount": "Сумма",
        "paid_at": "Дата и время (Бишкек)",
        "payee": "Получатель",
        "service": "Услуга",
        "status": "Статус",
        "status_accepted": "Принят",
        "status_reversed": "Отменён",
        "not_found": "Квитанция не найдена",
        "not_found_note": "Проверьте ссылку или QR-код: квитанции с таким адресом нет.",
        "unavailable": "Временная ошибка",
        "unavailable_note": "Не удалось проверить квитанцию. Попробуйте открыть страницу позже.",
        "about": "Страница подтверждает только факт платежа, его сумму, время и получателя.",
        "language": "Язык",
        # service names in Russian: the services table's
    },
    "ky": {
        "confirmed": "Төлөм ырасталды",
        "confirmed_note": "Алуучу бул төлөмдү кабыл алды.",
        "reversed": "Төлөм жокко чыгарылды",
        "reversed_note": "Төлөм кабыл алынып, андан кийин жокко чыгарылган (сторно). Ал жараксыз.",
        "number": "Квитанция №",
        "amount": "Сумма",
        "paid_at": "Күнү жана убактысы (Бишкек)",
        "payee": "Алуучу",
        "service": "Кызмат",
        "status": "Абалы",
        "status_accepted": "Кабыл алынды",
        "status_reversed": "Жокко чыгарылды",
        "not_found": "Квитанция табылган жок",
        "not_found_note": "Шилтемени же QR-кодду текшериңиз: мындай квитанция жок.",
        "unavailable": "Убактылуу ката",
        "unavailable_note": "Квитанцияны текшерүү мүмкүн болгон жок. Баракты кийинчерээк "
        "ачып көрүңүз.",
        "about": "Бул барак төлөмдүн болгонун, анын суммасын, убактысын жана алуучусун гана "
        "ырастайт.",
        "language": "Тил",
        "sochi": "СОЧИ системасындагы балансты толуктоо",
        "eds": "Эсеп боюнча ЭЦП жана Рутокен ЭЦП алып жүрүүчү үчүн төлөм",
    },
    "en": {
        "confirmed": "Payment confirmed",
        "confirmed_note": "The payee has accepted this payment.",
        "reversed": "Payment reversed",
        "reversed_note": "The payment was accepted and then reversed. It is not valid.",
        "number": "Receipt No.",
        "amount": "Amount",
        "paid_at": "Date and time (Bishkek)",
        "payee": "Payee",
        "service": "Service",
        "status": "Status",
        "status_accepted": "Accepted",
        "status_reversed": "Reversed",
        "not_found": "Receipt not found",
        "not_found_note": "Check the link or the QR code: there is no receipt at this address.",
        "unavailable": "Temporary error",
        "unavailable_note": "The receipt could not be checked. Please try again later.",
        "about": "This page confirms only that the payment exists, its amount, time and payee.",
        "language": "Language",
        "sochi": "SOCHI balance top-up",
        "eds": "Invoice payment for an e-signature and a RuToken carrier",
    },
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("tolom", "templates/public"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@router.get("/r/{token:path}")
def receipt_page(request: Request, token: str) -> HTMLResponse:
    """The public confirmation of one receipt, or "not found"."""
    wanted = request.query_params.get("lang")
    language = wanted if wanted in LANGUAGES else "ru"
    if not receipts.is_token(token):  # impossible: no database call
        return _page("not_found", language, 404)
    runtime: Runtime = request.app.state.runtime
    try:
        with runtime.engine.connect() as conn:
            found = receipts.confirm(conn, token, runtime.settings)
    except SQLAlchemyError as error:
        if not is_temporary(error):
            raise
        return _page("unavailable", language, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if found is None:
        return _page("not_found", language, 404)
    english = language == "en"
    shown = {
        "number": found.number,
        "amount": som(found.amount, english=english),
        "paid_at": date_time(found.paid_at),
        "payee": found.payee,
        # Russian as the services table names them; other languages from TEXTS
        "service": found.service_name if language == "ru" else TEXTS[language][found.service],
        "reversed": found.status == "reversed",
    }
    return _page("receipt", language, 200, receipt=shown)


def _page(
    template: str,
    language: str,
    status: int,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = (
        _environment()
        .get_template(f"{template}.html")
        .render(
            lang=language,
            t=TEXTS[language],
            languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})
