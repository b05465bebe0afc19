"""Customer notifications: the templates in Russian, Kyrgyz and English (one template per event
type and channel, its words from the gettext catalogues), e-mail through a real SMTP
server (aiosmtpd) started by the test, SMS through a real HTTP gateway on 127.0.0.1, the
console backends, and a top-up whose e-mail and SMS go out from the outbox."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import Engine, select, update

from tests.factories import Gateway, add_customer
from tests.mailserver import MailServer
from tolom import formatting
from tolom.billing import charges, customers, invoices
from tolom.db.schema import deliveries, events, payments
from tolom.events.outbox import NOTIFIED, EventType
from tolom.events.worker import Worker
from tolom.money import format_amount
from tolom.notifications import sms, templates
from tolom.notifications.dispatch import NotificationError, deliver
from tolom.payments import service
from tolom.payments.model import CancelOutcome
from tolom.settings import Settings

INN = "01904202310427"
INVOICE = "4000000000000017"
NOW = datetime(2026, 11, 21, 8, 30, 5, tzinfo=UTC)

# Realistic payloads of every notified type, as the core emits them (docs/events.md).
PAYLOADS: dict[str, dict[str, Any]] = {
    "payment.accepted": {
        "payment_id": 1001,
        "service": "sochi",
        "account": INN,
        "amount": 50000,
        "agent": "optima",
        "txn_id": "1234567",
        "business_date": "2026-11-21",
        "created_at": "2026-11-21T08:30:05+00:00",
        "inn": INN,
        "customer_name": "ОсОО «Ромашка»",
        "invoice_number": None,
        "balance": 150000,
    },
    "charge.settled": {
        "charge_id": 7,
        "inn": INN,
        "customer_name": "ОсОО «Ромашка»",
        "amount": 35000,
        "status": "charged",
        "report_id": "R-2026-000123",
        "state_body": "sti",
        "form": "vat",
        "period": "2026-10",
        "description": "НДС за октябрь 2026",
        "created_at": "2026-11-20T10:00:00+00:00",
        "settled_at": "2026-11-21T08:30:05+00:00",
        "payment_id": 1001,
        "balance": 115000,
    },
    "payment.reversed": {
        "payment_id": 1001,
        "service": "sochi",
        "account": INN,
        "amount": 50000,
        "reason": "Клиент ошибся",
        "requested_by": "user:aida",
        "inn": INN,
        "customer_name": "ОсОО «Ромашка»",
        "invoice_number": None,
        "txn_id": "1234567",
        "created_at": "2026-11-21T08:30:05+00:00",
        "balance": 100000,
    },
    "invoice.paid": {
        "invoice_number": INVOICE,
        "inn": INN,
        "payer_name": "ОсОО «Ромашка»",
        "total": 271000,
        "payment_id": 1002,
        "lines": [
            {
                "product_code": "eds-head",
                "name": "Электронная подпись руководителя (облачная), 12 месяцев",
                "quantity": 1,
                "unit_price": 151000,
                "amount": 151000,
            },
            {
                "product_code": "eds-rutoken",
                "name": "Электронная подпись на носителе Рутокен, 12 месяцев",
                "quantity": 1,
                "unit_price": 120000,
                "amount": 120000,
            },
        ],
        "orders": [1, 2],
    },
    "order.issued": {
        "order_id": 1,
        "invoice_number": INVOICE,
        "inn": INN,
        "product_code": "eds-head",
        "name": "Электронная подпись руководителя (облачная), 12 месяцев",
        "kind": "signature",
        "status": "issued",
        "issued_at": "2026-11-22T05:00:00+00:00",
        "valid_until": "2027-11-22",
    },
    "signature.expiring": {
        "order_id": 1,
        "invoice_number": INVOICE,
        "inn": INN,
        "name": "Электронная подпись руководителя (облачная), 12 месяцев",
        "valid_until": "2027-11-22",
        "days_left": 21,
    },
    "application.created": {
        "invoice_number": INVOICE,
        "inn": INN,
        "total": 151000,
        "office": "Ош",
        "valid_until": "2026-12-22",
        "lines": [
            {
                "product_code": "eds-head",
                "name": "Электронная подпись руководителя (облачная), 12 месяцев",
                "quantity": 1,
                "amount": 151000,
            }
        ],
    },
    "order.in_production": {
        "order_id": 1,
        "invoice_number": INVOICE,
        "inn": INN,
        "product_code": "eds-head",
        "name": "Электронная подпись руководителя (облачная), 12 месяцев",
        "kind": "signature",
        "status": "in_production",
        "issued_at": None,
        "valid_until": None,
    },
    "application.verified": {
        "application_id": 7,
        "invoice_number": INVOICE,
        "inn": INN,
        "office": "Ош",
        "invoice_paid": True,
    },
    "application.rejected": {
        "application_id": 7,
        "invoice_number": INVOICE,
        "inn": INN,
        "office": "Ош",
        "invoice_paid": False,
        "reason": "Паспорт руководителя не совпадает с данными заявки, нужна доверенность",
        "invoice_cancelled": True,
    },
}

# What each message must say, per language: in the subject, the body and the SMS.
EXPECTED: dict[tuple[str, str], dict[str, list[str]]] = {
    ("payment.accepted", "ru"): {
        "subject": ["СОЧИ", "баланс пополнен", "500,00 сом"],
        "body": ["Баланс в системе СОЧИ пополнен", "500,00 сом", "1 500,00 сом", INN, "1001"],
        "sms": ["СОЧИ", INN, "+500,00 сом", "1 500,00 сом"],
    },
    ("payment.accepted", "ky"): {
        "subject": ["СОЧИ", "балансыңыз толукталды", "500,00 сом"],
        "body": ["балансыңыз толукталды", "500,00 сом", "1 500,00 сом", INN, "1001"],
        "sms": ["СОЧИ", INN, "балансы", "+500,00 сом", "1 500,00 сом"],
    },
    ("charge.settled", "ru"): {
        "subject": ["отчёт «НДС за октябрь 2026»", "больше не ожидает оплаты"],
        "body": ["«НДС за октябрь 2026» больше не ожидает оплаты", "350,00 сом", "1 150,00"],
        "sms": ["«НДС за октябрь 2026»", "не ждёт оплаты", "350,00 сом", INN],
    },
    ("charge.settled", "ky"): {
        "subject": ["отчет «НДС за октябрь 2026»", "төлөмдү күтпөйт"],
        "body": ["«НДС за октябрь 2026» мындан ары төлөмдү күтпөйт", "350,00 сом", "чегерилди"],
        "sms": ["«НДС за октябрь 2026»", "төлөмдү күтпөйт", "350,00 сом", "чегерилди", INN],
    },
    ("payment.reversed", "ru"): {
        "subject": ["СОЧИ", "пополнение баланса на 500,00 сом отменено"],
        "body": ["Пополнение баланса", "отменено", "500,00 сом", "1 000,00 сом", INN, "1001"],
        "sms": ["СОЧИ", INN, "500,00 сом", "отменено", "1 000,00 сом"],
    },
    ("payment.reversed", "ky"): {
        "subject": ["СОЧИ", "500,00 сом", "жокко чыгарылды"],
        "body": ["жокко чыгарылды", "500,00 сом", "1 000,00 сом", INN, "1001"],
        "sms": ["СОЧИ", INN, "500,00 сом", "жокко чыгарылды", "1 000,00 сом"],
    },
    ("invoice.paid", "ru"): {
        "subject": ["Счёт", INVOICE, "оплачен"],
        "body": [
            "оплачен",
            "2 710,00 сом",
            "1. Электронная подпись руководителя (облачная), 12 месяцев — 1 шт. × 1 510,00 сом",
            "2. Электронная подпись на носителе Рутокен",
        ],
        "sms": [INVOICE, "2 710,00 сом", "оплачен"],
    },
    ("invoice.paid", "ky"): {
        "subject": ["Эсеп төлөндү", INVOICE],
        "body": ["эсеп төлөндү", "2 710,00 сом", "Эсептин курамы", "1 даана × 1 510,00 сом"],
        "sms": ["Эсеп төлөндү", INVOICE, "2 710,00 сом"],
    },
    ("order.issued", "ru"): {
        "subject": ["Электронная подпись выдана"],
        "body": ["Электронная подпись выдана", "руководителя", "22.11.2027", "22.11.2026"],
        "sms": ["ЭЦП", INVOICE, "выдана", "22.11.2027"],
    },
    ("order.issued", "ky"): {
        "subject": ["Электрондук кол тамга берилди"],
        "body": ["Электрондук кол тамга берилди", "22.11.2027 чейин жарактуу"],
        "sms": ["ЭЦП берилди", INVOICE, "22.11.2027 чейин"],
    },
    ("signature.expiring", "ru"): {
        "subject": ["Срок действия электронной подписи истекает 22.11.2027"],
        "body": ["истекает 22.11.2027", "осталось 21 день", "Как продлить", "«Оплата ЭЦП»"],
        "sms": [INN, "22.11.2027", "осталось 21 день", "Продлите"],
    },
    ("signature.expiring", "ky"): {
        "subject": ["мөөнөтү 22.11.2027 бүтөт"],
        "body": ["мөөнөтү 22.11.2027 бүтөт", "21 күн калды", "кантип узартуу", "«Оплата ЭЦП»"],
        "sms": [INN, "мөөнөтү 22.11.2027 бүтөт", "21 күн калды"],
    },
    ("order.in_production", "ru"): {
        "subject": ["Электронная подпись передана в изготовление"],
        "body": ["«Электронная подпись руководителя (облачная)", "передана в изготовление", INN],
        "sms": ["ЭЦП", INVOICE, "передана в изготовление"],
    },
    ("order.in_production", "ky"): {
        "subject": ["Электрондук кол тамга даярдалууда"],
        "body": ["электрондук кол тамгаңыз даярдалууда", f"Эсеп: № {INVOICE}"],
        "sms": [INVOICE, "ЭЦП даярдалууда"],
    },
    ("order.in_production", "en"): {
        "subject": ["Your electronic signature is in production"],
        "body": ["is now in production", f"Invoice: No. {INVOICE}", "when the order is issued"],
        "sms": [f"EDS for invoice No. {INVOICE} is in production"],
    },
    # English amounts as the English pages write them: "1,500.00 KGS".
    ("payment.accepted", "en"): {
        "subject": ["SOCHI: balance topped up by 500.00 KGS"],
        "body": [
            "Your balance in the SOCHI system has been topped up by 500.00 KGS",
            "1,500.00 KGS",
        ],
        "sms": [f"SOCHI: INN {INN} +500.00 KGS, balance 1,500.00 KGS"],
    },
    ("charge.settled", "en"): {
        "subject": ["SOCHI: the report “НДС за октябрь 2026” no longer awaits payment"],
        "body": ["“НДС за октябрь 2026” no longer awaits payment", "350.00 KGS", "1,150.00 KGS"],
        "sms": ['report "НДС за октябрь 2026" no longer awaits payment', "350.00 KGS", INN],
    },
    ("payment.reversed", "en"): {
        "subject": ["SOCHI: balance top-up of 500.00 KGS cancelled"],
        "body": ["top-up of your balance", "cancelled", "500.00 KGS", "1,000.00 KGS", INN, "1001"],
        "sms": [f"SOCHI: top-up of INN {INN} by 500.00 KGS cancelled, balance 1,000.00 KGS"],
    },
    ("invoice.paid", "en"): {
        "subject": [f"Invoice No. {INVOICE} paid"],
        "body": [
            f"Invoice No. {INVOICE} for 2,710.00 KGS has been paid. Thank you!",
            "Invoice items:",
            "1. Электронная подпись руководителя (облачная), 12 месяцев — 1 pcs × 1,510.00 KGS",
        ],
        "sms": [f"Invoice No. {INVOICE} for 2,710.00 KGS paid. Thank you!"],
    },
    ("order.issued", "en"): {
        "subject": ["Electronic signature issued"],
        "body": [
            "Your electronic signature has been issued",
            "valid until 22.11.2027",
            "22.11.2026",
        ],
        "sms": [f"EDS for invoice No. {INVOICE} issued, valid until 22.11.2027"],
    },
    ("application.verified", "ru"): {
        "subject": ["Личность подтверждена", INVOICE],
        "body": ["личность подтверждена", "одобрена", "передаётся в изготовление", INN],
        "sms": ["ЭЦП", "личность подтверждена", INVOICE],
    },
    ("application.verified", "ky"): {
        "subject": ["Инсандык ырасталды", INVOICE],
        "body": ["инсандыгыңыз ырасталды", "жактырылды", "даярдоого берилет"],
        "sms": ["инсандык ырасталды", INVOICE],
    },
    ("application.verified", "en"): {
        "subject": [f"Identity verified: signature application, invoice No. {INVOICE}"],
        "body": ["your identity has been verified", "goes into production"],
        "sms": [f"EDS: identity verified, application for invoice No. {INVOICE} approved."],
    },
    ("application.rejected", "ru"): {
        "subject": ["Заявка на ЭЦП отклонена", INVOICE],
        "body": [
            "отклонена: личность не подтверждена",
            "Причина: Паспорт руководителя не совпадает с данными заявки, нужна доверенность",
            f"Счёт № {INVOICE} аннулирован",
        ],
        "sms": [INVOICE, "отклонена", "Причина: Паспорт руководителя не совпадает с дан…"],
    },
    ("application.rejected", "ky"): {
        "subject": ["четке кагылды", INVOICE],
        "body": ["арызыңыз четке кагылды", "Себеби: Паспорт руководителя", "жокко чыгарылды"],
        "sms": [INVOICE, "четке кагылды", "Себеби:"],
    },
    ("application.rejected", "en"): {
        "subject": [f"Signature application rejected: invoice No. {INVOICE}"],
        "body": ["has been rejected", "Reason: Паспорт руководителя", "no need to pay it"],
        "sms": [f"EDS: application for invoice No. {INVOICE} rejected. Reason: "],
    },
    ("signature.expiring", "en"): {
        "subject": ["Electronic signature expires on 22.11.2027"],
        "body": ["expires on 22.11.2027: 21 days left.", "How to renew", "«Оплата ЭЦП»"],
        "sms": [INN, "valid until 22.11.2027", "21 days left", "To renew"],
    },
}
GREETINGS = {"ru": "Здравствуйте!", "ky": "Саламатсызбы!", "en": "Hello!"}

# The SMS limit we keep to: Cyrillic goes as UCS-2, 70 characters in one SMS and 67 per
# part of a longer one. Every text fits two parts (134) even with the largest realistic
# values; payment.accepted, sent on every top-up, fits one SMS (70).
SMS_MAX_PARTS = 2
SMS_MAX_CHARS = 2 * 67
ONE_SMS = {"payment.accepted", "invoice.paid", "order.issued", "order.in_production"}
# Internal codes of a report that a customer does not know (the СОЧИ system's, not theirs).
REPORT_CODES = ("vat", "sti", "2026-10")


def _largest(event_type: str) -> dict[str, Any]:
    """The payload with the longest values a customer can realistically have."""
    payload: dict[str, Any] = json.loads(json.dumps(PAYLOADS[event_type]))
    for field in ("amount", "total"):
        if field in payload:
            payload[field] = 50_000_000  # 500 000.00 som: the service's maximum top-up
    if "balance" in payload:
        payload["balance"] = 999_999_999  # 9 999 999.99 som
    if "form" in payload:
        payload["form"] = "Единая налоговая декларация по форме STI-001 (ежегодная)"
        payload["period"] = "2026-квартал-4"
        payload["description"] = "Единая налоговая декларация (ежегодная) за 2026 год, уточнённая"
    if "days_left" in payload:
        payload["days_left"] = 30
    return payload


# --- templates ----------------------------------------------------------------------------


def test_every_notified_type_has_its_templates() -> None:
    for event_type in NOTIFIED:
        for channel in ("email", "sms"):
            assert templates.has_template(event_type.value, channel), (event_type, channel)
    assert set(PAYLOADS) == {t.value for t in NOTIFIED}
    # Types customers are not told about have no template: deliver refuses them clearly.
    for event_type in set(EventType) - NOTIFIED:
        assert not templates.has_template(event_type.value, "email")


def test_templates_ship_inside_the_package() -> None:
    root = resources.files("tolom") / "templates" / "notifications"
    for event_type in NOTIFIED:
        for part in ("subject", "body", "sms"):
            assert (root / event_type.value / f"{part}.txt").is_file()
    # One template for every language: the words are the catalogues'.
    assert not any((root / language).is_dir() for language in ("ru", "ky", "en"))


def test_the_languages_are_the_catalogues() -> None:
    assert templates.LANGUAGES == ("ru", "ky", "en")
    # Rendered by the one Jinja environment (templating), with its filters: none of its own.
    assert not hasattr(templates, "environment") and not hasattr(templates, "days_ru")


@pytest.mark.parametrize("language", ["ru", "ky", "en"])
@pytest.mark.parametrize("channel", ["email", "sms"])
@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_every_type_renders_in_every_language(
    event_type: str, channel: templates.Channel, language: str
) -> None:
    for payload in (PAYLOADS[event_type], _largest(event_type), MINIMAL.get(event_type)):
        if payload is None:
            continue
        rendered = templates.render(event_type, language, channel, payload)
        for text in (rendered.text, rendered.subject or ""):
            assert "notify." not in text and "None" not in text and "{" not in text, text
            if language == "en":  # no Russian left in English but the customer's own data
                assert not _cyrillic(text, payload), text
    other = templates.render(
        event_type, "ru" if language != "ru" else "ky", channel, PAYLOADS[event_type]
    )
    assert templates.render(event_type, language, channel, PAYLOADS[event_type]) != other


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _cyrillic(text: str, payload: dict[str, Any]) -> list[str]:
    """The Cyrillic words of a text that are not the payload's (a name, a description) nor
    the name of the service a customer picks in the agent's menu."""
    for value in [*sorted(_strings(payload), key=len, reverse=True), "«Оплата ЭЦП»"]:
        text = text.replace(value, "").replace(value[:39], "")  # SMS truncate long names
    return [word for word in text.split() if any("а" <= c.lower() <= "я" for c in word)]


