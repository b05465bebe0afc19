"""The public receipt page `/r/{token}`: anyone holding a receipt's QR code or link can see
that the payment exists, its amount, time, payee and service, and whether it still stands.

No login: the token is the only key, 192 random bits. A token of the wrong shape is answered
"not found" without asking the database. Nothing on the page names the payer or the agent
(see `documents.receipts.Confirmation`). The page is not cached, not indexed, and loads
nothing from elsewhere. Russian by default; `?lang=ky` and `?lang=en` switch.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from tolom.db import DatabaseError
from tolom.db.engine import is_temporary
from tolom.documents import receipts
from tolom.formatting import date_time, som
from tolom.runtime import Runtime
from tolom.site import pages
from tolom.texts import DEFAULT, N_, text

router = APIRouter(include_in_schema=False)

# The receipt page has no form: it may post nowhere (the token is in the address).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
}
RETRY_AFTER_SECONDS = 5

# The services' names in Kyrgyz and English (Russian: as the services table names them).
SERVICE_NAMES = {
    "sochi": N_("receipt.public.service.sochi"),
    "eds": N_("receipt.public.service.eds"),
}


@router.get("/r/{token:path}")
def receipt_page(request: Request, token: str) -> HTMLResponse:
    """The public confirmation of one receipt, or "not found"."""
    language = pages.language_of(request)
    if not receipts.is_token(token):  # impossible: no database call
        return _page(request, "not_found", language, 404)
    runtime: Runtime = request.app.state.runtime
    try:
        with runtime.engine.connect() as conn:
            found = receipts.confirm(conn, token, runtime.settings)
    except DatabaseError as error:
        if not is_temporary(error):
            raise
        return _page(
            request, "unavailable", language, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    if found is None:
        return _page(request, "not_found", language, 404)
    english = language == "en"
    shown = {
        "number": found.number,
        "amount": som(found.amount, english=english),
        "paid_at": date_time(found.paid_at),
        "payee": found.payee,
        "service": _service_name(found, language),
        "reversed": found.status == "reversed",
    }
    return _page(request, "receipt", language, 200, receipt=shown)


def _service_name(found: receipts.Confirmation, language: str) -> str:
    """Russian as the services table names the service; other languages from the catalogues
    (a service added later: its Russian name)."""
    key = SERVICE_NAMES.get(found.service)
    return found.service_name if language == DEFAULT or key is None else text(language, key)


def _page(
    request: Request,
    template: str,
    language: str,
    status: int,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    return pages.render(
        request,
        f"public/{template}.html",
        status=status,
        headers={**HEADERS, **(headers or {})},
        language=language,
        **context,
    )
