"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a port the system picks."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session


class _LocalController(Controller):
    """aiosmtpd on 127.0.0.1 and port 0: learns the port the system picked."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class MailServer:
    """An SMTP server that keeps what it accepted, or refuses as told."""

    def __init__(self, **options: Any) -> None:
        self.envelopes: list[Envelope] = []
        self.refuse_rcpt: str | None = None
        self.refuse_data: str | None = None
        self._controller = _LocalController(self, hostname="127.0.0.1", port=0, **options)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> MailServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.refuse_data:
            return self.refuse_data
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        found = []
        for envelope in self.envelopes:
            assert isinstance(envelope.content, bytes)
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found
