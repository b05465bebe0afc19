"""Tariffs of reports sent through СОЧИ, and the quote: the calculator the company's site offers.

Read by operators (`read`) and by the СОЧИ system's service key (`charges`); prices are
changed with `tolom tariff` (audited).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AUTH,
    OperatorRoute,
    bad_input,
    transaction,
)
from tolom.api.security import Caller, require
from tolom.billing import tariffs
from tolom.httpkit.problems import responses
from tolom.money import format_amount

router = APIRouter(prefix="/tariffs", tags=["tariffs"], route_class=OperatorRoute)

# Operators read tariffs, and so does the СОЧИ system with its `charges` key.
TariffReader = Annotated[Caller, Depends(require("read", "charges"))]
Period = Literal["month", "quarter", "year"]


class Tariff(BaseModel):
    """The price of sending one report of `form` to `state_body`, due once a `period`."""

    code: str = Field(examples=["sti-vat-month"])
    state_body: str = Field(
        description="sti (ГНС), sf (Социальный фонд), nsc (Нацстатком)", examples=["sti"]
    )
    form: str = Field(examples=["vat"])
    period: Period = Field(description="How often the report is due.", examples=["month"])
    name: str = Field(examples=["ГНС: налоговый отчёт по НДС (ежемесячный)"])
    price: str = Field(description=f"Per report sent. {AMOUNT_DESCRIPTION}", examples=["150.00"])
    active: bool = Field(description="false: no longer offered or charged.", examples=[True])


class TariffList(BaseModel):
    items: list[Tariff]


class QuoteItemIn(BaseModel):
    """A report: a tariff code, or its state body, form and period; and how many of it."""

    model_config = ConfigDict(extra="forbid")

    tariff: str | None = Field(default=None, max_length=32, examples=["sti-vat-month"])
    state_body: str | None = Field(default=None, max_length=16, examples=[None])
    form: str | None = Field(default=None, max_length=64, examples=[None])
    period: Period | None = Field(default=None, examples=[None])
    count: int = Field(
        default=1,
        ge=1,
        le=tariffs.MAX_COUNT,
        description="Reports of this kind sent each time it is due (e.g. one per company).",
        examples=[1],
    )


class QuoteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"tariff": "sti-vat-month"},
                        {"state_body": "sf", "form": "unified_report", "period": "quarter"},
                        {"tariff": "sti-unified-declaration-year", "count": 2},
                    ]
                }
            ]
        },
    )

    items: list[QuoteItemIn] = Field(min_length=1, max_length=tariffs.MAX_ITEMS)


class QuoteLine(BaseModel):
    tariff: Tariff
    count: int = Field(examples=[1])
    month: str = Field(description=f"Cost per month. {AMOUNT_DESCRIPTION}", examples=["150.00"])
    quarter: str = Field(description="Cost per quarter.", examples=["450.00"])
    year: str = Field(description="Cost per year.", examples=["1800.00"])


class Quote(BaseModel):
    """Costs of the reports asked for: month = monthly reports; quarter = 3 × monthly +
    quarterly; year = 12 × monthly + 4 × quarterly + yearly."""

    lines: list[QuoteLine]
    month: str = Field(description=AMOUNT_DESCRIPTION, examples=["150.00"])
    quarter: str = Field(description=AMOUNT_DESCRIPTION, examples=["650.00"])
    year: str = Field(description=AMOUNT_DESCRIPTION, examples=["3200.00"])


def tariff_out(tariff: tariffs.Tariff) -> Tariff:
    return Tariff(
        code=tariff.code,
        state_body=tariff.state_body,
        form=tariff.form,
        period=tariff.period,
        name=tariff.name,
        price=format_amount(tariff.price),
        active=tariff.active,
    )


@router.get(
    "",
    summary="List tariffs",
    description="Report prices by state body, form and period. Needs a key with `read` or "
    "`charges`.",
    responses=responses(*AUTH, "invalid_request"),
)
def list_tariffs(
    caller: TariffReader,
    active_only: Annotated[
        bool, Query(description="Only tariffs on offer (skip disabled ones).")
    ] = False,
) -> TariffList:
    with transaction(caller.runtime) as conn:
        found = tariffs.list_tariffs(conn, active_only=active_only)
    return TariffList(items=[tariff_out(t) for t in found])


def _reference(index: int, item: QuoteItemIn) -> tariffs.TariffRef:
    """The tariff an item names: exactly a code, or all of state body, form and period."""
    by_report = (item.state_body, item.form, item.period)
    if item.tariff is not None and all(part is None for part in by_report):
        return item.tariff
    if item.tariff is None and item.state_body and item.form and item.period:
        return (item.state_body, item.form, item.period)
    raise bad_input(
        (f"items.{index}", "укажите либо tariff, либо state_body, form и period вместе")
    )


@router.post(
    "/quote",
    summary="Quote the cost of a set of reports",
    description="What the reports cost per month, per quarter and per year at the current "
    "prices of active tariffs: month = monthly reports; quarter = 3 × monthly + quarterly; "
    "year = 12 × monthly + 4 × quarterly + yearly. An unknown or disabled tariff is a 422 "
    "naming the item. Changes nothing. Needs a key with `read` or `charges`.",
    responses=responses(*AUTH, "invalid_request"),
)
def quote(body: QuoteIn, caller: TariffReader) -> Quote:
    items = [(_reference(i, item), item.count) for i, item in enumerate(body.items)]
    try:
        with transaction(caller.runtime) as conn:
            result = tariffs.quote(conn, items)
    except tariffs.QuoteError as error:
        field = f"items.{error.index}"
        if error.index < len(items) and isinstance(items[error.index][0], str):
            field += ".tariff"
        raise bad_input((field, str(error))) from None
    return Quote(
        lines=[
            QuoteLine(
                tariff=tariff_out(line.tariff),
                count=line.count,
                month=format_amount(line.month),
                quarter=format_amount(line.quarter),
                year=format_amount(line.year),
            )
            for line in result.lines
        ],
        month=format_amount(result.month),
        quarter=format_amount(result.quarter),
        year=format_amount(result.year),
    )
