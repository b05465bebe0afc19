"""Files of an agent's day: the act (PDF, XLSX) and our registry in the agent's format."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from fastapi import APIRouter, Response

from tolom.api.operator.common import AUTH, OperatorRoute, Reader, transaction
from tolom.api.operator.reconciliation.refusals import day_of, no_agent, refused
from tolom.api.operator.reconciliation.schemas import AgentCode, DayText
from tolom.api.security import Caller
from tolom.backoffice.exports import XLSX_MEDIA_TYPE
from tolom.httpkit.database import retry_later_when_unavailable
from tolom.httpkit.downloads import (
    FILE_SCHEMA,
    PdfResponse,
    XlsxResponse,
    disposition_header,
    file_attachment,
    pdf_answer,
    pdf_responses,
    xlsx_answer,
)
from tolom.httpkit.problems import responses
from tolom.reconciliation import outbound, queries
from tolom.reconciliation.days import NotFound, ReconciliationError

if TYPE_CHECKING:
    from tolom.reconciliation.act import Act

router = APIRouter(route_class=OperatorRoute)  # tagged by the router that includes it

_ACT = (
    "The act of reconciliation (акт сверки) of the agent's day: both sides' totals, what "
    "matched, every discrepancy with its resolution (who, when, why), the net difference "
    "and signature lines. Stamped as a draft (ЧЕРНОВИК) until the day is closed. A day "
    "without a registry has no act (409 `reconciliation_refused`)."
)


def _act(caller: Caller, code: str, when: date) -> Act:
    # The act module brings fpdf, ~0.25 s of CPU: imported by the first act, not by every
    # server process at startup (docs/operations.md).
    from tolom.reconciliation import act

    with transaction(caller.runtime) as conn:
        try:
            return act.load(conn, code, when)
        except ReconciliationError as error:
            raise refused(error, "agent_not_found") from None


@router.get(
    "/reconciliation/days/{code}/{day}/act.pdf",
    summary="The act of the day as a PDF",
    description=_ACT,
    response_class=PdfResponse,
    responses={
        **pdf_responses("akt-optima-2026-11-21.pdf", "The act, as an attachment."),
        **responses(*AUTH, "invalid_request", "agent_not_found", "reconciliation_refused"),
    },
)
def get_act_pdf(code: AgentCode, day: DayText, caller: Reader) -> PdfResponse:
    from tolom.reconciliation import act

    when = day_of(day)
    found = _act(caller, code, when)
    content = act.pdf(found, caller.runtime.settings)
    return pdf_answer(content, f"akt-{found.day.agent}-{when.isoformat()}.pdf")


@router.get(
    "/reconciliation/days/{code}/{day}/act.xlsx",
    summary="The act of the day as an XLSX workbook",
    description=_ACT + " Two sheets: the act, and the discrepancies one per row.",
    response_class=XlsxResponse,
    responses={
        200: {
            "description": "The act, as an attachment.",
            "content": {XLSX_MEDIA_TYPE: {"schema": FILE_SCHEMA}},
            "headers": disposition_header("akt-optima-2026-11-21.xlsx"),
        },
        **responses(*AUTH, "invalid_request", "agent_not_found", "reconciliation_refused"),
    },
)
def get_act_xlsx(code: AgentCode, day: DayText, caller: Reader) -> XlsxResponse:
    from tolom.reconciliation import act

    when = day_of(day)
    found = _act(caller, code, when)
    content = act.xlsx(found, caller.runtime.settings)
    return xlsx_answer(content, f"akt-{found.day.agent}-{when.isoformat()}.xlsx")


@router.get(
    "/reconciliation/days/{code}/{day}/our-registry",
    summary="Our registry of the agent's day, in the agent's format",
    description="Our accepted payments of the agent's business day, oldest first, written "
    "in the agent's own registry format (kind, columns, encoding, zone, amount unit), to "
    "send to the agent: what it reads back is exactly our payments. Built in a temporary "
    "file, then sent; a day without payments gives a file with no lines.",
    response_class=Response,
    responses={
        200: {
            "description": "The file, as an attachment; text in the format's encoding.",
            "content": {
                outbound.MEDIA_TYPES["qiwi"]: {"schema": {"type": "string"}},
                outbound.MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                outbound.MEDIA_TYPES["xlsx"]: {"schema": FILE_SCHEMA},
            },
            "headers": disposition_header("tolom-optima-2026-11-21.txt"),
        },
        **responses(*AUTH, "invalid_request", "agent_not_found"),
    },
)
def get_our_registry(code: AgentCode, day: DayText, caller: Reader) -> Response:
    when = day_of(day)
    with transaction(caller.runtime) as conn:
        try:
            found = queries.agent_format(conn, code)
        except NotFound:
            raise no_agent(code) from None
    with retry_later_when_unavailable():
        built = outbound.temporary(caller.runtime.engine, found.agent, when, found.format)
    return file_attachment(built.file, built.size, built.name, built.media_type)
