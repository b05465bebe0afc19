"""SMS: a short text through the company's HTTP SMS gateway, or to the log (console).

The gateway contract (docs/notifications.md): `POST {TOLOM_SMS_URL}` with
`Authorization: Bearer {TOLOM_SMS_TOKEN}` and the JSON body
`{"to": "+996555123456", "text": "…", "sender": "{TOLOM_SMS_SENDER}"}`; any 2xx answer
means the gateway took the message, anything else (or no answer) is a failure to retry.
"""

from __future__ import annotations

import logging

import httpx

from tolom.notifications.errors import NotificationError
from tolom.settings import Settings

log = logging.getLogger(__name__)
MAX_REASON = 200

# GSM 03.38 basic alphabet (7-bit): 160 characters in one SMS, 153 per part of a longer one.
# Anything else — Cyrillic included — is sent as UCS-2: 70 in one SMS, 67 per part.
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def parts(text: str) -> int:
    """How many SMS parts the text takes (the gateway bills each)."""
    if set(text) <= GSM7:
        single, multi, length = 160, 153, len(text)
    else:
        single, multi, length = 70, 67, len(text.encode("utf-16-le")) // 2
    if length <= single:
        return 1
    return -(-length // multi)


def send(settings: Settings, *, to: str, text: str) -> None:
    """Send one SMS through the configured backend; NotificationError when not sent."""
    if settings.sms_backend == "console":
        log.info("SMS (console backend) to %s: %s", to, text)
        return
    if not settings.sms_url:
        raise NotificationError("SMS: не задан адрес шлюза (TOLOM_SMS_URL)")
    headers = {"Authorization": f"Bearer {settings.sms_token}"} if settings.sms_token else {}
    body = {"to": to, "text": text, "sender": settings.sms_sender}
    try:
        response = httpx.post(
            settings.sms_url,
            json=body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reason = " ".join((str(error) or type(error).__name__).split())[:MAX_REASON]
        raise NotificationError(f"SMS-шлюз недоступен: {reason}") from None
    if not response.is_success:
        answer = " ".join(response.text.split())[:MAX_REASON]
        raise NotificationError(
            f"SMS-шлюз ответил {response.status_code}" + (f": {answer}" if answer else "")
        )