@pytest.mark.parametrize(("event_type", "language"), sorted(EXPECTED))
def test_templates_render_a_realistic_payload(event_type: str, language: str) -> None:
    payload = PAYLOADS[event_type]
    mail = templates.render(event_type, language, "email", payload, event_id=1, created_at=NOW)
    text = templates.render(event_type, language, "sms", payload).text
    expected = EXPECTED[(event_type, language)]
    assert mail.subject is not None and "\n" not in mail.subject
    for fragment in expected["subject"]:
        assert fragment in mail.subject, mail.subject
    for fragment in expected["body"]:  # the body keeps formatting's no-break spaces
        assert fragment in mail.text.replace(formatting.THOUSANDS, " "), mail.text
    for fragment in expected["sms"]:
        assert fragment in text, text
    assert mail.text.startswith(GREETINGS[language])
    for rendered in (mail.subject, mail.text, text):
        assert "None" not in rendered and "{{" not in rendered and "{%" not in rendered
        assert "\n\n\n" not in rendered
    assert "\n" not in text


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
@pytest.mark.parametrize("language", templates.LANGUAGES)
def test_sms_texts_stay_within_the_limit(event_type: str, language: str) -> None:
    for payload in (PAYLOADS[event_type], _largest(event_type)):
        text = templates.render(event_type, language, "sms", payload).text
        assert sms.parts(text) <= SMS_MAX_PARTS, (len(text), text)
        assert len(text) <= SMS_MAX_CHARS, (len(text), text)
        if event_type in ONE_SMS:
            assert sms.parts(text) == 1 and len(text) <= 70, (len(text), text)


