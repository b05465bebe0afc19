"""The invoice as an A4 PDF: seller, the number the customer types (large), payer, lines,
total, and how to pay it in every channel, from the instructions data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fpdf.fonts import FontFace

from tolom.billing.invoices import Invoice
from tolom.documents import instructions
from tolom.documents.pdf import A4, GREY, RED, Document, qr_code, stamp
from tolom.formatting import date_time, day, som
from tolom.settings import Settings

MARGIN = 15.0
QR_SIZE = 34.0
LABEL = 34.0
STEPS_INDENT = 22.0
CHANNEL_GAP = 2.5
ASK_FOR_REQUISITES = (
    "Реквизиты расчётного счёта компании для перевода уточните в офисе компании, "
    "затем переведите {amount}."
)


class _InvoicePdf(Document):
    """An invoice's pages, each footed with its number and page count."""

    number = ""

    def footer(self) -> None:
        self.set_y(-10)
        self.text_style(7, colour=GREY)
        self.cell(0, 4, f"Счёт на оплату № {self.number} · стр. {self.page_no()} из {{nb}}")

    def channel(self, position: int, channel: instructions.Channel, requisites: list[str]) -> None:
        """One way to pay: what to choose, what to type, the steps; never split across pages."""
        title = f"{position}. {channel.title}"
        extra = list(requisites) if channel.requisites else []
        if self.will_page_break(self._channel_height(title, channel, extra)):
            self.add_page()
        self.line_of_text(title, 10.5, bold=True, height=5.5)
        self.field("Выбрать", channel.choose, label_width=STEPS_INDENT, size=9, bold=True)
        self.field("Указать", channel.enter, label_width=STEPS_INDENT, size=9, bold=True)
        for number, step in enumerate(channel.steps, start=1):
            self.field(f"{number})", step, **self._step)
        for line in extra:
            self.line_of_text(line, 8.5, bold=True, indent=STEPS_INDENT, height=4.2)
        if channel.note:
            self.line_of_text(channel.note, 8, colour=GREY, indent=STEPS_INDENT, height=4)
        self.ln(CHANNEL_GAP)

    @property
    def _step(self) -> dict[str, Any]:
        return {
            "label_width": 6,
            "size": 8.5,
            "x": self.l_margin + STEPS_INDENT,
            "width": self.width - STEPS_INDENT,
        }

    def _channel_height(self, title: str, channel: instructions.Channel, extra: list[str]) -> float:
        step = {k: v for k, v in self._step.items() if k != "x"}
        return (
            self.text_height(title, 10.5, bold=True, height=5.5)
            + self.field_height(
                "Выбрать", channel.choose, label_width=STEPS_INDENT, size=9, bold=True
            )
            + self.field_height(
                "Указать", channel.enter, label_width=STEPS_INDENT, size=9, bold=True
            )
            + sum(self.field_height(f"{n})", s, **step) for n, s in enumerate(channel.steps, 1))
            + sum(
                self.text_height(x, 8.5, bold=True, indent=STEPS_INDENT, height=4.2) for x in extra
            )
            + (
                self.text_height(channel.note, 8, indent=STEPS_INDENT, height=4)
                if channel.note
                else 0
            )
            + CHANNEL_GAP
        )


def seller_lines(settings: Settings) -> list[str]:
    """The seller's requisites that are configured, one per line."""
    found = [
        ("ИНН", settings.company_inn),
        ("Адрес", settings.company_address),
        ("Банк", settings.company_bank_name),
        ("БИК", settings.company_bank_bik),
        ("Расчётный счёт", settings.company_bank_account),
        ("Телефон", settings.company_phone),
    ]
    return [f"{label}: {value}" for label, value in found if value]


def bank_requisites(settings: Settings) -> list[str] | None:
    """What a bank transfer needs; None without a configured account (nothing to print)."""
    if not settings.company_bank_account:
        return None
    found = [
        ("Получатель", settings.company_name),
        ("ИНН получателя", settings.company_inn),
        ("Банк получателя", settings.company_bank_name),
        ("БИК", settings.company_bank_bik),
        ("Расчётный счёт", settings.company_bank_account),
    ]
    return [f"{label}: {value}" for label, value in found if value]


def _state_line(invoice: Invoice, now: datetime) -> tuple[str, str] | None:
    """(stamp, explanation) for an invoice that can no longer be paid, else None."""
    state = invoice.state(now)
    if state == "paid":
        when = f" {date_time(invoice.paid_at)}" if invoice.paid_at else ""
        return "ОПЛАЧЕН", f"Счёт оплачен{when}, платёж № {invoice.payment_id}."
    if state == "cancelled":
        return "АННУЛИРОВАН", "Счёт аннулирован: оплата по нему не принимается."
    if state == "expired":
        return (
            "СРОК ИСТЁК",
            "Срок оплаты счёта истёк: оплата по нему не принимается. Обратитесь за новым счётом.",
        )
    return None


