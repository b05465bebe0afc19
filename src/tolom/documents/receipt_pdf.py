"""The payer's receipt as a one-page A5 PDF, with a QR code of its public confirmation page."""

from __future__ import annotations

from datetime import UTC, datetime

from tolom.documents.receipts import ReceiptDocument
from tolom.formatting import date_time, som
from tolom.settings import Settings

MARGIN = 12.0
LABEL = 40.0
QR_SIZE = 40.0
QR_BLOCK = QR_SIZE + 22  # the code, the two lines under it and the footer line


def requisites_line(settings: Settings) -> str:
    """The company's INN, address and phone, whichever are configured."""
    parts = [
        f"ИНН {settings.company_inn}" if settings.company_inn else "",
        settings.company_address,
        f"тел. {settings.company_phone}" if settings.company_phone else "",
    ]
    return " · ".join(p for p in parts if p)


def status_text(receipt: ReceiptDocument) -> str:
    if receipt.status == "reversed":
        when = f" {date_time(receipt.reversed_at)}" if receipt.reversed_at else ""
        return f"ОТМЕНЁН{when}: платёж сторнирован и недействителен"
    return "Принят"


def render(receipt: ReceiptDocument, settings: Settings, *, now: datetime | None = None) -> bytes:
    """The receipt PDF. It is the payer's own, so it names the account and the payer."""
    # Imported by the first PDF, not with this module: fpdf costs every server process
    # ~0.25 s of CPU at startup, and the pages only need requisites_line (docs/operations.md).
    from tolom.documents.pdf import A5, GREY, Document, qr_code, stamp

    pdf = Document(A5, title=f"Квитанция № {receipt.number}", author=receipt.payee, margin=MARGIN)
    pdf.add_page()
    pdf.line_of_text(receipt.payee, 13, bold=True)
    details = requisites_line(settings)
    if details:
        pdf.line_of_text(details, 8, colour=GREY)
    pdf.ln(1)
    pdf.rule()
    pdf.line_of_text(f"Квитанция об оплате № {receipt.number}", 15, bold=True, height=8)
    pdf.ln(2)
    fields_top = pdf.get_y()

    pdf.field("Дата и время", f"{date_time(receipt.paid_at)} (Бишкек)", label_width=LABEL)
    pdf.field("Услуга", receipt.service_name, label_width=LABEL)
    if receipt.service == "sochi":
        pdf.field("ИНН", receipt.inn or "—", label_width=LABEL)
        pdf.field("Абонент", receipt.payer or "—", label_width=LABEL)
    else:
        pdf.field("Счёт на оплату №", receipt.invoice_number or "—", label_width=LABEL)
        pdf.field("Плательщик", receipt.payer or "—", label_width=LABEL)
        if receipt.inn:
            pdf.field("ИНН плательщика", receipt.inn, label_width=LABEL)
    pdf.field("Сумма", som(receipt.amount), label_width=LABEL, size=13, bold=True)
    pdf.field("Принято через", receipt.channel_name, label_width=LABEL)
    if receipt.channel == "bank":
        pdf.field("Код платежа", receipt.payment_code or "—", label_width=LABEL)
        pdf.field("Платёжное поручение", f"№ {receipt.bank_reference or '—'}", label_width=LABEL)
    if receipt.paid_by:
        pdf.field("Кто оплатил", receipt.paid_by, label_width=LABEL)
    if receipt.note:
        pdf.field("Примечание", receipt.note, label_width=LABEL, size=8.5)
    pdf.field(
        "Статус",
        status_text(receipt),
        label_width=LABEL,
        bold=receipt.status == "reversed",
    )
    if receipt.status == "reversed":
        middle = fields_top + (pdf.get_y() - fields_top) * 0.72
        stamp(pdf, "ОТМЕНЁН", x=pdf.w - MARGIN - 32, y=middle, width=56)

    pdf.ln(3)
    if pdf.will_page_break(QR_BLOCK):  # the longest payer and note: the QR code on its own page
        pdf.add_page()
    pdf.rule()
    top = pdf.get_y() + 2
    qr_code(pdf, receipt.url, (pdf.w - QR_SIZE) / 2, top, QR_SIZE, link=receipt.url)
    pdf.set_y(top + QR_SIZE + 1)
    pdf.line_of_text("Проверить платёж: отсканируйте QR-код или откройте", 8, align="C")
    pdf.line_of_text(receipt.url, 8, align="C", link=receipt.url)
    pdf.ln(2)
    made = date_time(now or datetime.now(UTC))
    pdf.line_of_text(f"Квитанция сформирована {made} (Бишкек)", 7, colour=GREY, align="C")
    return pdf.output_bytes()
