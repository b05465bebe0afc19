"""Webhook endpoints (core and CLI) and the Standard Webhooks signature, against a real
receiver on 127.0.0.1. `Receiver` is shared with tests/core/events/test_worker.py."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import Result

from tests.factories import REPO, run_cli
from tolom import audit, secretbox
from tolom.db.schema import deliveries, webhook_endpoints
from tolom.events import endpoints, outbox, webhooks
from tolom.events.outbox import EventType
from tolom.events.worker import Worker, retry_delay
from tolom.settings import Settings

# The receivers here listen on 127.0.0.1, an internal address webhooks go to only when
# allowed (TOLOM_WEBHOOK_ALLOWED_NETWORKS; see tests/core/events/test_webhook_targets.py).
LOCAL = [ipaddress.ip_network("127.0.0.1/32")]

# --- a real receiver ------------------------------------------------------------------


@dataclass
class Hit:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 recording every request. `respond(n, hit)` answers the
    n-th request (from 0) with a status and may block. Like a well-behaved receiver, it
    applies each event id's effect once (`effects`) however often the event arrives."""

    respond: Callable[[int, Hit], int] = lambda n, hit: 200
    secret: str = ""
    require_signature: bool = True  # False: any HTTP client (e.g. an SMS gateway)
    hits: list[Hit] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)  # event ids, in the order applied
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight_per_id: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        verified = True
        try:
            webhooks.verify(self.secret, headers, body)
        except webhooks.WebhookVerificationError:
            verified = False
        hit = Hit(headers, body, verified)
        with self.lock:
            n = len(self.hits)
            self.hits.append(hit)
            self.in_flight[hit.id] = self.in_flight.get(hit.id, 0) + 1
            self.max_in_flight_per_id = max(self.max_in_flight_per_id, self.in_flight[hit.id])
        try:
            status = self.respond(n, hit) if verified or not self.require_signature else 401
            with self.lock:
                if 200 <= status < 300 and hit.id not in self.effects:
                    self.effects.append(hit.id)
            return status
        finally:
            with self.lock:
                self.in_flight[hit.id] -= 1

    def ids(self) -> list[str]:
        with self.lock:
            return [h.id for h in self.hits]


@contextmanager
def receiving(receiver: Receiver, path: str = "/hooks") -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.handle(headers, body) if self.path == path else 404
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle(self) -> None:
            with suppress(BrokenPipeError, ConnectionResetError):  # the worker was killed
                super().handle()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- shared helpers ---------------------------------------------------------------------


def add_endpoint(engine: Engine, receiver: Receiver, name: str = "sochi", types: str = "*") -> int:
    """Register the receiver as an endpoint; it learns its secret."""
    with engine.begin() as conn:
        endpoint_id, receiver.secret = endpoints.add(
            conn,
            name=name,
            url=receiver.url,
            event_types=types,
            actor="test",
            allowed_networks=LOCAL,
        )
    return endpoint_id


def payment_payload(payment_id: int, customer_id: int = 1) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "service": "sochi",
        "account": "01234567890123",
        "amount": 50000,
        "agent": "optima",
        "txn_id": str(1000 + payment_id),
        "business_date": "2025-03-01",
        "created_at": "2025-03-01T10:00:00+00:00",
        "inn": "01234567890123",
        "customer_name": "ОсОО «Тест»",
        "invoice_number": None,
        "balance": 50000 * payment_id,
    }


def emit(
    engine: Engine,
    key: str = "customer:1",
    type: EventType = EventType.PAYMENT_ACCEPTED,
    customer_id: int | None = None,
) -> int:
    with engine.begin() as conn:
        return outbox.emit(
            conn,
            type,
            ordering_key=key,
            payload=payment_payload(1),
            customer_id=customer_id,
        )


def fast(settings: Settings, **changes: Any) -> Settings:
    """Worker settings for tests: short waits everywhere, receivers on 127.0.0.1 allowed."""
    return settings.model_copy(
        update={
            "worker_poll_seconds": 0.05,
            "webhook_timeout_seconds": 10.0,
            "webhook_allowed_networks": LOCAL,
            **changes,
        }
    )