@pytest.mark.parametrize("language", templates.LANGUAGES)
def test_amounts_and_moments_are_written_by_formatting(language: str) -> None:
    """Customers read amounts and times as every page and PDF writes them."""
    payload = PAYLOADS["payment.accepted"]
    mail = templates.render("payment.accepted", language, "email", payload)
    assert formatting.som(payload["balance"], english=language == "en") in mail.text
    assert formatting.date_time(datetime.fromisoformat(payload["created_at"])) in mail.text
    assert not hasattr(templates, "ZONE")  # one time zone: timestamps.HOME_ZONE


def test_sms_parts() -> None:
    assert sms.parts("Balance +500.00 KGS") == 1
    assert sms.parts("a" * 160) == 1
    assert sms.parts("a" * 161) == 2  # 153 per part
    assert sms.parts("б" * 70) == 1
    assert sms.parts("б" * 71) == 2  # UCS-2: 67 per part
    assert sms.parts("б" * 134) == 2
    assert sms.parts("б" * 135) == 3
    assert sms.parts("a" * 100 + "ү") == 2  # one Kyrgyz letter makes the whole text UCS-2


MINIMAL: dict[str, dict[str, Any]] = {
    "payment.accepted": {"amount": 50000, "inn": INN},
    "charge.settled": {"amount": 35000},
    "invoice.paid": {"invoice_number": INVOICE, "lines": [{"name": "Носитель"}]},
    "order.issued": {"invoice_number": INVOICE},
    "order.in_production": {"invoice_number": INVOICE},
    "signature.expiring": {},
}


