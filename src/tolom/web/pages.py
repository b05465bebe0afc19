"""Rendering back-office pages: the Jinja2 templates and the headers every page carries."""

from __future__ import annotations

from typing import Any

from starlette.responses import HTMLResponse, Response

from tolom.backoffice.users import Session
from tolom.templating import environment
from tolom.texts import N_
from tolom.web import i18n, labels

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


# The header's sections: (page name, path, the action a user needs to see it or "" for all,
# the name's key). A page's `page` value is its section's name or starts with "<section>-"
# ("payments-one").
SECTIONS = (
    ("dashboard", "/", "", N_("nav.dashboard")),
    ("payments", "/payments", "", N_("nav.payments")),
    ("reconciliation", "/reconciliation", "", N_("nav.reconciliation")),
    ("customers", "/customers", "", N_("nav.customers")),
    ("invoices", "/invoices", "", N_("nav.invoices")),
    ("cash", "/cash", "cash", N_("nav.cash")),
    ("orders", "/orders", "", N_("nav.orders")),
    ("applications", "/applications", "", N_("nav.applications")),
    ("agents", "/agents", "", N_("nav.agents")),
    ("simulator", "/simulator", "simulate", N_("nav.simulator")),
    ("events", "/events", "", N_("nav.events")),
    ("users", "/users", "", N_("nav.users")),
    ("audit", "/audit", "", N_("nav.audit")),
)


def template_names() -> list[str]:
    """The page templates (a name starting with "_" is a part that pages include)."""
    return sorted(
        n
        for n in environment().list_templates(["html"])
        if n.startswith("web/") and not n.startswith("web/_")
    )


# What every page's template may use beside its own context.
_SHARED = {
    "sections": SECTIONS,
    "languages": i18n.LANGUAGE_NAMES,
    "day": i18n.day,
    "moment": i18n.moment,
    "labels": labels.FOR_TEMPLATES,
}


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
            _SHARED,
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
