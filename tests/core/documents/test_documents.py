"""Receipts and invoices as documents: the receipt token, the public page /r/{token} and what
it may reveal, the receipt and invoice PDFs (read back with pypdf), their API endpoints and
CLI commands."""

from __future__ import annotations

import io
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import segno
from pydantic import ValidationError
from pypdf import PdfReader
from sqlalchemy import Engine, event, func, select
from starlette.testclient import TestClient

from tests.factories import Cli, Gateway, add_customer, add_invoice, new_txn_id
from tolom import apikeys, audit
from tolom.app import create_app
from tolom.billing import invoices
from tolom.db.schema import receipts as receipts_table
from tolom.documents import instructions, invoice_pdf, receipt_pdf, receipts
from tolom.documents.pdf import A5, Document, qr_code
from tolom.formatting import date_time, som
from tolom.payments import manual
from tolom.runtime import Runtime
from tolom.settings import Settings

NBSP = "\u00a0"
BASE = "https://pay.example.kg"
CUSTOMER = "ОсОО «Секретная Ромашка»"
TXN_DATE = "20261121143005"  # agent-local (Asia/Bishkek): 21.11.2026 14:30
A5_POINTS = (419.53, 595.28)
A4_POINTS = (595.28, 841.89)


@dataclass
class World:
    """The app with a public base URL, an OSMP agent, and API keys of every scope."""

    client: TestClient
    app: Any
    engine: Engine
    gateway: Gateway
    settings: Settings
    tokens: dict[str, str]

    def get(self, path: str, key: str | None = "read", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[key]}"} if key else {}
        return self.client.get(path, params=params or None, headers=headers)

    def post(self, path: str, body: Any = None, key: str = "admin") -> Any:
        return self.client.post(
            path, json=body, headers={"Authorization": f"Bearer {self.tokens[key]}"}
        )

    def sochi_payment(self, amount: str = "1510.00", name: str = CUSTOMER) -> tuple[int, str, str]:
        """(payment id, INN, txn_id) of a top-up by the agent `optima`."""
        inn = add_customer(self.engine, name=name)
        txn_id = new_txn_id()
        answer = self.gateway.pay("sochi", inn, amount, txn_id=txn_id, txn_date=TXN_DATE)
        assert answer["result"] == 0, answer
        return int(answer["prv_txn"]), inn, txn_id

    def receipt_token(self, payment_id: int) -> str:
        response = self.get(f"/api/v1/payments/{payment_id}/receipt")
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token


@pytest.fixture
def world(settings: Settings, engine: Engine) -> World:
    settings = settings.model_copy(update={"public_base_url": BASE + "/"})
    settings = Settings.model_validate(settings.model_dump())  # validators run: no "/"
    app = create_app(runtime=Runtime.on(settings, engine))
    gateway = Gateway.create(app, engine, code="optima")
    with engine.begin() as conn:
        tokens = {
            scope: apikeys.create(conn, name=f"key-{scope}", scopes=[scope])
            for scope in ("read", "write", "admin", "charges")
        }
    client = TestClient(app, client=("203.0.113.9", 50000))
    return World(client, app, engine, gateway, settings, tokens)


