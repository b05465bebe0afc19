"""The act of reconciliation (акт сверки) of an agent's day, as PDF and XLSX.

Both sides' totals, what matched, every discrepancy with how it was resolved (by whom, when,
why), the net difference, and signature lines for both parties. An act of a day that is
not closed yet says so across the page: it is a draft until every discrepancy is resolved.
Its words are the catalogues' (`act.*`), Russian unless a language is asked for.
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
from tolom.texts import DEFAULT, N_, Texts, texts

KIND_NAMES = {
    "missing_ours": N_("recon.kind.missing_ours"),
    "missing_theirs": N_("recon.kind.missing_theirs"),
    "amount_mismatch": N_("recon.kind.amount_mismatch"),
    "account_mismatch": N_("recon.kind.account_mismatch"),
    "duplicate": N_("act.kind.duplicate"),
}
RESOLUTION_NAMES = {
    "accepted": N_("recon.resolution.accepted"),
    "reversed": N_("recon.resolution.reversed"),
    "explained": N_("recon.resolution.explained"),
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
        raise ReconciliationError(N_("reconciliation.error.no_act"))
    name = conn.execute(
        select(agents_table.c.name).where(agents_table.c.id == found.agent_id)
    ).scalar_one()
    listed = days.discrepancies_of(conn, found.registry_id, limit=MAX_LISTED)
    return Act(found, str(name), found.summary, listed, datetime.now(UTC))


def _amount(tyiyn: int | None) -> str:
    return "—" if tyiyn is None else som(tyiyn)


def _resolution(t: Texts, d: Discrepancy) -> str:
    if d.resolution is None:
        return t("recon.unresolved")
    moment = date_time(d.resolved_at) if d.resolved_at else ""
    return f"{t(RESOLUTION_NAMES[d.resolution])} ({d.resolved_by}, {moment}): {d.reason}"


def title(act: Act, language: str | None = DEFAULT) -> str:
    t = texts(language)
    return t("act.title", day=act.day.business_date.strftime("%d.%m.%Y"))


def pdf(act: Act, settings: Settings, language: str | None = DEFAULT) -> bytes:
    """The act as an A4 PDF, in Russian unless `language` says otherwise."""
    t = texts(language)
    doc = Document(A4, title=title(act, language), author=settings.company_name, margin=15)
    doc.add_page()
    doc.line_of_text(t("act.heading"), 14, bold=True, align="C")
    day = act.day.business_date.strftime("%d.%m.%Y")
    doc.line_of_text(t("act.business_day", day=day), 10, align="C")
    if not act.final:  # an act of an open day is not one anybody signs
        stamp(doc, t("act.draft_stamp"), x=doc.w - doc.r_margin - 28, y=14, width=52)
    doc.ln(3)
    label = 55.0
    doc.field(t("act.recipient"), settings.company_name, label_width=label)
    doc.field(t("act.agent"), f"{act.agent_name} ({act.day.agent})", label_width=label)
    doc.field(
        t("act.registry"),
        t(
            "act.registry.pdf",
            number=act.day.registry_id,
            file=act.day.file_name,
            at=date_time(act.day.imported_at) if act.day.imported_at else "",
        ),
        label_width=label,
    )
    state = (
        t("act.closed_at", at=date_time(act.day.closed_at), by=act.day.closed_by)
        if act.final and act.day.closed_at
        else t("act.open_draft")
    )
    doc.field(t("act.day"), state, label_width=label)
    doc.ln(2)
    doc.rule()
    s = act.summary
    doc.line_of_text(t("act.totals"), 11, bold=True)
    for name, count, amount in (
        (t("act.theirs"), s.their_count, s.their_amount),
        (t("act.ours", company=settings.company_name), s.our_count, s.our_amount),
        (t("act.matched"), s.matched_count, s.matched_amount),
    ):
        doc.field(name, t("act.count_amount", count=count, amount=som(amount)), label_width=label)
    for kind in KINDS:
        total = s.classes[kind]
        if total.count:
            doc.field(
                t(KIND_NAMES[kind]),
                t(
                    "act.class_total",
                    number=total.count,
                    theirs=som(total.their_amount),
                    ours=som(total.our_amount),
                ),
                label_width=label,
            )
    doc.field(t("act.difference"), som(s.difference), label_width=label, bold=True)
    if act.discrepancies:
        doc.ln(2)
        doc.rule()
        doc.line_of_text(t("act.discrepancies"), 11, bold=True)
        for d in act.discrepancies:
            head = f"№{d.id}. {t(KIND_NAMES[d.kind])}, txn_id {d.txn_id}"
            if d.line_no is not None:
                head = t("act.item_line", item=head, line=d.line_no)
            doc.line_of_text(head, 9, bold=True)
            sides = t(
                "act.sides",
                their_account=d.their_account or "—",
                their_amount=_amount(d.their_amount),
                our_account=d.our_account or "—",
                our_amount=_amount(d.our_amount),
            )
            if d.payment_id:
                sides = t("act.sides_payment", sides=sides, payment=d.payment_id)
            doc.line_of_text(sides + ".", 9, indent=4)
            doc.line_of_text(
                t("act.resolution_line", resolution=_resolution(t, d)), 9, indent=4, colour=GREY
            )
        if len(act.discrepancies) >= MAX_LISTED:
            doc.line_of_text(t("act.listed_first", max=MAX_LISTED), 9)
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
        doc.multi_cell(
            half - 5, 4.5, "_______________________ / ______________ /\n" + t("act.seal")
        )
    doc.set_y(top + 34)
    doc.line_of_text(t("act.generated", at=date_time(act.generated_at)), 8, colour=GREY)
    return doc.output_bytes()


def xlsx(act: Act, settings: Settings, language: str | None = DEFAULT) -> bytes:
    """The act as a workbook: the summary on one sheet, the discrepancies on another."""
    from openpyxl import Workbook

    from tolom.backoffice.exports import xlsx_text

    t = texts(language)
    book = Workbook(write_only=True)
    summary = book.create_sheet(t("act.sheet.summary"))
    s = act.summary
    text = xlsx_text  # free text (names, reasons) stays text: no formula, no XML-illegal char
    registry = t("act.registry.xlsx", number=act.day.registry_id, file=act.day.file_name)

    rows: list[list[object]] = [
        [t("act.heading_for"), act.day.business_date],
        [t("act.recipient"), text(summary, settings.company_name)],
        [t("act.agent"), text(summary, f"{act.agent_name} ({act.day.agent})")],
        [t("act.registry"), text(summary, registry)],
        [t("act.day"), t("act.closed") if act.final else t("act.open")],
        [],
        ["", t("act.column.count"), t("act.column.amount")],
        [t("act.theirs"), s.their_count, _som(s.their_amount)],
        [
            text(summary, t("act.ours", company=settings.company_name)),
            s.our_count,
            _som(s.our_amount),
        ],
        [t("act.matched"), s.matched_count, _som(s.matched_amount)],
    ]
    for kind in KINDS:
        total = s.classes[kind]
        rows.append([t(KIND_NAMES[kind]), total.count, _som(total.their_amount - total.our_amount)])
    rows.append([t("act.difference"), None, _som(s.difference)])
    for row in rows:
        summary.append(row)
    listed = book.create_sheet(t("act.sheet.discrepancies"))
    listed.append(
        [
            "№",
            t("act.column.kind"),
            "txn_id",
            t("act.column.line"),
            t("act.column.their_account"),
            t("act.column.their_amount"),
            t("act.column.payment"),
            t("act.column.our_account"),
            t("act.column.our_amount"),
            t("act.column.resolution"),
            t("act.column.by"),
            t("act.column.at"),
            t("act.column.reason"),
        ]
    )
    for d in act.discrepancies:
        listed.append(
            [
                d.id,
                t(KIND_NAMES[d.kind]),
                text(listed, d.txn_id),
                d.line_no,
                text(listed, d.their_account),
                None if d.their_amount is None else _som(d.their_amount),
                d.payment_id,
                text(listed, d.our_account),
                None if d.our_amount is None else _som(d.our_amount),
                t(RESOLUTION_NAMES.get(d.resolution or "", "recon.unresolved")),
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
