"""The act of reconciliation (акт сверки) of an agent's day, as PDF and XLSX.

Both sides' totals, what matched, every discrepancy with how it was resolved (by whom, when,
why), the net difference, and signature lines for both parties. An act of a day that is
not closed yet says so across the page: it is a draft until every discrepancy is resolved.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Connection, select

from tolom.db.schema import agents as agents_table
from tolom.documents.pdf import A4, GREY, Document, stamp
from tolom.formatting import date_time, som
from tolom.reconciliation import days
from tolom.reconciliation.days import Day, Discrepancy, ReconciliationError
from tolom.reconciliation.matching import KINDS, Summary
from tolom.settings import Settings

KIND_NAMES = {
    "missing_ours": "Нет у нас",
    "missing_theirs": "Нет у агента",
    "amount_mismatch": "Расходится сумма",
    "account_mismatch": "Расходится лицевой счёт",
    "duplicate": "Повтор строки в реестре агента",
}
RESOLUTION_NAMES = {
    "accepted": "платёж агента принят",
    "reversed": "наш платёж отменён",
    "explained": "объяснено",
}
MAX_LISTED = 5000  # discrepancies listed in the act; the rest are counted in the totals


@dataclass(frozen=True, slots=True)
class Act:
    day: Day
    agent_name: str
    summary: Summary
    discrepancies: list[Discrepancy]
    generated_at: datetime

    @property
    def final(self) -> bool:
        return self.day.state == "closed"


def load(conn: Connection, agent_code: str, business_date: date) -> Act:
    """The act's content; refused while the day has no registry."""
    found = days.day(conn, agent_code, business_date)
    if found.registry_id is None or found.summary is None:
        raise ReconciliationError("за этот день нет реестра агента: акт составить не из чего")
    name = conn.execute(
        select(agents_table.c.name).where(agents_table.c.id == found.agent_id)
    ).scalar_one()
    listed = days.discrepancies_of(conn, found.registry_id, limit=MAX_LISTED)
    return Act(found, str(name), found.summary, listed, datetime.now(UTC))


def _amount(tyiyn: int | None) -> str:
    return "—" if tyiyn is None else som(tyiyn)


def _resolution(d: Discrepancy) -> str:
    if d.resolution is None:
        return "не разобрано"
    moment = date_time(d.resolved_at) if d.resolved_at else ""
    return f"{RESOLUTION_NAMES[d.resolution]} ({d.resolved_by}, {moment}): {d.reason}"


def title(act: Act) -> str:
    return f"Акт сверки за {act.day.business_date:%d.%m.%Y}"


