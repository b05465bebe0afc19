"""A webhook receiver to watch what Tolom sends (`tolom webhook listen`).

For development, the demo and integrators checking their own receiver against ours: it
verifies each request's signature, deduplicates by event id as docs/events.md asks every
receiver to, and prints what arrived. It can refuse the first requests on purpose to show
the retries. Not for production: a real receiver stores the event id in its own database.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tolom.events import webhooks
from tolom.texts import Texts, texts

MAX_BODY = 1024 * 1024


class Inbox:
    """What the receiver has seen: every event id once, and how many requests it refused."""

    def __init__(
        self,
        secret: str,
        out: Callable[[str], None],
        refuse_first: int = 0,
        t: Texts | None = None,
    ) -> None:
        self.secret = secret
        self.out = out
        self.t = t or texts(None)  # what it prints: Russian unless told
        self.refuse_left = refuse_first
        self.seen: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        """Handle one request; returns the HTTP status to answer."""
        try:
            webhooks.verify(self.secret, headers, body)
        except webhooks.WebhookVerificationError as error:
            self.out(self.t("inbox.refused", error=str(error)))
            return 401
        event = json.loads(body)
        with self._lock:
            if self.refuse_left > 0:
                self.refuse_left -= 1
                self.out(self.t("inbox.refusing", id=event["id"], type=event["type"]))
                return 503
            repeat = str(event["id"]) in self.seen
            self.seen.add(str(event["id"]))
            if not repeat:
                self.events.append(event)
        if repeat:
            self.out(self.t("inbox.repeat", id=event["id"], type=event["type"]))
        else:
            data = json.dumps(event["data"], ensure_ascii=False)
            self.out(self.t("inbox.received", id=event["id"], type=event["type"], data=data))
        return 204


def server(url: str, inbox: Inbox) -> ThreadingHTTPServer:
    """An HTTP server on the host and port of `url` that hands POSTs to its path to `inbox`."""
    parts = urlsplit(url)
    path = parts.path or "/"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if self.path != path or not 0 < length <= MAX_BODY:
                self.send_response(404 if self.path != path else 400)
                self.end_headers()
                return
            status = inbox.receive(dict(self.headers.items()), self.rfile.read(length))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the inbox prints what matters."""

    return ThreadingHTTPServer((parts.hostname or "127.0.0.1", parts.port or 80), Handler)
