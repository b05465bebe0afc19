"""Notification texts: one Jinja2 template per event type and channel, words from the catalogues.

Templates live in the package (`tolom/templates/notifications/<event type>/`): `subject.txt`
and `body.txt` for e-mail, `sms.txt` for SMS, the same for every language. Their words are
the gettext catalogues' (`tolom.texts`): a template writes `t("notify.….key", amount=…)`
and `ngettext(…)` for a number's plural, with the `t` of the customer's language, and is
rendered with the one environment (`templating.environment()`), whose `som`, `day` and
`moment` filters (`formatting`) write every amount and date as every page and PDF does.

The payload is read here, before rendering: amounts must be int tyiyn and dates ISO 8601
(else NotificationError), and they reach the template as int and date/datetime for those
filters. The template sees the payload as `p`, where a field the payload lacks is None (so
optional fields are tested with `{% if p.x is not none %}` and never crash). A language we
do not write in falls back to Russian.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from jinja2 import TemplateError

from tolom import templating, texts
from tolom.notifications.errors import NotificationError

Channel = Literal["email", "sms"]
# The languages a notification can be written in: every catalogue's. (Which of them a
# customer may choose is `billing.customers.LANGUAGES`.)
LANGUAGES = texts.LANGUAGES
FALLBACK_LANGUAGE = texts.DEFAULT
_FILES: dict[Channel, tuple[str, ...]] = {"email": ("subject", "body"), "sms": ("sms",)}
_SPACES = re.compile(r"\s+")
_BLANKS = re.compile(r"\n{3,}")

# Payload fields (at any depth: an invoice's lines too) that hold an amount in tyiyn, a date
# or a moment in ISO 8601 ("2027-11-22" or "2026-11-21T08:30:05+00:00"), and a moment only
# (written with its time by `moment`).
AMOUNTS = frozenset({"amount", "balance", "total", "unit_price"})
DATES = frozenset({"issued_at", "valid_until"})
MOMENTS = frozenset({"created_at", "settled_at"})
# The amount each message states whatever else it says: without it the text would be wrong.
REQUIRED_AMOUNT = {
    "payment.accepted": "amount",
    "payment.reversed": "amount",
    "charge.settled": "amount",
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered notification: an e-mail has a subject; an SMS is its text alone."""

    text: str
    subject: str | None = None


class _Payload(dict[str, Any]):
    """The payload as templates see it: a missing field reads as None."""

    def __missing__(self, key: str) -> None:
        return None


def amount(value: Any) -> int | None:
    """An amount of the payload: int tyiyn (or None when absent), never a float or text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise NotificationError(f"сумма в событии не в тыйынах: {value!r}")
    return value


def moment(value: Any) -> datetime | date | None:
    """A date ("2027-11-22") or a moment (ISO 8601 with its offset) of the payload."""
    if value is None or isinstance(value, datetime | date):
        return value
    text = str(value)
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise NotificationError(f"дата в событии не в ISO 8601: {text!r}") from None


def _read(value: Any, field: str | None = None) -> Any:
    if isinstance(value, dict):
        return _Payload({str(k): _read(v, str(k)) for k, v in value.items()})
    if isinstance(value, list):
        return [_read(v) for v in value]
    if field in AMOUNTS:
        return amount(value)
    if field in DATES:
        return moment(value)
    if field in MOMENTS:
        found = moment(value)
        if found is not None and not isinstance(found, datetime):
            raise NotificationError(f"время в событии без часов: {value!r}")
        return found
    return value


def read_payload(event_type: str, payload: dict[str, Any]) -> _Payload:
    """The payload with its amounts checked and its dates parsed, as templates see it."""
    found = _read(payload)
    assert isinstance(found, _Payload)
    required = REQUIRED_AMOUNT.get(event_type)
    if required is not None and found[required] is None:
        raise NotificationError(f"сумма в событии не в тыйынах: {payload.get(required)!r}")
    return found


def language_of(language: str | None) -> str:
    """The language to write in: the customer's, or Russian for anything we do not know."""
    return texts.language_of(language)


def template_name(event_type: str, part: str) -> str:
    return f"notifications/{event_type}/{part}.txt"


def has_template(event_type: str, channel: Channel) -> bool:
    """Whether every part of this channel's message exists for the event type."""
    names = set(templating.environment().list_templates(extensions=["txt"]))
    return all(template_name(event_type, p) in names for p in _FILES[channel])


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
    if not has_template(event_type, channel):
        raise NotificationError(
            f"нет шаблона {channel} для события {event_type!r} (язык {lang}): "
            "о таком событии клиентов не уведомляют"
        )
    context = {
        "p": read_payload(event_type, payload),
        "t": texts.texts(lang),
        "english": lang == "en",  # amounts as "1,500.00 KGS" (formatting.som)
        "event_id": event_id,
        "created_at": created_at,
    }
    env = templating.environment()
    try:
        parts = {
            part: env.get_template(template_name(event_type, part)).render(context)
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