@pytest.mark.parametrize("event_type", sorted(MINIMAL))
@pytest.mark.parametrize("language", templates.LANGUAGES)
def test_missing_optional_fields_are_left_out(event_type: str, language: str) -> None:
    payload = MINIMAL[event_type]
    mail = templates.render(event_type, language, "email", payload)
    text = templates.render(event_type, language, "sms", payload).text
    for rendered in (mail.subject or "", mail.text, text):
        assert rendered.strip()
        assert "None" not in rendered
        assert " ." not in rendered and "()" not in rendered and "«»" not in rendered
    assert "Баланс:" not in mail.text


def test_a_missing_amount_is_an_error_not_a_wrong_text() -> None:
    with pytest.raises(NotificationError, match="сумма"):
        templates.render("payment.accepted", "ru", "sms", {"inn": INN})
    with pytest.raises(NotificationError, match="сумма"):
        templates.render(
            "payment.accepted", "ru", "email", {**PAYLOADS["payment.accepted"], "amount": "500.00"}
        )
    with pytest.raises(NotificationError, match="дата"):
        templates.render(
            "order.issued", "ru", "email", {"invoice_number": "1", "valid_until": "скоро"}
        )


def test_an_unknown_language_falls_back_to_russian() -> None:
    for language in ("xx", "", "KY", None):
        text = templates.render("payment.accepted", language, "sms", PAYLOADS["payment.accepted"])
        assert text == templates.render(
            "payment.accepted", "ru", "sms", PAYLOADS["payment.accepted"]
        )


