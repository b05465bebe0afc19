"""Send one notification delivery (the worker calls this for `email` and `sms` destinations).

Contract with `tolom.events.worker`: `deliver` renders the event's template in the
recipient's language and sends it; it returns on success and raises `NotificationError`
(or any exception) on failure, and the worker retries with backoff.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from tolom.settings import Settings


class NotificationError(Exception):
    """Sending failed; worth retrying later."""


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
    """Render and send one notification."""
    raise NotificationError("notifications are not implemented yet")