# --- the signature ------------------------------------------------------------------------

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_BODY = b'{"test": 2432232314}'


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    """The spec's published example, so receivers can use any Standard Webhooks library."""
    signature = webhooks.sign(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, SPEC_BODY)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_the_signed_request_and_refuses_tampering() -> None:
    body = b'{"id":7,"type":"payment.accepted"}'
    headers = webhooks.headers(SPEC_SECRET, 7, body, timestamp=1_700_000_000)
    webhooks.verify(SPEC_SECRET, headers, body, now=1_700_000_100)
    webhooks.verify(SPEC_SECRET.removeprefix("whsec_"), headers, body, now=1_700_000_100)
    upper = {k.upper(): v for k, v in headers.items()}  # header names are case-insensitive
    webhooks.verify(SPEC_SECRET, upper, body, now=1_700_000_000)
    rotated = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}
    webhooks.verify(SPEC_SECRET, rotated, body, now=1_700_000_000)

    other_secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    refusals: list[tuple[str, dict[str, str], bytes, float]] = [
        (SPEC_SECRET, headers, body.replace(b"7", b"8"), 1_700_000_000),  # tampered body
        (other_secret, headers, body, 1_700_000_000),  # wrong secret
        (SPEC_SECRET, {**headers, "webhook-id": "8"}, body, 1_700_000_000),  # another id
        (SPEC_SECRET, headers, body, 1_700_000_301),  # too old: replay
        (SPEC_SECRET, headers, body, 1_699_999_699),  # from the future
        (SPEC_SECRET, {"webhook-id": "7"}, body, 1_700_000_000),  # headers missing
    ]
    for secret, sent, received, now in refusals:
        with pytest.raises(webhooks.WebhookVerificationError):
            webhooks.verify(secret, sent, received, now=now)


def test_the_worker_posts_a_signed_envelope(engine: Engine, settings: Settings) -> None:
    with receiving(Receiver()) as receiver:
        add_endpoint(engine, receiver)
        event_id = emit(engine, key="customer:5", customer_id=None)
        Worker(fast(settings), engine).run(once=True)

    [hit] = receiver.hits
    assert hit.verified
    assert hit.headers["webhook-id"] == str(event_id)
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["user-agent"] == "Tolom-Webhooks/1"
    assert hit.headers["webhook-signature"].startswith("v1,")
    envelope = json.loads(hit.body)
    assert set(envelope) == {"id", "type", "created_at", "data"}
    assert envelope["id"] == event_id
    assert envelope["type"] == "payment.accepted"
    assert envelope["data"] == payment_payload(1)
    assert envelope["created_at"].endswith("+00:00")
    # The receiver's check fails for a body changed in transit.
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(receiver.secret, hit.headers, hit.body.replace(b"50000", b"90000"))


def test_a_redirect_is_a_failed_attempt(engine: Engine, settings: Settings) -> None:
    """Redirects are not followed: the signed request goes only where it was configured."""
    with receiving(Receiver(respond=lambda n, hit: 307)) as receiver:
        add_endpoint(engine, receiver)
        emit(engine)
        Worker(fast(settings), engine).run(once=True)
    with engine.connect() as conn:
        row = conn.execute(select(deliveries)).one()
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 307")


# --- endpoints through the CLI ------------------------------------------------------------