def test_eds_payment_and_carrier_orders_have_their_own_wording() -> None:
    eds = {
        **PAYLOADS["payment.accepted"],
        "service": "eds",
        "invoice_number": INVOICE,
        "customer_name": None,
        "balance": None,
    }
    assert INVOICE in templates.render("payment.accepted", "ru", "email", eds).text
    assert "баланс" not in templates.render("payment.accepted", "ru", "sms", eds).text.lower()
    carrier = {**PAYLOADS["order.issued"], "kind": "carrier", "name": "Носитель Рутокен ЭЦП"}
    mail = templates.render("order.issued", "ky", "email", carrier)
    assert mail.subject == f"№ {INVOICE} эсеп боюнча буйрутма берилди"
    assert "жарактуу" not in mail.text
    started = {**carrier, "status": "in_production", "issued_at": None, "valid_until": None}
    mail = templates.render("order.in_production", "ru", "email", started)
    assert mail.subject == f"Заказ по счёту № {INVOICE} передан в работу"
    assert "«Носитель Рутокен ЭЦП»" in mail.text and "подпись" not in mail.text


def test_a_report_is_named_by_its_description_not_by_its_codes() -> None:
    """«НДС за октябрь 2026», as the back office shows it, never «отчёт vat за 2026-10»."""
    payload = PAYLOADS["charge.settled"]
    for language in templates.LANGUAGES:
        mail = templates.render("charge.settled", language, "email", payload)
        text = templates.render("charge.settled", language, "sms", payload).text
        for rendered in (mail.subject or "", mail.text, text):
            assert "НДС за октябрь 2026" in rendered, rendered
            for code in REPORT_CODES:
                assert code not in rendered, (code, rendered)
    # An event written without a description (none is stored so) still names the form.
    bare = {**payload, "description": None}
    assert "отчёт vat" in templates.render("charge.settled", "ru", "sms", bare).text


def test_a_reversed_invoice_payment_names_the_invoice() -> None:
    eds = {
        **PAYLOADS["payment.reversed"],
        "service": "eds",
        "account": INVOICE,
        "invoice_number": INVOICE,
        "customer_name": None,
        "balance": None,
    }
    for language in templates.LANGUAGES:
        mail = templates.render("payment.reversed", language, "email", eds)
        text = templates.render("payment.reversed", language, "sms", eds).text
        for rendered in (mail.subject or "", mail.text, text):
            assert INVOICE in rendered and "None" not in rendered, rendered
        assert "баланс" not in text.lower(), text
    # The operator's or agent's reason is theirs: the customer is not shown it.
    assert "Клиент ошибся" not in templates.render("payment.reversed", "ru", "email", eds).text


@pytest.mark.parametrize(
    ("days", "ru", "ky", "en"),
    [
        (1, "осталось 1 день", "1 күн калды", "1 day left"),
        (3, "осталось 3 дня", "3 күн калды", "3 days left"),
        (11, "осталось 11 дней", "11 күн калды", "11 days left"),
        (21, "осталось 21 день", "21 күн калды", "21 days left"),
        (24, "осталось 24 дня", "24 күн калды", "24 days left"),
        (30, "осталось 30 дней", "30 күн калды", "30 days left"),
        (111, "осталось 111 дней", "111 күн калды", "111 days left"),
        (0, "сегодня последний день", "бүгүн акыркы күн", "today is the last day"),
    ],
)
def test_days_left_agree_with_the_number(days: int, ru: str, ky: str, en: str) -> None:
    """CLDR plurals through the catalogues: Russian has three forms, Kyrgyz and English two."""
    payload = {**PAYLOADS["signature.expiring"], "days_left": days}
    for language, expected in (("ru", ru), ("ky", ky), ("en", en)):
        assert expected in templates.render("signature.expiring", language, "email", payload).text
        sms_text = templates.render("signature.expiring", language, "sms", payload).text
        assert expected.replace("сегодня ", "").replace("today is the ", "") in sms_text


def test_times_are_shown_in_bishkek() -> None:
    mail = templates.render("payment.accepted", "ru", "email", PAYLOADS["payment.accepted"])
    assert "Время платежа: 21.11.2026 14:30" in mail.text  # 08:30 UTC


def test_names_are_not_html_escaped_in_plain_text() -> None:
    payload = {**PAYLOADS["payment.accepted"], "customer_name": 'ОсОО "A & B" <Тест>'}
    mail = templates.render("payment.accepted", "ru", "email", payload)
    assert 'Клиент: ОсОО "A & B" <Тест>' in mail.text


# --- a real SMTP server -------------------------------------------------------------------


Inbox = MailServer  # what the tests read: the messages the server accepted


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Inbox, int]]]:
    """Start SMTP servers on 127.0.0.1 (options go to aiosmtpd); stopped after the test."""
    started: list[MailServer] = []

    def start(**options: Any) -> tuple[Inbox, int]:
        server = MailServer(**options).start()
        started.append(server)
        return server, server.port

    yield start
    for server in started:
        server.stop()


def smtp_settings(port: int, **options: Any) -> Settings:
    return Settings(
        database_url="sqlite://",
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout_seconds=5,
        mail_from="СОЧИ <noreply@sochi.kg>",
        **options,
    )


def send_mail(settings: Settings, event_type: str, language: str, recipient: str) -> None:
    deliver(
        settings,
        destination="email",
        recipient=recipient,
        language=language,
        event_type=event_type,
        event_id=42,
        payload=PAYLOADS[event_type],
        created_at=NOW,
    )


