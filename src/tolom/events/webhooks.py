"""Signed webhook requests, following Standard Webhooks (https://www.standardwebhooks.com).

Each request carries `webhook-id` (the event id: the same on every retry, so receivers
deduplicate by it), `webhook-timestamp` (unix seconds, fresh on every attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
The body is encoded once and those exact bytes are both signed and sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

import httpx

from tolom.addresses import IPNetwork
from tolom.events import pinned, targets
from tolom.events.endpoints import SECRET_PREFIX
from tolom.events.outbox import encode

USER_AGENT = "Tolom-Webhooks/1"
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookFailed(Exception):
    """The receiver did not take the event; the message is short (e.g. "HTTP 500")."""


class WebhookVerificationError(Exception):
    """A request whose signature or timestamp does not hold."""


def envelope(event_id: int, event_type: str, created_at: datetime, payload: str) -> bytes:
    """The request body: the event around its stored JSON payload."""
    data = json.loads(payload)
    body = {"id": event_id, "type": event_type, "created_at": created_at, "data": data}
    return encode(body).encode("utf-8")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one request."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(
    secret: str, event_id: int, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": str(event_id),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, str(event_id), timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def verify(
    secret: str,
    request_headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check a received request (for receivers and tests); raises WebhookVerificationError.

    `secret` may be given with or without its `whsec_` prefix. Several space-separated
    signatures are allowed (the spec's key rotation); one valid `v1` signature is enough.
    """
    lowered = {k.lower(): v for k, v in request_headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        offered = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook headers") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in offered):
        raise WebhookVerificationError("no matching signature")


def client(timeout: float, allowed_networks: Iterable[IPNetwork] = ()) -> httpx.Client:
    """One client per worker, shared by its threads; redirects are failures, not followed.

    It connects only to public addresses and those in `allowed_networks`, checked after
    resolution and pinned for the connection (events.pinned.PinnedTransport)."""
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        transport=pinned.PinnedTransport(allowed_networks),
    )


def post(
    http: httpx.Client,
    url: str,
    secret: str,
    event_id: int,
    body: bytes,
    allowed_networks: Iterable[IPNetwork] = (),
) -> int:
    """POST one event; returns the 2xx status or raises WebhookFailed ("адрес запрещён: …"
    for a target refused here or by the client, which checks every resolved address)."""
    try:
        # Also for endpoints stored before the check existed, and for spellings of an
        # address httpx would reject with a less telling error (0177.0.0.1).
        targets.check_literal(url, allowed_networks)
        response = http.post(url, content=body, headers=headers(secret, event_id, body))
    except targets.TargetRefused as refused:
        raise WebhookFailed(shorten(str(refused))) from None
    except httpx.TimeoutException:
        raise WebhookFailed("timeout") from None
    except httpx.HTTPError as error:
        raise WebhookFailed(shorten(f"{type(error).__name__}: {error}")) from None
    if not response.is_success:
        raise WebhookFailed(f"HTTP {response.status_code}")
    return response.status_code


def shorten(text: str, limit: int = 200) -> str:
    """At most `limit` characters, for a delivery's last_error."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