def test_endpoint_commands(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cli(*args: str) -> Result:
        return run_cli(database_url, monkeypatch, list(args))

    monkeypatch.setenv("TOLOM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")  # "cert" below
    added = cli(
        "webhook",
        "add",
        "sochi",
        "https://sochi.example.kg/hooks/tolom",
        "--events",
        "charge.settled payment.accepted",
        "--json",
    )
    assert added.exit_code == 0, added.output
    secret = json.loads(added.output)["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    with engine.connect() as conn:
        row = conn.execute(select(webhook_endpoints)).one()
        stored = secretbox.for_connection(conn).open(row.secret_sealed)
    assert stored == secret.removeprefix("whsec_")  # stored sealed, without the prefix
    assert row.event_types == "charge.settled payment.accepted"

    human = cli("webhook", "add", "cert", "http://127.0.0.1:9/x")
    assert human.exit_code == 0, human.output
    assert "whsec_" in human.output and "больше он не будет показан" in human.output

    listed = cli("webhook", "list", "--json")
    assert [(e["name"], e["events"], e["enabled"]) for e in json.loads(listed.output)] == [
        ("cert", "*", True),
        ("sochi", "charge.settled payment.accepted", True),
    ]
    assert secret not in listed.output

    for args, fragment in [
        (["webhook", "add", "x", "ftp://example.kg/"], "http:// или https://"),
        (["webhook", "add", "x", "example.kg/hooks"], "http:// или https://"),
        (["webhook", "add", "x", "https:///hooks"], "нет имени сервера"),
        (["webhook", "add", "x", "https://u:p@example.kg/"], "логин и пароль"),
        (["webhook", "add", "x", "https://example.kg:99999/"], "неверный адрес"),
        (["webhook", "add", "x", "https://e.kg/", "--events", "payment.paid"], "payment.paid"),
        (["webhook", "add", "sochi", "https://e.kg/"], "уже есть"),
        (["webhook", "add", "имя", "https://e.kg/"], "неверное имя"),
        (["webhook", "disable", "nobody"], "не найден"),
        (["webhook", "rotate-secret", "nobody"], "не найден"),
    ]:
        refused = cli(*args)
        assert refused.exit_code == 1, (args, refused.output)
        assert "Ошибка" in refused.output and fragment in refused.output, refused.output

    assert cli("webhook", "disable", "sochi").exit_code == 0
    assert "выкл" in cli("webhook", "list").output
    assert cli("webhook", "enable", "sochi").exit_code == 0
    rotated = cli("webhook", "rotate-secret", "sochi", "--json")
    assert rotated.exit_code == 0, rotated.output
    new_secret = json.loads(rotated.output)["secret"]
    assert new_secret != secret
    with engine.connect() as conn:
        sealed = conn.execute(
            select(webhook_endpoints.c.secret_sealed).where(webhook_endpoints.c.name == "sochi")
        ).scalar_one()
        assert secretbox.for_connection(conn).open(sealed) == new_secret.removeprefix("whsec_")
        trail = audit.entries(conn, object_type="webhook_endpoint", object_id="sochi")
    assert [e["action"] for e in trail] == [
        "webhook.rotate_secret",
        "webhook.enable",
        "webhook.disable",
        "webhook.add",
    ]
    assert all(e["actor"].startswith("cli:") for e in trail)
    assert all(new_secret[6:] not in json.dumps(e, default=str) for e in trail)  # no secrets


def test_an_endpoint_gets_only_the_types_it_subscribed_to(engine: Engine) -> None:
    with engine.begin() as conn:
        cert, _ = endpoints.add(
            conn, name="cert", url="https://c.kg/", event_types="order.issued", actor="test"
        )
        every, _ = endpoints.add(
            conn, name="all", url="https://a.kg/", event_types="*", actor="test"
        )
    paid = emit(engine, type=EventType.PAYMENT_ACCEPTED)
    issued = emit(engine, key="inn:1", type=EventType.ORDER_ISSUED)
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.event_id, deliveries.c.destination)).all()
    assert sorted(rows) == sorted(
        [(paid, f"webhook:{every}"), (issued, f"webhook:{every}"), (issued, f"webhook:{cert}")]
    )


# --- docs/events.md stays true --------------------------------------------------------------

DOCS = REPO / "docs" / "events.md"


def test_the_documented_python_verification_accepts_our_requests(
    engine: Engine, settings: Settings
) -> None:
    """The stdlib snippet in docs/events.md verifies a real request and refuses a tampered one."""
    snippet = next(
        block
        for block in re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
        if "def verify_webhook" in block
    )
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify_webhook = namespace["verify_webhook"]
    with receiving(Receiver()) as receiver:
        add_endpoint(engine, receiver)
        event_id = emit(engine)
        Worker(fast(settings), engine).run(once=True)
    [hit] = receiver.hits
    assert verify_webhook(receiver.secret, hit.headers, hit.body)["id"] == event_id
    with pytest.raises(ValueError):
        verify_webhook(receiver.secret, hit.headers, hit.body + b" ")


def test_the_documented_types_and_retry_schedule() -> None:
    text = DOCS.read_text()
    for event_type in EventType:
        assert f"| `{event_type.value}` |" in text
    defaults = Settings()
    for attempt in range(1, defaults.delivery_max_attempts):
        seconds = int(retry_delay(defaults, attempt))
        hours, rest = divmod(seconds, 3600)
        shown = (
            f"{hours} h" + (f" {rest // 60} min" if rest // 60 else "")
            if hours
            else f"{rest // 60} min {rest % 60} s"
            if rest >= 60
            else f"{rest} s"
        )
        assert f"| {attempt} | {shown} |" in text, (attempt, shown)
    assert f"| {defaults.delivery_max_attempts} | dead |" in text