@pytest.mark.parametrize(
    ("language", "subject", "phrase"),
    [
        ("ru", "СОЧИ: баланс пополнен на 500,00 сом", "Баланс в системе СОЧИ пополнен"),
        ("ky", "СОЧИ: балансыңыз толукталды (+500,00 сом)", "балансыңыз толукталды"),
        ("en", "SOCHI: balance topped up by 500.00 KGS", "Your balance in the SOCHI system"),
    ],
)
def test_email_through_a_real_smtp_server(
    smtp_server: Callable[..., tuple[Inbox, int]], language: str, subject: str, phrase: str
) -> None:
    inbox, port = smtp_server()
    send_mail(smtp_settings(port), "payment.accepted", language, "buh@romashka.kg")
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "noreply@sochi.kg"
    assert envelope.rcpt_tos == ["buh@romashka.kg"]
    [message] = inbox.messages()
    assert parseaddr(str(message["From"])) == ("СОЧИ", "noreply@sochi.kg")
    assert str(message["To"]) == "buh@romashka.kg"
    assert str(message["Subject"]) == subject
    assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None
    assert str(message["Message-ID"]).startswith("<") and "@sochi.kg>" in str(message["Message-ID"])
    assert "tolom.event.42" in str(message["Message-ID"])
    assert str(message["Auto-Submitted"]) == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    body = message.get_content()
    assert phrase in body and INN in body
    assert formatting.som(150000, english=language == "en") in body
    # The raw message is 7-bit clean: any relay takes it.
    assert isinstance(envelope.content, bytes) and envelope.content.isascii()


def test_every_notified_email_goes_through(smtp_server: Callable[..., tuple[Inbox, int]]) -> None:
    inbox, port = smtp_server()
    settings = smtp_settings(port)
    for event_type in sorted(PAYLOADS):
        for language in templates.LANGUAGES:
            send_mail(settings, event_type, language, f"{language}@romashka.kg")
    messages = inbox.messages()
    assert len(messages) == len(templates.LANGUAGES) * len(PAYLOADS)
    subjects = {str(m["Subject"]) for m in messages}
    assert "Электрондук кол тамга берилди" in subjects
    assert f"Эсеп төлөндү: № {INVOICE}" in subjects
    assert len({str(m["Message-ID"]) for m in messages}) == len(messages)


@pytest.mark.parametrize(
    ("refusal", "where", "code"),
    [
        ("550 5.1.1 Нет такого ящика", "rcpt", "550"),
        ("451 4.3.0 Try again later", "data", "451"),
        ("554 5.7.1 Rejected as spam", "data", "554"),
    ],
)
def test_a_refusing_smtp_server_is_a_notification_error(
    smtp_server: Callable[..., tuple[Inbox, int]], refusal: str, where: str, code: str
) -> None:
    inbox, port = smtp_server()
    if where == "rcpt":
        inbox.refuse_rcpt = refusal
    else:
        inbox.refuse_data = refusal
    with pytest.raises(NotificationError) as failed:
        send_mail(smtp_settings(port), "invoice.paid", "ru", "buh@romashka.kg")
    assert code in str(failed.value)
    assert inbox.envelopes == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_smtp_server_that_is_down_is_a_notification_error() -> None:
    with pytest.raises(NotificationError, match="недоступен"):
        send_mail(smtp_settings(_closed_port()), "payment.accepted", "ru", "buh@romashka.kg")


def test_a_silent_smtp_server_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        settings = smtp_settings(port).model_copy(update={"smtp_timeout_seconds": 0.3})
        with pytest.raises(NotificationError, match="timed out"):
            send_mail(settings, "payment.accepted", "ru", "buh@romashka.kg")


