"""The ledger: balances of any account (system, agent clearing, customer) and verification."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AUTH,
    Admin,
    Cursor,
    Limit,
    OperatorRoute,
    Page,
    Reader,
    cursor_of,
    transaction,
)
from tolom.httpkit.ids import next_cursor
from tolom.httpkit.problems import ProblemError, responses
from tolom.ledger import statements
from tolom.ledger.verify import verify_ledger
from tolom.money import format_amount

router = APIRouter(tags=["ledger"], route_class=OperatorRoute)

AccountKind = Literal["customer", "agent_clearing", "revenue", "cash_desk", "bank"]


class Account(BaseModel):
    """A ledger account and its balance: credits minus debits."""

    code: str = Field(
        description="customer:INN, agent:CODE:clearing, revenue:eds, cash_desk, bank",
        examples=["agent:optima:clearing"],
    )
    kind: AccountKind = Field(examples=["agent_clearing"])
    name: str = Field(examples=["Расчёты с агентом Оптима Банк"])
    balance: str = Field(
        description=AMOUNT_DESCRIPTION + " A customer's is what we owe them (>= 0); an "
        "agent's clearing account is what the agent collected for us (<= 0).",
        examples=["-15000.00"],
    )
    may_go_negative: bool = Field(examples=[True])


class AccountPage(Page):
    items: list[Account]


class Discrepancy(BaseModel):
    kind: str = Field(examples=["balance_mismatch"])
    subject: str = Field(examples=["customer:01904202310427"])
    detail: str = Field(examples=["stored 50000, postings sum to 40000"])


class Verification(BaseModel):
    """The ledger recomputed from its postings: `ok` when nothing is wrong."""

    ok: bool = Field(examples=[True])
    discrepancies: list[Discrepancy] = Field(examples=[[]])


def _out(account: statements.AccountBalance) -> Account:
    return Account(
        code=account.code,
        kind=account.kind,  # one of AccountKind: the CHECK on accounts.kind
        name=account.name,
        balance=format_amount(account.balance),
        may_go_negative=account.may_go_negative,
    )


@router.get(
    "/accounts",
    summary="List ledger accounts with their balances",
    description="In the order they were opened, optionally of one kind. Pages: pass "
    "`next_cursor` back as `cursor` until it is null.",
    responses=responses(*AUTH, "invalid_request"),
)
def list_accounts(
    caller: Reader,
    kind: Annotated[AccountKind | None, Query(description="Only accounts of this kind.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AccountPage:
    after_id = cursor_of(cursor)
    with transaction(caller.runtime) as conn:
        found = statements.list_accounts(conn, kind=kind, after_id=after_id, limit=limit + 1)
    shown, cursor_out = next_cursor([a.id for a in found], limit)
    return AccountPage(items=[_out(a) for a in found[:shown]], next_cursor=cursor_out)


@router.get(
    "/accounts/{code}",
    summary="One ledger account with its balance",
    responses=responses(*AUTH, "invalid_request", "account_code_not_found"),
)
def get_account(code: str, caller: Reader) -> Account:
    with transaction(caller.runtime) as conn:
        found = statements.account_by_code(conn, code)
    if found is None:
        raise ProblemError("account_code_not_found", f"Счёта учёта {code!r} нет")
    return _out(found)


@router.get(
    "/ledger/verify",
    summary="Verify the ledger",
    description="Recomputes every balance from the postings and checks that every accepted "
    "payment has exactly its amount posted. Needs an `admin` key; reads the whole ledger.",
    responses=responses(*AUTH),
)
def verify(caller: Admin) -> Verification:
    with transaction(caller.runtime) as conn:
        found = verify_ledger(conn)
    return Verification(
        ok=not found,
        discrepancies=[Discrepancy(kind=d.kind, subject=d.subject, detail=d.detail) for d in found],
    )