def render(invoice: Invoice, settings: Settings, *, now: datetime | None = None) -> bytes:
    """The invoice PDF; an open invoice carries the payment instructions, others a stamp."""
    now = now or datetime.now(UTC)
    pdf = _InvoicePdf(
        A4, title=f"Счёт на оплату № {invoice.number}", author=settings.company_name, margin=MARGIN
    )
    pdf.number = invoice.number
    pdf.add_page()

    # Seller on the left, the QR code of the invoice number on the right.
    top = pdf.get_y()
    qr_x = pdf.w - MARGIN - QR_SIZE
    qr_code(pdf, invoice.number, qr_x, top, QR_SIZE)
    pdf.text_style(6.5, colour=GREY)
    pdf.set_xy(qr_x, top + QR_SIZE)
    pdf.multi_cell(QR_SIZE, 3, "QR-код: номер счёта", align="C")
    pdf.set_xy(MARGIN, top)
    text_width = pdf.width - QR_SIZE - 5
    pdf.text_style(9, colour=GREY)
    pdf.cell(text_width, 5, "Продавец (получатель платежа)", new_x="LMARGIN", new_y="NEXT")
    pdf.text_style(13, bold=True)
    pdf.multi_cell(text_width, 6.5, settings.company_name, new_x="LMARGIN", new_y="NEXT")
    pdf.text_style(9)
    for line in seller_lines(settings):
        pdf.multi_cell(text_width, 4.5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), top + QR_SIZE + 4) + 2)
    pdf.rule()

    # The number is what the customer types: large, unbroken, easy to read out.
    pdf.line_of_text("СЧЁТ НА ОПЛАТУ №", 13, bold=True, height=7)
    pdf.line_of_text(invoice.number, 26, bold=True, height=12)
    pdf.line_of_text(
        "Номер счёта — это лицевой счёт при оплате: вводите все 16 цифр.", 8.5, colour=GREY
    )
    pdf.ln(3)
    pdf.field("Дата счёта", day(invoice.created_at), label_width=LABEL)
    pdf.field("Оплатить до", f"{date_time(invoice.expires_at)} (Бишкек)", label_width=LABEL)
    pdf.field("Плательщик", invoice.payer_name, label_width=LABEL, bold=True)
    if invoice.inn:
        pdf.field("ИНН плательщика", invoice.inn, label_width=LABEL)
    pdf.ln(2)

    pdf.text_style(9)
    with pdf.table(
        col_widths=(8, 96, 16, 30, 30),
        text_align=("RIGHT", "LEFT", "RIGHT", "RIGHT", "RIGHT"),
        line_height=5,
        padding=1.2,
        headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
    ) as table:
        table.row(("№", "Наименование", "Кол-во", "Цена", "Сумма"))
        for position, item in enumerate(invoice.lines, start=1):
            table.row(
                (
                    str(position),
                    item.name,
                    str(item.quantity),
                    som(item.unit_price, currency=""),
                    som(item.amount, currency=""),
                )
            )
    pdf.ln(2)
    pdf.line_of_text(f"Итого к оплате: {som(invoice.total)}", 13, bold=True, align="R", height=7)
    pdf.ln(2)

    ended = _state_line(invoice, now)
    if ended is not None:
        word, explanation = ended
        pdf.line_of_text(explanation, 11, bold=True, colour=RED, height=6)
        stamp(pdf, word, x=pdf.w / 2, y=pdf.get_y() + 14, width=90)
    else:
        _instructions(pdf, invoice, settings)
    pdf.ln(4)
    pdf.line_of_text(f"Счёт сформирован {date_time(now)} (Бишкек)", 7, colour=GREY)
    return pdf.output_bytes()


def _instructions(pdf: _InvoicePdf, invoice: Invoice, settings: Settings) -> None:
    how = instructions.load(settings.payment_instructions_file)["eds"].filled(
        instructions.invoice_values(invoice.number, invoice.total, invoice.expires_at)
    )
    pdf.rule()
    pdf.line_of_text(how.title, 13, bold=True, height=7)
    pdf.line_of_text(how.intro, 9, height=4.5)
    pdf.ln(2)
    # A channel whose steps need the requisites ("по реквизитам ниже") cannot be followed
    # without an account: its steps become one, where to ask for them, never a pointer at
    # nothing. What to choose and type (payment code, purpose) stays: it holds either way.
    requisites = bank_requisites(settings)
    for position, channel in enumerate(how.channels, start=1):
        if channel.requisites and requisites is None:
            channel = replace(
                channel, steps=(ASK_FOR_REQUISITES.format(amount=som(invoice.total)),)
            )
        pdf.channel(position, channel, requisites or [])
