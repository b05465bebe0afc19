"""What every customer page shares: its language, its headers and how it is rendered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

from tolom.settings import get_settings
from tolom.templating import environment
from tolom.texts import DEFAULT, LANGUAGE_NAMES, LANGUAGES, N_, texts

# Not cached, not indexed, nothing loaded from elsewhere, never framed; the address may
# hold a receipt token or an invoice number, so it is never passed on.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
LANGUAGE_COOKIE = "tolom_lang"
# The header's links, in order: (path, text key). A page of the site adds its own here.
LINKS: tuple[tuple[str, str], ...] = (
    ("/pay", N_("site.pay.link")),
    ("/status", N_("site.status.link")),
    ("/apply", N_("site.apply.link")),
    ("/cabinet", N_("site.cabinet.link")),
)
BAD_CHARACTER = "\x00"  # no form of ours sends it; PostgreSQL text cannot hold it
_COOKIE_SECONDS = 365 * 24 * 3600
_LONGEST_QUERY = 200


def has_bad_characters(items: Iterable[tuple[str, Any]]) -> bool:
    """The customer pages' one guard against U+0000 in a query's or form's names and texts:
    refused alike on both databases, before any page reads them."""
    return any(
        BAD_CHARACTER in name or (isinstance(value, str) and BAD_CHARACTER in value)
        for name, value in items
    )


def language_of(request: Request) -> str:
    """The page's language: `?lang=` if we speak it, else the remembered one, else Russian."""
    for wanted in (request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if wanted in LANGUAGES:
            return str(wanted)
    return DEFAULT


def _language_links(request: Request) -> list[tuple[str, str, str]]:
    """(code, name, link) per language: the same page and query, in that language (a query
    longer than any form of ours sends is not repeated back)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    if len(request.url.query) > _LONGEST_QUERY:
        kept = []
    return [
        (code, LANGUAGE_NAMES[code], "?" + urlencode([*kept, ("lang", code)])) for code in LANGUAGES
    ]


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    language: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render `templates/site/<template>.html` (or `public/…` for the receipt page) in the
    request's language; a `?lang=` choice is remembered for the customer's next pages."""
    lang = language or language_of(request)
    name = template if "/" in template else f"site/{template}.html"
    html = (
        environment()
        .get_template(name)
        .render(
            lang=lang,
            t=texts(lang),
            languages=_language_links(request),
            path=request.url.path,
            site_links=LINKS,
            company=get_settings().company_name,
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})
    if request.query_params.get("lang") == lang:
        response.set_cookie(
            LANGUAGE_COOKIE, lang, max_age=_COOKIE_SECONDS, httponly=True, samesite="lax"
        )
    return response
