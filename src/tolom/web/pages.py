"""Rendering back-office pages: the Jinja2 templates and the headers every page carries."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, Response

from tolom.backoffice.users import Session
from tolom.web import i18n

# Pages load nothing from elsewhere, are never framed, and (they show money and people's
# names) are never stored by a browser or a proxy.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


# The header's sections: (page name, path, the action a user needs to see it or "" for all).
# A page's `page` value is its section's name or starts with "<section>-" ("payments-one").
SECTIONS = (
    ("dashboard", "/", ""),
    ("payments", "/payments", ""),
    ("reconciliation", "/reconciliation", ""),
    ("customers", "/customers", ""),
    ("invoices", "/invoices", ""),
    ("cash", "/cash", "cash"),
    ("orders", "/orders", ""),
    ("agents", "/agents", ""),
    ("events", "/events", ""),
    ("users", "/users", ""),
    ("audit", "/audit", ""),
)


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The page templates, read from the installed package (works from a wheel too)."""
    env = Environment(
        loader=PackageLoader("tolom", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a misspelt variable fails the tests, not a page
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        sections=SECTIONS, languages=i18n.LANGUAGE_NAMES, day=i18n.day, moment=i18n.moment
    )
    return env


def template_names() -> list[str]:
    return sorted(n for n in environment().list_templates(["html"]) if n.startswith("web/"))


def render_text(
    template: str,
    *,
    t: i18n.Translator,
    session: Session | None,
    page: str,
    title: str,
    here: str = "/",
    next_path: str = "/",
    **context: Any,
) -> str:
    """The page's HTML. With a session the header shows the user, their role, the logout
    and language forms (which carry the session's CSRF token)."""
    return (
        environment()
        .get_template(f"web/{template}")
        .render(
            t=t,
            user=session.user if session else None,
            csrf=session.csrf_token if session else "",
            page=page,
            title=title,
            here=here,
            next_path=next_path,
            **context,
        )
    )


def render(template: str, *, status: int = 200, **arguments: Any) -> HTMLResponse:
    return HTMLResponse(render_text(template, **arguments), status_code=status)


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
