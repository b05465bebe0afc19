"""Send one notification delivery (the worker calls this for `email` and `sms` destinations).

Contract with `tolom.events.worker`: `deliver` renders the event's template in the
recipient's language and sends it; it returns on success and raises `NotificationError`
(or any exception) on failure, and the worker retries with backoff.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from tolom.notifications import email, sms
from tolom.notifications.errors import NotificationError
from tolom.notifications.templates import Rendered, render
from tolom.settings import Settings

__all__ = ["NotificationError", "deliver", "send_direct"]


def deliver(
    settings: Settings,
    *,
    destination: Literal["email", "sms"],
    recipient: str,
    language: str,
    event_type: str,
    event_id: int,
    payload: dict[str, Any],
    created_at: datetime,
) -> None:
    """Render and send one notification.

    Raises NotificationError when there is no template for the event type and channel,
    when the payload cannot fill it, or when the server refuses or cannot be reached.
    """
    if destination not in ("email", "sms"):
        raise NotificationError(f"неизвестный канал уведомления {destination!r}")
    if not recipient:
        raise NotificationError(f"нет получателя для {destination}")
    rendered = render(
        event_type, language, destination, payload, event_id=event_id, created_at=created_at
    )
    _send(settings, destination, recipient, rendered, event_id=event_id)


def send_direct(
    settings: Settings,
    *,
    destination: Literal["email", "sms"],
    recipient: str,
    language: str,
    message_type: str,
    payload: dict[str, Any],
) -> None:
    """Render and send a message that is no event and must not be kept in the outbox (a
    sign-in code: only its hash is stored). Sent once, now; raises NotificationError when
    it was not sent, and the caller decides what the person is told."""
    rendered = render(message_type, language, destination, payload)
    _send(settings, destination, recipient, rendered, event_id=None)


def _send(
    settings: Settings,
    destination: Literal["email", "sms"],
    recipient: str,
    rendered: Rendered,
    *,
    event_id: int | None,
) -> None:
    if destination == "sms":
        sms.send(settings, to=recipient, text=rendered.text)
        return
    try:
        message = email.build_message(
            settings,
            to=recipient,
            subject=rendered.subject or "",
            text=rendered.text,
            event_id=event_id,
        )
    except (ValueError, TypeError) as error:  # e.g. a From or To no header can carry
        raise NotificationError(f"письмо не собрано: {error}") from None
    email.send(settings, message)