def pdf(act: Act, settings: Settings) -> bytes:
    """The act as an A4 PDF in Russian."""
    doc = Document(A4, title=title(act), author=settings.company_name, margin=15)
    doc.add_page()
    doc.line_of_text("АКТ СВЕРКИ ПЛАТЕЖЕЙ", 14, bold=True, align="C")
    doc.line_of_text(
        f"за рабочий день {act.day.business_date:%d.%m.%Y} (по времени агента)", 10, align="C"
    )
    if not act.final:  # an act of an open day is not one anybody signs
        stamp(doc, "ЧЕРНОВИК", x=doc.w - doc.r_margin - 28, y=14, width=52)
    doc.ln(3)
    label = 55.0
    doc.field("Получатель платежей", settings.company_name, label_width=label)
    doc.field("Платёжный агент", f"{act.agent_name} ({act.day.agent})", label_width=label)
    doc.field(
        "Реестр агента",
        f"№{act.day.registry_id}, файл «{act.day.file_name}», загружен "
        + (date_time(act.day.imported_at) if act.day.imported_at else ""),
        label_width=label,
    )
    state = (
        f"закрыт {date_time(act.day.closed_at)} ({act.day.closed_by})"
        if act.final and act.day.closed_at
        else "не закрыт — черновик акта"
    )
    doc.field("День", state, label_width=label)
    doc.ln(2)
    doc.rule()
    s = act.summary
    doc.line_of_text("Итоги", 11, bold=True)
    for name, count, amount in (
        ("По данным агента", s.their_count, s.their_amount),
        (f"По данным {settings.company_name}", s.our_count, s.our_amount),
        ("Совпало", s.matched_count, s.matched_amount),
    ):
        doc.field(name, f"{count} плат. на {som(amount)}", label_width=label)
    for kind in KINDS:
        total = s.classes[kind]
        if total.count:
            doc.field(
                KIND_NAMES[kind],
                f"{total.count}: у агента {som(total.their_amount)}, у нас {som(total.our_amount)}",
                label_width=label,
            )
    doc.field("Разница (агент − мы)", som(s.difference), label_width=label, bold=True)
    if act.discrepancies:
        doc.ln(2)
        doc.rule()
        doc.line_of_text("Расхождения и их разбор", 11, bold=True)
        for d in act.discrepancies:
            head = f"№{d.id}. {KIND_NAMES[d.kind]}, txn_id {d.txn_id}"
            if d.line_no is not None:
                head += f", строка {d.line_no} реестра"
            doc.line_of_text(head, 9, bold=True)
            doc.line_of_text(
                f"У агента: {d.their_account or '—'}, {_amount(d.their_amount)}.  "
                f"У нас: {d.our_account or '—'}, {_amount(d.our_amount)}"
                + (f" (платёж №{d.payment_id})" if d.payment_id else "")
                + ".",
                9,
                indent=4,
            )
            doc.line_of_text(f"Разбор: {_resolution(d)}", 9, indent=4, colour=GREY)
        if len(act.discrepancies) >= MAX_LISTED:
            doc.line_of_text(
                f"Перечислены первые {MAX_LISTED} расхождений; все учтены в итогах.", 9
            )
    doc.ln(6)
    if doc.will_page_break(40):
        doc.add_page()
    top = doc.get_y()
    half = doc.width / 2
    for index, side in enumerate((settings.company_name, act.agent_name)):
        x = doc.l_margin + index * half
        doc.set_xy(x, top)
        doc.text_style(9, colour=GREY)
        doc.multi_cell(half - 5, 4.5, side)
        doc.set_xy(x, top + 18)
        doc.text_style(9)
        doc.multi_cell(half - 5, 4.5, "_______________________ / ______________ /\nМ. П.")
    doc.set_y(top + 34)
    doc.line_of_text(f"Сформирован {date_time(act.generated_at)} в Tolom.", 8, colour=GREY)
    return doc.output_bytes()


def xlsx(act: Act, settings: Settings) -> bytes:
    """The act as a workbook: the summary on one sheet, the discrepancies on another."""
    from openpyxl import Workbook

    from tolom.backoffice.exports import xlsx_text

    book = Workbook(write_only=True)
    summary = book.create_sheet("Акт")
    s = act.summary
    text = xlsx_text  # free text (names, reasons) stays text: no formula, no XML-illegal char

    rows: list[list[object]] = [
        ["Акт сверки платежей за", act.day.business_date],
        ["Получатель платежей", text(summary, settings.company_name)],
        ["Платёжный агент", text(summary, f"{act.agent_name} ({act.day.agent})")],
        ["Реестр агента", text(summary, f"№{act.day.registry_id} «{act.day.file_name}»")],
        ["День", "закрыт" if act.final else "не закрыт (черновик)"],
        [],
        ["", "Количество", "Сумма, сом"],
        ["По данным агента", s.their_count, _som(s.their_amount)],
        [text(summary, f"По данным {settings.company_name}"), s.our_count, _som(s.our_amount)],
        ["Совпало", s.matched_count, _som(s.matched_amount)],
    ]
    for kind in KINDS:
        total = s.classes[kind]
        rows.append([KIND_NAMES[kind], total.count, _som(total.their_amount - total.our_amount)])
    rows.append(["Разница (агент − мы)", None, _som(s.difference)])
    for row in rows:
        summary.append(row)
    listed = book.create_sheet("Расхождения")
    listed.append(
        [
            "№",
            "Вид",
            "txn_id",
            "Строка реестра",
            "Счёт у агента",
            "Сумма у агента",
            "Наш платёж",
            "Счёт у нас",
            "Сумма у нас",
            "Разбор",
            "Кто",
            "Когда",
            "Причина",
        ]
    )
    for d in act.discrepancies:
        listed.append(
            [
                d.id,
                KIND_NAMES[d.kind],
                text(listed, d.txn_id),
                d.line_no,
                text(listed, d.their_account),
                None if d.their_amount is None else _som(d.their_amount),
                d.payment_id,
                text(listed, d.our_account),
                None if d.our_amount is None else _som(d.our_amount),
                RESOLUTION_NAMES.get(d.resolution or "", "не разобрано"),
                text(listed, d.resolved_by),
                date_time(d.resolved_at) if d.resolved_at else None,
                text(listed, d.reason),
            ]
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _som(tyiyn: int) -> Decimal:
    """Som as an exact decimal number for a spreadsheet cell."""
    return Decimal(tyiyn) / 100