def _authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    good = isinstance(data, LoginPassword) and (data.login, data.password) == (b"tolom", b"s3cret")
    return AuthResult(success=good, handled=False)  # handled=False: the server answers 535


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_auth(smtp_server: Callable[..., tuple[Inbox, int]]) -> None:
    inbox, port = smtp_server(
        authenticator=_authenticator, auth_require_tls=False, auth_required=True
    )
    send_mail(
        smtp_settings(port, smtp_username="tolom", smtp_password="s3cret"),
        "order.issued",
        "ky",
        "a@b.kg",
    )
    assert len(inbox.envelopes) == 1
    with pytest.raises(NotificationError, match="вход не удался: 535"):
        send_mail(
            smtp_settings(port, smtp_username="tolom", smtp_password="wrong"),
            "order.issued",
            "ky",
            "a@b.kg",
        )
    with pytest.raises(NotificationError, match="530"):  # no AUTH configured: refused
        send_mail(smtp_settings(port), "order.issued", "ky", "a@b.kg")
    assert len(inbox.envelopes) == 1


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def test_smtp_starttls_and_implicit_tls(
    smtp_server: Callable[..., tuple[Inbox, int]],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = _server_context(certificate)
    starttls, starttls_port = smtp_server(tls_context=context, require_starttls=True)
    implicit, implicit_port = smtp_server(ssl_context=context)
    # Our certificate is not trusted yet: the connection is refused, nothing is sent.
    with pytest.raises(NotificationError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        send_mail(
            smtp_settings(starttls_port, smtp_security="starttls"), "invoice.paid", "ru", "a@b.kg"
        )
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # now it is
    send_mail(
        smtp_settings(starttls_port, smtp_security="starttls"), "invoice.paid", "ru", "a@b.kg"
    )
    send_mail(smtp_settings(implicit_port, smtp_security="ssl"), "invoice.paid", "ky", "b@b.kg")
    assert [str(m["To"]) for m in starttls.messages()] == ["a@b.kg"]
    assert [str(m["To"]) for m in implicit.messages()] == ["b@b.kg"]
    # A server that insists on STARTTLS refuses a plain-text sender.
    with pytest.raises(NotificationError, match="530"):
        send_mail(smtp_settings(starttls_port), "invoice.paid", "ru", "a@b.kg")


def test_starttls_against_a_server_without_it(
    smtp_server: Callable[..., tuple[Inbox, int]],
) -> None:
    inbox, port = smtp_server()
    with pytest.raises(NotificationError, match="STARTTLS"):
        send_mail(smtp_settings(port, smtp_security="starttls"), "invoice.paid", "ru", "a@b.kg")
    assert inbox.envelopes == []


def test_email_console_backend_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(database_url="sqlite://", email_backend="console")
    with caplog.at_level(logging.INFO, logger="tolom.notifications"):
        send_mail(settings, "signature.expiring", "ky", "buh@romashka.kg")
    [record] = [r for r in caplog.records if r.name == "tolom.notifications.email"]
    logged = record.getMessage()
    assert "buh@romashka.kg" in logged
    assert "Электрондук кол тамганын мөөнөтү 22.11.2027 бүтөт" in logged
    assert "21 күн калды" in logged


# --- a real SMS gateway -------------------------------------------------------------------


class SmsGateway(ThreadingHTTPServer):
    """An HTTP SMS gateway on 127.0.0.1 that keeps each request and answers `status`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmsHandler)
        self.requests: list[dict[str, Any]] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/sms"


class _SmsHandler(BaseHTTPRequestHandler):
    server: SmsGateway

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers.items()), "body": json.loads(body)}
        )
        answer = b'{"id": "sms-1"}' if self.server.status < 300 else b"gateway is broken"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def sms_gateway() -> Iterator[SmsGateway]:
    gateway = SmsGateway()
    thread = threading.Thread(target=gateway.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield gateway
    gateway.shutdown()
    gateway.server_close()
    thread.join()


def sms_settings(url: str, **options: Any) -> Settings:
    return Settings(
        database_url="sqlite://",
        sms_backend="http",
        sms_url=url,
        sms_token="tok-123",
        sms_sender="SOCHI",
        webhook_timeout_seconds=5,
        **options,
    )


def send_sms(
    settings: Settings, event_type: str = "payment.accepted", language: str = "ky"
) -> None:
    deliver(
        settings,
        destination="sms",
        recipient="+996555123456",
        language=language,
        event_type=event_type,
        event_id=43,
        payload=PAYLOADS[event_type],
        created_at=NOW,
    )


def test_sms_through_the_http_gateway(sms_gateway: SmsGateway) -> None:
    send_sms(sms_settings(sms_gateway.url))
    [request] = sms_gateway.requests
    assert request["path"] == "/v1/sms"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer tok-123"
    assert headers["content-type"] == "application/json"
    assert request["body"] == {
        "to": "+996555123456",
        "text": f"СОЧИ: ИНН {INN} +500,00 сом, балансы 1 500,00 сом",
        "sender": "SOCHI",
    }


@pytest.mark.parametrize("status", [500, 400, 302])
def test_an_sms_gateway_error_is_a_notification_error(sms_gateway: SmsGateway, status: int) -> None:
    sms_gateway.status = status
    with pytest.raises(NotificationError, match=f"SMS-шлюз ответил {status}"):
        send_sms(sms_settings(sms_gateway.url))
    assert len(sms_gateway.requests) == 1


def test_an_sms_gateway_that_is_down_or_unset() -> None:
    with pytest.raises(NotificationError, match="SMS-шлюз недоступен"):
        send_sms(sms_settings(f"http://127.0.0.1:{_closed_port()}/sms"))
    with pytest.raises(NotificationError, match="TOLOM_SMS_URL"):
        send_sms(sms_settings(""))
    with pytest.raises(NotificationError, match="SMS-шлюз недоступен"):
        send_sms(sms_settings("not a url"))


def test_sms_console_backend_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tolom.notifications"):
        send_sms(Settings(database_url="sqlite://", sms_backend="console"), "order.issued", "ru")
    [record] = [r for r in caplog.records if r.name == "tolom.notifications.sms"]
    assert "+996555123456" in record.getMessage()
    assert f"ЭЦП по счёту № {INVOICE} выдана, действует до 22.11.2027" in record.getMessage()


# --- what deliver refuses -----------------------------------------------------------------


def test_deliver_refuses_what_it_cannot_send() -> None:
    settings = Settings(database_url="sqlite://")
    common: dict[str, Any] = {
        "recipient": "a@b.kg",
        "language": "ru",
        "event_id": 1,
        "payload": {},
        "created_at": NOW,
    }
    with pytest.raises(NotificationError, match="нет шаблона"):
        deliver(settings, destination="email", event_type="charge.refunded", **common)
    with pytest.raises(NotificationError, match="нет шаблона"):
        deliver(settings, destination="sms", event_type="no.such.type", **common)
    with pytest.raises(NotificationError, match="канал"):
        deliver(settings, destination="fax", event_type="invoice.paid", **common)  # type: ignore[arg-type]
    with pytest.raises(NotificationError, match="письмо не собрано"):
        deliver(
            settings.model_copy(update={"mail_from": "СОЧИ\r\nBcc: x@y.kg"}),
            destination="email",
            event_type="signature.expiring",
            **common,
        )


# --- from a top-up to the customer's inbox and phone ---------------------------------------


def test_a_top_up_is_mailed_and_texted_from_the_outbox(
    engine: Engine,
    gateway: Gateway,
    smtp_server: Callable[..., tuple[Inbox, int]],
    sms_gateway: SmsGateway,
) -> None:
    inn = add_customer(
        engine, name="ОсОО «Ромашка»", email="buh@romashka.kg", phone="0555 123 456", language="ky"
    )
    assert gateway.pay("sochi", inn, "750.00")["result"] == 0
    inbox, port = smtp_server()
    settings = smtp_settings(port).model_copy(
        update={"sms_backend": "http", "sms_url": sms_gateway.url}
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                deliveries.c.destination,
                deliveries.c.recipient,
                deliveries.c.language,
                events.c.id,
                events.c.type,
                events.c.payload,
                events.c.created_at,
            )
            .join(events, events.c.id == deliveries.c.event_id)
            .where(deliveries.c.destination.in_(["email", "sms"]))
            .order_by(deliveries.c.destination)
        ).all()
    assert [(r.destination, r.recipient, r.language, r.type) for r in rows] == [
        ("email", "buh@romashka.kg", "ky", "payment.accepted"),
        ("sms", "+996555123456", "ky", "payment.accepted"),
    ]
    for row in rows:
        deliver(
            settings,
            destination=row.destination,
            recipient=row.recipient,
            language=row.language,
            event_type=row.type,
            event_id=row.id,
            payload=json.loads(row.payload),
            created_at=row.created_at,
        )
    [message] = inbox.messages()
    assert str(message["Subject"]) == "СОЧИ: балансыңыз толукталды (+750,00 сом)"
    assert "ОсОО «Ромашка»" in message.get_content() and inn in message.get_content()
    [request] = sms_gateway.requests
    assert request["body"]["text"] == f"СОЧИ: ИНН {inn} +750,00 сом, балансы 750,00 сом"


def _notifications(engine: Engine, event_type: str) -> list[Any]:
    """The e-mail and SMS deliveries of events of one type, with their event's payload."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    deliveries.c.destination,
                    deliveries.c.recipient,
                    deliveries.c.language,
                    events.c.payload,
                )
                .join(events, events.c.id == deliveries.c.event_id)
                .where(deliveries.c.destination.in_(["email", "sms"]), events.c.type == event_type)
                .order_by(deliveries.c.destination)
            ).all()
        )