def pdf_text(content: bytes) -> str:
    """The text of every page. fpdf2 keeps a no-break space from breaking a line but draws
    it as a space, so "1 510,00 сом" reads back with plain spaces."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def link_uris(content: bytes) -> list[str]:
    found = []
    for page in PdfReader(io.BytesIO(content)).pages:
        for annotation in page.get("/Annots") or []:
            action = annotation.get_object().get("/A")
            if action is not None and action.get("/S") == "/URI":
                found.append(str(action["/URI"]))
    return found


def page_size(content: bytes) -> tuple[float, float]:
    box = PdfReader(io.BytesIO(content)).pages[0].mediabox
    return round(float(box.width), 2), round(float(box.height), 2)


def count_statements(engine: Engine) -> list[str]:
    """Every SQL statement the engine runs from now on, until the test ends."""
    seen: list[str] = []

    def listener(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", listener)
    return seen


# --- formatting --------------------------------------------------------------------------


def test_amounts_are_written_as_people_here_write_them() -> None:
    assert som(151000) == f"1{NBSP}510,00{NBSP}сом"
    assert som(5) == f"0,05{NBSP}сом"
    assert som(123456789012) == f"1{NBSP}234{NBSP}567{NBSP}890,12{NBSP}сом"
    assert som(-150) == f"-1,50{NBSP}сом"
    assert som(151000, currency="") == f"1{NBSP}510,00"
    assert som(151000, english=True) == f"1,510.00{NBSP}KGS"


def test_times_are_shown_in_bishkek() -> None:
    assert date_time(datetime(2026, 11, 21, 20, 30, tzinfo=UTC)) == "22.11.2026 02:30"
    assert date_time(datetime(2026, 11, 21, 20, 30)) == "22.11.2026 02:30"  # naive = UTC


def test_public_base_url_is_checked_and_loses_its_trailing_slash() -> None:
    assert Settings(public_base_url="https://pay.example.kg/").public_base_url == BASE
    assert Settings(public_base_url="http://10.0.0.1:8000/tolom/").public_base_url == (
        "http://10.0.0.1:8000/tolom"
    )
    for wrong in ("pay.example.kg", "ftp://pay.example.kg", "https://", "https://a b"):
        with pytest.raises(ValidationError):
            Settings(public_base_url=wrong)


# --- receipt tokens ----------------------------------------------------------------------


def test_a_token_is_made_once_stays_the_same_and_is_audited_once(world: World) -> None:
    payment_id, _inn, _txn = world.sochi_payment()
    other_id, _inn, _txn = world.sochi_payment()
    with world.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(receipts_table)).scalar() == 0
        first = receipts.token_for(conn, payment_id, actor="test:one")
        again = receipts.token_for(conn, payment_id, actor="test:two")
        other = receipts.token_for(conn, other_id, actor="test:one")
    assert first is not None and again is not None and other is not None
    assert first.created and not again.created
    assert again.token == first.token and again.created_at == first.created_at
    assert other.token != first.token
    for token in (first.token, other.token):
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)  # 32 base64url characters: 192 bits
        assert receipts.is_token(token)
    with world.engine.begin() as conn:
        lines = audit.entries(conn, object_type="payment", object_id=str(payment_id))
    made = [line for line in lines if line["action"] == "receipt.create"]
    assert len(made) == 1 and made[0]["actor"] == "test:one"
    assert first.token not in json.dumps(lines, default=str)  # the key stays out of the log


def test_tokens_are_not_made_by_paying_and_not_for_missing_payments(world: World) -> None:
    world.sochi_payment()
    with world.engine.begin() as conn:
        assert receipts.token_for(conn, 999_999, actor="test") is None
        assert conn.execute(select(func.count()).select_from(receipts_table)).scalar() == 0


def test_concurrent_first_requests_agree_on_one_token(world: World) -> None:
    payment_id, _inn, _txn = world.sochi_payment()
    start = threading.Barrier(4)
    found: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            start.wait()
            with world.engine.begin() as conn:
                receipt = receipts.token_for(conn, payment_id, actor="test")
                assert receipt is not None
                found.append(receipt.token)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(found) == 4 and len(set(found)) == 1
    with world.engine.begin() as conn:
        stored = conn.execute(select(receipts_table.c.token)).scalars().all()
    assert stored == found[:1]


def test_token_shapes() -> None:
    assert receipts.is_token("q3Zt0mXc1Yy8V6sJb4LwR2nKp7HdE9a-")
    for wrong in ("", "short", "q" * 31, "q" * 33, "q" * 31 + "!", "q" * 31 + "=", "ы" * 32):
        assert not receipts.is_token(wrong)


# --- the public page ---------------------------------------------------------------------


def assert_public_headers(response: Any) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert "noindex" in response.headers["x-robots-tag"]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-type"].startswith("text/html")


def test_the_public_page_confirms_only_what_it_may(world: World) -> None:
    payment_id, inn, txn_id = world.sochi_payment("1510.00")
    token = world.receipt_token(payment_id)
    response = world.client.get(f"/r/{token}")
    assert response.status_code == 200
    assert_public_headers(response)
    page = response.text
    assert "Платёж подтверждён" in page
    assert f"<dd>{payment_id}</dd>" in page
    assert f"1{NBSP}510,00{NBSP}сом" in page
    assert "21.11.2026 14:30" in page
    assert world.settings.company_name.replace("«", "&laquo;") in page or (
        world.settings.company_name in page
    )
    assert "Пополнение баланса в системе СОЧИ" in page
    assert "Принят" in page
    # Nothing that names the payer or the agent.
    for secret in (inn, CUSTOMER, "Ромашка", "optima", "Агент", txn_id, TXN_DATE):
        assert secret not in page, secret
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere


def test_an_invoice_payment_hides_the_invoice_and_its_payer(world: World) -> None:
    invoice = add_invoice(world.engine)
    txn_id = new_txn_id()
    answer = world.gateway.pay("eds", invoice.number, "1510.00", txn_id=txn_id, txn_date=TXN_DATE)
    token = world.receipt_token(int(answer["prv_txn"]))
    page = world.client.get(f"/r/{token}").text
    assert "Оплата ЭЦП и носителя Рутокен ЭЦП по счёту" in page
    for secret in (invoice.number, invoice.payer_name, "Новый клиент", txn_id, "optima"):
        assert secret not in page, secret


def test_a_reversed_payment_says_so(world: World) -> None:
    payment_id, _inn, _txn = world.sochi_payment()
    token = world.receipt_token(payment_id)
    reversed_ = world.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "Ошибочный ИНН"})
    assert reversed_.status_code == 200, reversed_.text
    page = world.client.get(f"/r/{token}").text
    assert "Платёж отменён" in page and "Отменён" in page
    assert "Платёж подтверждён" not in page
    assert "Ошибочный ИНН" not in page  # the reason is internal


def test_the_page_speaks_kyrgyz_and_english_on_request(world: World) -> None:
    payment_id, _inn, _txn = world.sochi_payment("1510.00")
    token = world.receipt_token(payment_id)
    kyrgyz = world.client.get(f"/r/{token}", params={"lang": "ky"}).text
    assert "Төлөм ырасталды" in kyrgyz and 'lang="ky"' in kyrgyz
    english = world.client.get(f"/r/{token}", params={"lang": "en"}).text
    assert "Payment confirmed" in english and f"1,510.00{NBSP}KGS" in english
    # The choice is remembered for the visitor's next pages (a cookie); a language we do
    # not speak changes nothing, and ?lang=ru switches back.
    remembered = world.client.get(f"/r/{token}", params={"lang": "<script>"}).text
    assert "Payment confirmed" in remembered and "<script>" not in remembered
    russian = world.client.get(f"/r/{token}", params={"lang": "ru"}).text
    assert "Платёж подтверждён" in russian
    world.client.cookies.clear()
    fresh = world.client.get(f"/r/{token}").text
    assert "Платёж подтверждён" in fresh and 'lang="ru"' in fresh
    for code in ("ru", "ky", "en"):
        assert f'href="?lang={code}"' in kyrgyz or code == "ky"


@pytest.mark.parametrize(
    "token",
    [
        "short",
        "q" * 33,
        "q" * 31 + "!",
        "ы" * 32,
        "..%2F..%2Fetc",
        "a/b",
        "q" * 31 + "%00",
        "x" * 500,
    ],
)
def test_an_impossible_token_is_not_found_without_asking_the_database(
    world: World, token: str
) -> None:
    statements = count_statements(world.engine)
    response = world.client.get(f"/r/{token}")
    assert response.status_code == 404
    assert "Квитанция не найдена" in response.text
    assert_public_headers(response)
    assert statements == []


def test_an_unknown_token_is_not_found(world: World) -> None:
    statements = count_statements(world.engine)
    response = world.client.get(f"/r/{'A' * 32}")
    assert response.status_code == 404
    assert "Квитанция не найдена" in response.text
    assert_public_headers(response)
    assert statements  # a well-formed token is looked up


def test_the_public_page_is_not_in_the_api_document_and_its_css_is_served(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/r/")]
    css = world.client.get("/static/public/receipt.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


# --- the receipt PDF ---------------------------------------------------------------------


def test_the_receipt_pdf_of_a_top_up(world: World) -> None:
    payment_id, inn, _txn = world.sochi_payment("1510.00")
    response = world.get(f"/api/v1/payments/{payment_id}/receipt.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="receipt-{payment_id}.pdf"'
    )
    content = response.content
    assert content.startswith(b"%PDF-")
    assert len(PdfReader(io.BytesIO(content)).pages) == 1
    assert page_size(content) == A5_POINTS
    text = pdf_text(content)
    token = world.receipt_token(payment_id)
    url = f"{BASE}/r/{token}"
    for expected in (
        world.settings.company_name,
        f"Квитанция об оплате № {payment_id}",
        "21.11.2026 14:30 (Бишкек)",
        "Пополнение баланса в системе СОЧИ",
        inn,
        CUSTOMER,
        "1 510,00 сом",
        "Агент optima",
        "Принят",
        url,
    ):
        assert expected in text, expected
    assert link_uris(content) == [url, url]  # the QR code and the printed address


def test_the_receipt_pdf_of_an_invoice_paid_by_bank_transfer(world: World) -> None:
    invoice = add_invoice(world.engine, [("eds-head", 2)])
    response = world.post(
        "/api/v1/manual-payments",
        {
            "channel": "bank",
            "reference": f"PP/{new_txn_id()}",
            "service": "eds",
            "account": invoice.number,
            "amount": "3020.00",
            "payment_code": "42122900",
            "bank_reference": "ПП-000777",
            "payer": "ОсОО «Новый клиент»",
            "received_at": "2026-11-21T10:15:00+06:00",
        },
    )
    assert response.status_code == 201, response.text
    payment_id = response.json()["id"]
    text = pdf_text(world.get(f"/api/v1/payments/{payment_id}/receipt.pdf").content)
    for expected in (
        f"Счёт на оплату № {invoice.number}",
        invoice.payer_name,
        "3 020,00 сом",
        "21.11.2026 10:15",
        "Банковский перевод",
        "42122900",
        "№ ПП-000777",
    ):
        assert expected in text, expected


def test_a_reversed_receipt_is_stamped(world: World) -> None:
    payment_id, _inn, _txn = world.sochi_payment()
    assert world.post(f"/api/v1/payments/{payment_id}/reverse", {"reason": "Ошибка"}).is_success
    text = pdf_text(world.get(f"/api/v1/payments/{payment_id}/receipt.pdf").content)
    assert text.count("ОТМЕНЁН") >= 2  # the status line and the stamp
    assert "недействителен" in text


def test_the_receipt_of_a_cash_payment_names_the_cash_desk(world: World) -> None:
    inn = add_customer(world.engine, name="ИП Асанов")
    response = world.post(
        "/api/v1/manual-payments",
        {
            "channel": "cash_desk",
            "reference": f"PKO-{new_txn_id()}",
            "service": "sochi",
            "account": inn,
            "amount": "250000.50",
        },
    )
    assert response.status_code == 201, response.text
    text = pdf_text(world.get(f"/api/v1/payments/{response.json()['id']}/receipt.pdf").content)
    assert "Касса компании" in text and "250 000,50 сом" in text
    assert "Код платежа" not in text


def test_a_manual_payments_receipt_names_who_paid_and_the_note(world: World) -> None:
    """The payer's PDF carries who brought the cash and the operator's note; the public page
    still says nothing of either."""
    inn = add_customer(world.engine, name="ИП Асанов")
    response = world.post(
        "/api/v1/manual-payments",
        {
            "channel": "cash_desk",
            "reference": f"PKO-{new_txn_id()}",
            "service": "sochi",
            "account": inn,
            "amount": "500.00",
            "payer": "Асанова Гүлнара (по доверенности)",
            "note": "Оплата за декабрь, ПКО 17",
        },
    )
    assert response.status_code == 201, response.text
    payment_id = response.json()["id"]
    text = pdf_text(world.get(f"/api/v1/payments/{payment_id}/receipt.pdf").content)
    for expected in (
        "Кто оплатил",
        "Асанова Гүлнара (по доверенности)",
        "Примечание",
        "Оплата за декабрь, ПКО 17",
        "ИП Асанов",
    ):
        assert expected in text, expected
    page = world.client.get(f"/r/{world.receipt_token(payment_id)}").text
    for secret in ("Асанова", "доверенности", "декабрь", "ПКО 17", "Асанов"):
        assert secret not in page, secret


def test_a_gateway_payments_receipt_has_no_empty_payer_or_note_lines(world: World) -> None:
    payment_id, _inn, _txn = world.sochi_payment()
    text = pdf_text(world.get(f"/api/v1/payments/{payment_id}/receipt.pdf").content)
    assert "Кто оплатил" not in text and "Примечание" not in text


def test_the_qr_code_is_drawn_module_for_module() -> None:
    """The rectangles drawn are exactly the dark modules segno computes."""
    data = f"{BASE}/r/{'Q' * 32}"
    pdf = Document(A5, title="QR", author="test", margin=10)
    pdf.set_compression(False)
    pdf.add_page()
    size = 44.0
    qr_code(pdf, data, 10, 10, size)
    stream = PdfReader(io.BytesIO(pdf.output_bytes())).pages[0].get_contents().get_data().decode()
    matrix = segno.make(data, error="m", micro=False).matrix
    count = len(matrix) + 8  # and the quiet zone of 4 modules each side
    module = size / count * 72 / 25.4  # points
    origin_x, origin_top = (10 * 72 / 25.4) + 4 * module, (210 - 10) * 72 / 25.4 - 4 * module
    dark = set()
    for x, y, w, _h in re.findall(r"([\d.]+) ([\d.]+) ([\d.]+) (-?[\d.]+) re f", stream):
        if abs(float(w) - size * 72 / 25.4) < 0.1:
            continue  # the white background
        row = round((origin_top - float(y)) / module)
        first = round((float(x) - origin_x) / module)
        for column in range(first, first + round(float(w) / module)):
            dark.add((row, column))
    expected = {(r, c) for r, line in enumerate(matrix) for c, bit in enumerate(line) if bit}
    assert dark == expected


# --- the invoice PDF ---------------------------------------------------------------------


def test_the_invoice_pdf_carries_the_payment_instructions(world: World) -> None:
    invoice = add_invoice(world.engine, [("eds-head", 1), ("eds-accountant", 2)])
    response = world.get(f"/api/v1/invoices/{invoice.number}/pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="invoice-{invoice.number}.pdf"'
    )
    content = response.content
    assert page_size(content) == A4_POINTS
    text = pdf_text(content)
    for expected in (
        world.settings.company_name,
        "СЧЁТ НА ОПЛАТУ",
        invoice.number,
        invoice.payer_name,
        "Электронная подпись руководителя (облачная), 12 месяцев",
        "Электронная подпись бухгалтера (облачная), 12 месяцев",
        "2 840,00",
        "Итого к оплате: 4 350,00 сом",
        "Оплатить до",
        "«Оплата ЭЦП»",
        "42151410",
        "42122900",
        f"«Оплата по счёту № {invoice.number}»",
        "уточните в офисе",  # no bank account configured: never a placeholder one
    ):
        assert expected in text, expected
    for channel in instructions.load()["eds"].channels:
        assert channel.title in text, channel.title
    assert text.count(invoice.number) >= 6  # large, and in every channel's "what to type"


def test_the_invoice_pdf_prints_the_configured_requisites(world: World) -> None:
    invoice = add_invoice(world.engine)
    settings = world.settings.model_copy(
        update={
            "company_name": "ОсОО «Дос Тэк Групп»",
            "company_inn": "02408200710018",
            "company_bank_name": "ОАО «Оптима Банк»",
            "company_bank_bik": "109018",
            "company_bank_account": "1090000123456789",
        }
    )
    with world.engine.begin() as conn:
        found = invoices.get(conn, invoice.number)
    assert found is not None
    text = pdf_text(invoice_pdf.render(found, settings))
    for expected in ("ОсОО «Дос Тэк Групп»", "02408200710018", "109018", "1090000123456789"):
        assert expected in text, expected
    assert "уточните в офисе" not in text
    # The transfer step points at the requisites, and they follow it.
    assert "по реквизитам ниже" in text
    assert text.index("по реквизитам ниже") < text.rindex("Расчётный счёт: 1090000123456789")


def test_without_a_bank_account_the_invoice_never_points_at_missing_requisites(
    world: World,
) -> None:
    """No step says «по реквизитам ниже» when nothing follows; the payer is told to ask."""
    invoice = add_invoice(world.engine)
    assert not world.settings.company_bank_account
    text = pdf_text(world.get(f"/api/v1/invoices/{invoice.number}/pdf").content)
    assert "реквизитам ниже" not in text
    assert "Реквизиты расчётного счёта компании для перевода уточните в офисе" in text
    assert "Расчётный счёт" not in text
    # The transfer still says which payment code and purpose to use.
    bank = text[text.index("Банковский перевод") :]
    assert "42151410" in bank and f"«Оплата по счёту № {invoice.number}»" in bank


@pytest.mark.parametrize("state", ["paid", "cancelled", "expired"])
def test_an_invoice_that_cannot_be_paid_is_stamped_without_instructions(
    world: World, state: str
) -> None:
    if state == "expired":
        invoice = add_invoice(world.engine, now=datetime.now(UTC) - timedelta(days=40))
    else:
        invoice = add_invoice(world.engine)
    if state == "paid":
        assert world.gateway.pay("eds", invoice.number, "1510.00")["result"] == 0
    if state == "cancelled":
        assert world.post(f"/api/v1/invoices/{invoice.number}/cancel").is_success
    text = pdf_text(world.get(f"/api/v1/invoices/{invoice.number}/pdf").content)
    word = {"paid": "ОПЛАЧЕН", "cancelled": "АННУЛИРОВАН", "expired": "СРОК ИСТЁК"}[state]
    assert word in text and invoice.number in text
    assert "Как оплатить счёт" not in text


# --- the instructions as data ------------------------------------------------------------


def test_the_shipped_instructions_say_what_to_choose_and_what_to_type() -> None:
    loaded = instructions.load()
    codes = [c.code for c in loaded["eds"].channels]
    assert codes == ["optima24", "megapay", "terminals", "bank", "cash_desk"]
    for channel in loaded["eds"].channels:
        assert "{invoice_number}" in channel.enter, channel.code
    for channel in loaded["sochi"].channels:
        assert "{inn}" in channel.enter, channel.code
    megapay = {c.code: c for c in loaded["eds"].channels}["megapay"]
    assert "«Оплата ЭЦП»" in megapay.choose
    assert "«СОЧИ»" in {c.code: c for c in loaded["sochi"].channels}["megapay"].choose
    filled = loaded["eds"].filled(
        {"invoice_number": "4000000000000002", "amount": "1 510,00 сом", "valid_until": "x"}
    )
    assert "{" not in json.dumps([c.steps for c in filled.channels], ensure_ascii=False)


def test_instructions_with_an_unknown_placeholder_are_refused(tmp_path: Path) -> None:
    data = json.loads(instructions.shipped_text())
    data["services"]["eds"]["channels"][0]["enter"] = "номер {account}"
    with pytest.raises(instructions.InstructionsError, match=r"\{account\}"):
        instructions.parse(data)
    data["services"]["eds"]["channels"][0]["enter"] = "номер {invoice_number"
    with pytest.raises(instructions.InstructionsError, match="скобка"):
        instructions.parse(data)
    data["services"]["eds"]["channels"][0]["enter"] = "номер {invoice_number}"
    instructions.parse(data)
    del data["services"]["sochi"]
    with pytest.raises(instructions.InstructionsError, match="sochi"):
        instructions.parse(data)


def test_an_instructions_file_of_the_company_replaces_the_shipped_one(
    world: World, tmp_path: Path
) -> None:
    data = json.loads(instructions.shipped_text())
    data["services"]["eds"]["channels"] = [
        {
            "code": "elsom",
            "title": "Кошелёк «Элсом»",
            "choose": "услуга «Dos Tek: ЭЦП»",
            "enter": "номер счёта {invoice_number}",
            "steps": ["Оплатите {amount}."],
        }
    ]
    path = tmp_path / "instructions.json"
    path.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    invoice = add_invoice(world.engine)
    with world.engine.begin() as conn:
        found = invoices.get(conn, invoice.number)
    assert found is not None
    settings = world.settings.model_copy(update={"payment_instructions_file": str(path)})
    text = pdf_text(invoice_pdf.render(found, settings))
    assert "Кошелёк «Элсом»" in text and "Оплатите 1 510,00 сом." in text
    assert "MegaPay" not in text


# --- the API: scopes, problems, the receipt link -----------------------------------------


def test_the_receipt_link(world: World) -> None:
    payment_id, _inn, _txn = world.sochi_payment()
    first = world.get(f"/api/v1/payments/{payment_id}/receipt")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["payment_id"] == payment_id
    assert body["url"] == f"{BASE}/r/{body['token']}"
    again = world.get(f"/api/v1/payments/{payment_id}/receipt", key="admin").json()
    assert again == body
    with world.engine.begin() as conn:
        made = [
            line
            for line in audit.entries(conn, object_type="payment", object_id=str(payment_id))
            if line["action"] == "receipt.create"
        ]
    assert [(m["actor"], m["address"]) for m in made] == [("apikey:key-read", "203.0.113.9")]
    pdf = world.get(f"/api/v1/payments/{payment_id}/receipt.pdf").content
    assert body["url"] in pdf_text(pdf)  # the PDF's QR code is the same link


def problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


@pytest.mark.parametrize("kind", ["invoice", "receipt_pdf", "receipt"])
def test_the_document_endpoints_answer_problems_like_their_neighbours(
    world: World, kind: str
) -> None:
    payment_id, _inn, _txn = world.sochi_payment()
    invoice = add_invoice(world.engine)
    path, missing, malformed, code = {
        "invoice": (
            f"/api/v1/invoices/{invoice.number}/pdf",
            "/api/v1/invoices/4000000000000002/pdf",
            "/api/v1/invoices/12345/pdf",
            "invoice_not_found",
        ),
        "receipt_pdf": (
            f"/api/v1/payments/{payment_id}/receipt.pdf",
            "/api/v1/payments/999999/receipt.pdf",
            "/api/v1/payments/abc/receipt.pdf",
            "payment_not_found",
        ),
        "receipt": (
            f"/api/v1/payments/{payment_id}/receipt",
            "/api/v1/payments/999999/receipt",
            "/api/v1/payments/1e3/receipt",
            "payment_not_found",
        ),
    }[kind]
    problem(world.get(path, key=None), 401, "unauthenticated")
    problem(
        world.client.get(path, headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key"
    )
    problem(world.get(path, key="charges"), 403, "insufficient_scope")
    problem(world.get(missing), 404, code)
    problem(world.get(malformed), 422, "invalid_request")
    for key in ("read", "write", "admin"):
        assert world.get(path, key=key).status_code == 200
    with world.engine.begin() as conn:
        stored = conn.execute(select(func.count()).select_from(receipts_table)).scalar()
    assert stored == (0 if kind == "invoice" else 1)  # refusals made no token


def test_the_pdf_operations_are_documented_as_pdf(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/invoices/{number}/pdf", "/api/v1/payments/{id}/receipt.pdf"):
        operation = paths[path]["get"]
        ok = operation["responses"]["200"]
        assert list(ok["content"]) == ["application/pdf"]
        assert ok["content"]["application/pdf"]["schema"] == {"type": "string", "format": "binary"}
        assert "Content-Disposition" in ok["headers"]
        assert {"401", "403", "404", "422"} <= set(operation["responses"])
    receipt = paths["/api/v1/payments/{id}/receipt"]["get"]["responses"]["200"]
    assert "application/json" in receipt["content"]


def test_real_pdf_answers_conform_to_the_document(world: World) -> None:
    """The fuzzer rarely finds a document that exists; these answers are checked the same way."""
    payment_id, _inn, _txn = world.sochi_payment()
    invoice = add_invoice(world.engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.app)
    for path, parameters in (
        ("/api/v1/invoices/{number}/pdf", {"number": invoice.number}),
        ("/api/v1/payments/{id}/receipt.pdf", {"id": str(payment_id)}),
        ("/api/v1/payments/{id}/receipt", {"id": str(payment_id)}),
    ):
        case = schema[path]["GET"].Case(path_parameters=parameters)
        headers = {"Authorization": f"Bearer {world.tokens['read']}"}
        response = world.client.get(case.formatted_path, headers=headers)
        assert response.status_code == 200
        case.validate_response(response, headers=headers)


# --- the CLI -----------------------------------------------------------------------------


def test_cli_saves_an_invoice_pdf(cli: Cli, engine: Engine, tmp_path: Path) -> None:
    invoice = add_invoice(engine)
    target = tmp_path / "счёт.pdf"
    result = cli("invoice", "pdf", invoice.number, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert f"Счёт № {invoice.number} сохранён в {target}" in result.output
    assert invoice.number in pdf_text(target.read_bytes())
    missing = cli("invoice", "pdf", "4000000000000002")
    assert missing.exit_code == 1 and "Ошибка: счёт 4000000000000002 не найден" in missing.output
    malformed = cli("invoice", "pdf", "12345", "--json")
    assert malformed.exit_code == 1 and "error" in json.loads(malformed.stdout)


def test_cli_saves_a_receipt_and_prints_its_link(
    cli: Cli, app: Any, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = Gateway.create(app, engine, code="optima")
    inn = add_customer(engine, name=CUSTOMER)
    payment_id = int(gateway.pay("sochi", inn, "1510.00", txn_date=TXN_DATE)["prv_txn"])
    monkeypatch.setenv("TOLOM_PUBLIC_BASE_URL", BASE)
    monkeypatch.chdir(tmp_path)
    result = cli("payment", "receipt", str(payment_id), "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["file"] == f"receipt-{payment_id}.pdf"
    assert answer["url"].startswith(f"{BASE}/r/")
    text = pdf_text((tmp_path / answer["file"]).read_bytes())
    assert answer["url"] in text and CUSTOMER in text
    again = cli("payment", "receipt", str(payment_id), "-o", str(tmp_path / "r.pdf"))
    assert again.exit_code == 0 and answer["url"] in again.output  # the same link
    with engine.begin() as conn:
        made = [
            line["actor"]
            for line in audit.entries(conn, object_type="payment", object_id=str(payment_id))
            if line["action"] == "receipt.create"
        ]
    assert len(made) == 1 and made[0].startswith("cli:")
    missing = cli("payment", "receipt", "999999")
    assert missing.exit_code == 1 and "не найден" in missing.output
    assert cli("payment", "receipt", "x1").exit_code == 1


def test_cli_writes_a_pdf_to_standard_output(cli: Cli, engine: Engine) -> None:
    invoice = add_invoice(engine)
    result = cli("invoice", "pdf", invoice.number, "-o", "-")
    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(b"%PDF-")
    assert invoice.number in pdf_text(result.stdout_bytes)


def test_receipt_documents_render_without_the_database() -> None:
    """The renderers take plain data: the web pages can call them as they are."""
    settings = Settings(database_url="sqlite://", public_base_url=BASE)
    document = receipts.ReceiptDocument(
        number=1001,
        token="Q" * 32,
        url=receipts.public_url(settings, "Q" * 32),
        amount=1,
        paid_at=datetime(2026, 11, 21, 8, 30, tzinfo=UTC),
        service="eds",
        service_name="Оплата ЭЦП и носителя Рутокен ЭЦП по счёту",
        status="accepted",
        reversed_at=None,
        channel="gateway",
        channel_name="MegaPay",
        inn=None,
        payer="ИП " + "Очень Длинное Имя " * 12,
        invoice_number="4000000000000002",
        payment_code=None,
        bank_reference=None,
        payee=settings.company_name,
    )
    content = receipt_pdf.render(document, settings)
    assert len(PdfReader(io.BytesIO(content)).pages) == 1  # a long name still fits one page
    text = pdf_text(content)
    assert "0,01 сом" in text and "21.11.2026 14:30" in text and "MegaPay" in text
    assert "ИНН плательщика" not in text


def test_a_payer_and_note_fit_the_receipt_page_and_the_longest_move_the_qr_code_whole() -> None:
    settings = Settings(database_url="sqlite://", public_base_url=BASE)

    def render(paid_by: str, note: str) -> bytes:
        return receipt_pdf.render(
            receipts.ReceiptDocument(
                number=1002,
                token="Q" * 32,
                url=receipts.public_url(settings, "Q" * 32),
                amount=100,
                paid_at=datetime(2026, 11, 21, 8, 30, tzinfo=UTC),
                service="eds",
                service_name="Оплата ЭЦП и носителя Рутокен ЭЦП по счёту",
                status="accepted",
                reversed_at=None,
                channel="cash_desk",
                channel_name="Касса компании",
                inn=None,
                payer="ОсОО «Очень длинное название нового клиента»",
                invoice_number="4000000000000002",
                payment_code=None,
                bank_reference=None,
                payee=settings.company_name,
                paid_by=paid_by,
                note=note,
            ),
            settings,
        )

    words = "Имя Фамилия примечание " * 50
    usual = render(words[:80], words[:160])
    assert len(PdfReader(io.BytesIO(usual)).pages) == 1
    longest = render(words[: manual.MAX_PAYER], words[: manual.MAX_NOTE])
    pages = PdfReader(io.BytesIO(longest)).pages
    text = pdf_text(longest)
    assert words[: manual.MAX_NOTE].split()[-1] in text  # nothing cut off
    url = receipts.public_url(settings, "Q" * 32)
    assert url in pages[-1].extract_text()  # the QR code and its address moved together
    assert link_uris(longest) == [url, url]
