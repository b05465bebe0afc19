"""Notification texts: Jinja2 templates per event type, language and channel.

Templates live in the package (`tolom/templates/notifications/<language>/<event type>/`):
`subject.txt` and `body.txt` for e-mail, `sms.txt` for SMS. They see the event's payload
as `p` (a field the payload lacks is None, so optional fields are tested with
`{% if p.x is not none %}` and never crash) and filters that read the payload's amounts
and dates and write them with `formatting`, as every page and PDF does. An unknown
language falls back to Russian.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)

from tolom import formatting
from tolom.notifications.errors import NotificationError

Channel = Literal["email", "sms"]
LANGUAGES = ("ru", "ky")
FALLBACK_LANGUAGE = "ru"
_FILES: dict[Channel, tuple[str, ...]] = {"email": ("subject", "body"), "sms": ("sms",)}
_SPACES = re.compile(r"\s+")
_BLANKS = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered notification: an e-mail has a subject; an SMS is its text alone."""

    text: str
    subject: str | None = None


class _Payload(dict[str, Any]):
    """The payload as templates see it: a missing field reads as None."""

    def __missing__(self, key: str) -> None:
        return None


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return _Payload({str(k): _view(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_view(v) for v in value]
    return value


def som(tyiyn: Any) -> str:
    """The payload's amount (tyiyn) as `formatting.som` writes it: "1 500,00 сом"."""
    if isinstance(tyiyn, bool) or not isinstance(tyiyn, int):
        raise NotificationError(f"сумма в событии не в тыйынах: {tyiyn!r}")
    return formatting.som(tyiyn)


def _moment(value: Any) -> datetime | date | None:
    if value is None or isinstance(value, datetime | date):
        return value
    text = str(value)
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise NotificationError(f"дата в событии не в ISO 8601: {text!r}") from None


def day(value: Any) -> str:
    """The payload's date (or moment) as `formatting.day` writes it: DD.MM.YYYY."""
    found = _moment(value)
    return "" if found is None else formatting.day(found)


def moment(value: Any) -> str:
    """The payload's moment as `formatting.date_time` writes it (a bare date as `day`)."""
    found = _moment(value)
    if isinstance(found, datetime):
        return formatting.date_time(found)
    return day(found)


def days_ru(count: Any) -> str:
    """The Russian word for "days" agreeing with the number: 1 день, 2 дня, 5 дней."""
    number = abs(int(count))
    if number % 10 == 1 and number % 100 != 11:
        return "день"
    if number % 10 in (2, 3, 4) and number % 100 not in (12, 13, 14):
        return "дня"
    return "дней"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates, read from the installed package (works from a wheel too)."""
    env = Environment(
        loader=PackageLoader("tolom", "templates"),
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=False),
        undefined=StrictUndefined,  # a misspelt variable fails the tests, not a customer
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(som=som, day=day, moment=moment, days_ru=days_ru)
    return env


def language_of(language: str | None) -> str:
    """The language to write in: the customer's, or Russian for anything we do not know."""
    return language if language in LANGUAGES else FALLBACK_LANGUAGE


def template_name(event_type: str, language: str, part: str) -> str:
    return f"notifications/{language}/{event_type}/{part}.txt"


def has_template(event_type: str, channel: Channel, language: str = FALLBACK_LANGUAGE) -> bool:
    """Whether every part of this channel's message exists for the event type."""
    names = set(environment().list_templates(extensions=["txt"]))
    return all(template_name(event_type, language, p) in names for p in _FILES[channel])


def _one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _tidy_body(text: str) -> str:
    """No trailing spaces, at most one blank line in a row (left by skipped fields)."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)) + "\n"


def render(
    event_type: str,
    language: str | None,
    channel: Channel,
    payload: dict[str, Any],
    *,
    event_id: int | None = None,
    created_at: datetime | None = None,
) -> Rendered:
    """Render one notification; NotificationError when there is no template or data fails it."""
    lang = language_of(language)
    if not has_template(event_type, channel, lang):
        raise NotificationError(
            f"нет шаблона {channel} для события {event_type!r} (язык {lang}): "
            "о таком событии клиентов не уведомляют"
        )
    context = {"p": _view(payload), "event_id": event_id, "created_at": created_at}
    env = environment()
    try:
        parts = {
            part: env.get_template(template_name(event_type, lang, part)).render(context)
            for part in _FILES[channel]
        }
    except NotificationError:
        raise
    except (TemplateError, TypeError, ValueError, AttributeError) as error:
        raise NotificationError(
            f"шаблон {event_type}/{channel}/{lang} не отрисован: {type(error).__name__}: {error}"
        ) from None
    if channel == "sms":
        return Rendered(text=_one_line(parts["sms"]))
    return Rendered(text=_tidy_body(parts["body"]), subject=_one_line(parts["subject"]))
