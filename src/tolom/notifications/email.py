"""E-mail: one UTF-8 plain-text message through SMTP, or to the log (console backend).

Standard library only (smtplib, email.message). Every failure — the server out of
reach, a TLS or AUTH failure, an SMTP 4xx/5xx answer, a timeout — becomes a
NotificationError with a short reason, and the worker retries later.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from tolom.notifications.errors import NotificationError
from tolom.settings import Settings

log = logging.getLogger(__name__)
MAX_REASON = 200


def build_message(
    settings: Settings, *, to: str, subject: str, text: str, event_id: int | None = None
) -> EmailMessage:
    """The message as it is sent: From, To, Subject, Date, Message-ID and a UTF-8 body."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    idstring = f"tolom.event.{event_id}" if event_id is not None else "tolom"
    message["Message-ID"] = make_msgid(idstring=idstring, domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    if event_id is not None:
        message["X-Tolom-Event"] = str(event_id)
    # base64: safe through any relay, 8BITMIME or not; readers decode it transparently.
    message.set_content(text, charset="utf-8", cte="base64")
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    """Send through the configured backend; NotificationError when it was not sent."""
    if settings.email_backend == "console":
        log.info(
            "e-mail (console backend) to %s, subject %r:\n%s",
            message["To"],
            str(message["Subject"]),
            message.get_content(),
        )
        return
    _send_smtp(settings, message)


def _reason(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON]


def _answer(code: int, text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return _reason(f"{code} {raw}")


def _send_smtp(settings: Settings, message: EmailMessage) -> None:
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    client: smtplib.SMTP | None = None
    try:
        context = ssl.create_default_context()
        if settings.smtp_security == "ssl":
            client = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=settings.smtp_timeout_seconds,
                context=context,
            )
        else:
            client = smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
            )
        if settings.smtp_security == "starttls":
            client.starttls(context=context)
        if settings.smtp_username:
            client.login(settings.smtp_username, settings.smtp_password)
        client.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        answers = "; ".join(_answer(code, text) for code, text in error.recipients.values())
        raise NotificationError(f"SMTP {where}: получатель отклонён: {answers}") from None
    except smtplib.SMTPAuthenticationError as error:
        raise NotificationError(
            f"SMTP {where}: вход не удался: {_answer(error.smtp_code, error.smtp_error)}"
        ) from None
    except smtplib.SMTPResponseException as error:
        raise NotificationError(
            f"SMTP {where}: сервер отказал: {_answer(error.smtp_code, error.smtp_error)}"
        ) from None
    except smtplib.SMTPException as error:
        raise NotificationError(
            f"SMTP {where}: {_reason(str(error) or type(error).__name__)}"
        ) from None
    except OSError as error:  # refused, unreachable, timeout, TLS
        reason = error.strerror or str(error) or type(error).__name__
        raise NotificationError(f"SMTP {where} недоступен: {_reason(reason)}") from None
    finally:
        if client is not None:
            _quit(client)


def _quit(client: smtplib.SMTP) -> None:
    """Say goodbye; a failure here does not undo a message already accepted."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