def _payment_id(engine: Engine, account: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(payments.c.id).where(payments.c.account == account)).scalar_one()
        )


def test_a_reversed_top_up_is_mailed_and_texted(engine: Engine, gateway: Gateway) -> None:
    """The customer told «баланс пополнен» is told when that top-up is undone."""
    inn = add_customer(engine, email="buh@romashka.kg", phone="0555 123 456", language="ky")
    assert gateway.pay("sochi", inn, "750.00")["result"] == 0
    payment_id = _payment_id(engine, inn)
    with engine.begin() as conn:
        result = service.reverse(conn, payment_id, "Ошибочный платёж", "user:aida")
    assert result.outcome is CancelOutcome.OK
    rows = _notifications(engine, "payment.reversed")
    assert [(r.destination, r.recipient, r.language) for r in rows] == [
        ("email", "buh@romashka.kg", "ky"),
        ("sms", "+996555123456", "ky"),
    ]
    payload = json.loads(rows[0].payload)
    assert (payload["inn"], payload["amount"], payload["balance"]) == (inn, 75000, 0)
    text = templates.render("payment.reversed", "ky", "sms", payload).text
    assert text == f"СОЧИ: ИНН {inn} балансын толуктоо (750,00 сом) жокко чыгарылды, жалпы 0,00 сом"


def test_a_reversed_invoice_payment_tells_the_customer_of_the_invoice(
    engine: Engine, gateway: Gateway
) -> None:
    """Told «счёт оплачен» (invoice.paid goes to the customer with the invoice's INN), the
    customer is told when that payment is undone too."""
    inn = add_customer(engine, email="buh@romashka.kg")
    with engine.begin() as conn:
        invoice = invoices.create(
            conn, items=[("eds-head", 1)], payer_name="ОсОО «Ромашка»", inn=inn, validity_days=30
        )
    assert gateway.pay("eds", invoice.number, format_amount(invoice.total))["result"] == 0
    payment_id = _payment_id(engine, invoice.number)
    with engine.begin() as conn:
        assert service.reverse(conn, payment_id, "Ошибка", "user:aida").outcome is CancelOutcome.OK
    [row] = _notifications(engine, "payment.reversed")
    assert (row.destination, row.recipient) == ("email", "buh@romashka.kg")
    mail = templates.render("payment.reversed", row.language, "email", json.loads(row.payload))
    assert mail.subject == f"Оплата по счёту № {invoice.number} отменена"


def test_a_released_report_is_named_by_its_description(engine: Engine, gateway: Gateway) -> None:
    inn = add_customer(engine, phone="0555 123 456")
    with engine.begin() as conn:
        charges.create(
            conn,
            charges.ChargeRequest(
                client="apikey:sochi",
                idempotency_key="report-R-1",
                inn=inn,
                description="НДС за октябрь 2026",
                amount=15000,
                report=charges.Report("R-1", "sti", "vat", "2026-10"),
            ),
        )
    assert gateway.pay("sochi", inn, "150.00")["result"] == 0
    [row] = _notifications(engine, "charge.settled")
    text = templates.render("charge.settled", row.language, "sms", json.loads(row.payload)).text
    assert text == (
        f"СОЧИ: отчёт «НДС за октябрь 2026» больше не ждёт оплаты, списано 150,00 сом. ИНН {inn}"
    )


def test_a_failing_smtp_server_neither_blocks_nor_undoes_a_top_up(
    engine: Engine,
    settings: Settings,
    gateway: Gateway,
    smtp_server: Callable[..., tuple[Inbox, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker retries the e-mail; the payment was committed long before."""
    inn = add_customer(engine, email="buh@romashka.kg", phone="0555123456")
    down = settings.model_copy(
        update={
            "email_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": _closed_port(),
            "sms_backend": "console",
        }
    )
    assert gateway.pay("sochi", inn, "200.00")["result"] == 0
    with caplog.at_level(logging.INFO, logger="tolom"):
        Worker(down, engine).run(once=True)
    with engine.connect() as conn:
        state = {
            r.destination: (r.status, r.attempts, r.last_error)
            for r in conn.execute(select(deliveries).where(deliveries.c.recipient.is_not(None)))
        }
        customer = customers.get(conn, inn)
        assert customer is not None
        assert customers.balance(conn, customer) == 20000
    assert state["sms"][:2] == ("delivered", 1)
    status, attempts, error = state["email"]
    assert (status, attempts) == ("pending", 1)
    assert "NotificationError" in error and "недоступен" in error
    # The server is back; the retry (made due now rather than after the backoff) goes out.
    inbox, port = smtp_server()
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.destination == "email")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    Worker(down.model_copy(update={"smtp_port": port}), engine).run(once=True)
    with engine.connect() as conn:
        [row] = conn.execute(select(deliveries).where(deliveries.c.destination == "email"))
    assert (row.status, row.attempts) == ("delivered", 2)
    [message] = inbox.messages()
    assert str(message["Subject"]) == "СОЧИ: баланс пополнен на 200,00 сом"
