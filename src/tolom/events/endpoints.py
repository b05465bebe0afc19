"""Webhook endpoints: where events are POSTed, which types each one wants, and its secret.

The signing secret is shown once, at creation and on rotation, in the Standard Webhooks
form `whsec_<base64>`; the table keeps the base64 part, since the worker needs the key
itself to sign, sealed with the key file (`tolom.secretbox`): a copy of the database
alone cannot sign webhooks. Every change is audit-logged in the same transaction.

An endpoint marked `sandbox` receives the sandbox agents' events and nothing else; the
others never receive them (`events.outbox`). The mark is set when the endpoint is added.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from tolom import audit, secretbox
from tolom.addresses import IPNetwork
from tolom.db.schema import webhook_endpoints
from tolom.events import targets
from tolom.events.outbox import EventType
from tolom.texts import N_, Refusal
from tolom.timestamps import as_utc

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
ALL_TYPES = "*"
MAX_URL = 2000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class EndpointError(Refusal):
    """An endpoint operation that cannot be done, worded by a catalogue key.

    `code` says which refusal it is, for callers that word it themselves (the back office
    in three languages): "name", "url", "url_scheme", "url_host", "url_credentials",
    "url_forbidden" (an internal address, see events.targets), "events", "exists",
    "not_found"."""

    def __init__(self, key: str, /, code: str = "", **values: Any) -> None:
        super().__init__(key, **values)
        self.code = code


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    name: str
    url: str
    event_types: str  # space-separated, or "*"
    enabled: bool
    created_at: datetime
    sandbox: bool = False  # receives the sandbox's events, and only them

    @property
    def destination(self) -> str:
        """Its line name in `deliveries.destination`."""
        return f"webhook:{self.id}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "events": self.event_types,
            "enabled": self.enabled,
            "sandbox": self.sandbox,
            "destination": self.destination,
            "created_at": self.created_at.isoformat(),
        }


def is_name(text: str) -> bool:
    """Whether `text` is a well-formed endpoint name (what `add` accepts)."""
    return _NAME.fullmatch(text) is not None


def _new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _check_url(url: str, allowed_networks: Iterable[IPNetwork]) -> str:
    url = url.strip()
    if len(url) > MAX_URL or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise EndpointError(N_("webhook.error.url"), "url", url=repr(url[:100]))
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise EndpointError(N_("webhook.error.url"), "url", url=repr(url)) from None
    if parts.scheme not in ("http", "https"):
        raise EndpointError(N_("webhook.error.url_scheme"), "url_scheme", url=repr(url))
    if not parts.hostname:
        raise EndpointError(N_("webhook.error.url_host"), "url_host", url=repr(url))
    if parts.username or parts.password:
        raise EndpointError(N_("webhook.error.url_credentials"), "url_credentials")
    try:
        targets.check_url(url, allowed_networks)
    except targets.TargetRefused as refused:
        raise EndpointError(refused.key, "url_forbidden", **refused.values) from None
    return url


def parse_event_types(text: str) -> str:
    """Space- or comma-separated event types (or `*`), checked and stored in one form."""
    words = text.replace(",", " ").split()
    if not words or words == [ALL_TYPES]:
        return ALL_TYPES
    known = {t.value for t in EventType}
    unknown = [w for w in words if w not in known]
    if unknown:
        raise EndpointError(
            N_("webhook.error.events"),
            "events",
            unknown=", ".join(unknown),
            allowed=", ".join(sorted(known)),
        )
    return " ".join(sorted(set(words)))


def _from_row(row: Any) -> Endpoint:
    return Endpoint(
        id=row.id,
        name=row.name,
        url=row.url,
        event_types=row.event_types,
        enabled=row.enabled,
        created_at=as_utc(row.created_at),
        sandbox=bool(row.sandbox),
    )


def load_all(conn: Connection) -> list[Endpoint]:
    return [
        _from_row(r)
        for r in conn.execute(select(webhook_endpoints).order_by(webhook_endpoints.c.name))
    ]


def get(conn: Connection, name: str) -> Endpoint:
    row = conn.execute(
        select(webhook_endpoints).where(webhook_endpoints.c.name == name)
    ).one_or_none()
    if row is None:
        raise EndpointError(N_("webhook.error.not_found"), "not_found", name=repr(name))
    return _from_row(row)


def receiver(conn: Connection, name: str) -> tuple[str, str] | None:
    """An endpoint's URL and its signing secret in clear, for a receiver of its events
    on this machine (`tolom webhook listen`); None for an unknown name."""
    row = conn.execute(
        select(webhook_endpoints.c.url, webhook_endpoints.c.secret_sealed).where(
            webhook_endpoints.c.name == name
        )
    ).first()
    if row is None:
        return None
    return str(row.url), secretbox.for_connection(conn).open(row.secret_sealed)


def add(
    conn: Connection,
    *,
    name: str,
    url: str,
    event_types: str,
    actor: str,
    address: str | None = None,
    allowed_networks: Iterable[IPNetwork] = (),
    sandbox: bool = False,
) -> tuple[int, str]:
    """Register an endpoint; returns its id and its secret (`whsec_…`, to show once).
    `sandbox`: it receives the sandbox agents' events instead of the real ones.

    An internal target is refused unless inside `allowed_networks` (the setting
    TOLOM_WEBHOOK_ALLOWED_NETWORKS): see events.targets."""
    if not is_name(name):
        raise EndpointError(N_("webhook.error.name"), "name", name=repr(name[:100]))
    url, types = _check_url(url, allowed_networks), parse_event_types(event_types)
    secret = _new_secret()
    try:
        endpoint_id = conn.execute(
            insert(webhook_endpoints)
            .values(
                name=name,
                url=url,
                secret_sealed=secretbox.for_connection(conn).seal(secret),
                event_types=types,
                enabled=True,
                sandbox=sandbox,
            )
            .returning(webhook_endpoints.c.id)
        ).scalar_one()
    except IntegrityError:  # the unique name; the caller's transaction rolls back
        raise EndpointError(N_("webhook.error.exists"), "exists", name=repr(name)) from None
    audit.record(
        conn,
        actor=actor,
        action="webhook.add",
        object_type="webhook_endpoint",
        object_id=name,
        after={"url": url, "events": types, "sandbox": sandbox},
        address=address,
    )
    return int(endpoint_id), SECRET_PREFIX + secret


def set_enabled(
    conn: Connection, name: str, enabled: bool, *, actor: str, address: str | None = None
) -> Endpoint:
    """Disabled: no new events are queued for it, and those queued wait (see docs/events.md)."""
    before = get(conn, name)
    conn.execute(
        update(webhook_endpoints).where(webhook_endpoints.c.id == before.id).values(enabled=enabled)
    )
    audit.record(
        conn,
        actor=actor,
        action="webhook.enable" if enabled else "webhook.disable",
        object_type="webhook_endpoint",
        object_id=name,
        before={"enabled": before.enabled},
        after={"enabled": enabled},
        address=address,
    )
    return get(conn, name)


def rotate_secret(conn: Connection, name: str, *, actor: str, address: str | None = None) -> str:
    """A new secret signs every request from now on, retries of older events included."""
    endpoint = get(conn, name)
    secret = _new_secret()
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint.id)
        .values(secret_sealed=secretbox.for_connection(conn).seal(secret))
    )
    audit.record(
        conn,
        actor=actor,
        action="webhook.rotate_secret",
        object_type="webhook_endpoint",
        object_id=name,
        address=address,
    )
    return SECRET_PREFIX + secret
