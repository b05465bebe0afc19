"""Customers: register, look up, search, change contacts, block and unblock, import,
statement."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from tolom.api.operator.common import (
    AMOUNT_DESCRIPTION,
    AUTH,
    OperatorRoute,
    Reader,
    UtcTime,
    Writer,
    bad_input,
    core_message,
    date_of,
    date_query,
    transaction,
)
from tolom.api.security import Caller
from tolom.billing import customers
from tolom.db import Connection
from tolom.fields import INN_MESSAGE
from tolom.httpkit.problems import FieldError, ProblemError, responses
from tolom.identifiers import is_inn
from tolom.ledger import statements
from tolom.money import format_amount

router = APIRouter(prefix="/customers", tags=["customers"], route_class=OperatorRoute)

STATEMENT_ZONE = customers.STATEMENT_ZONE
MAX_STATEMENT_DAYS = customers.MAX_STATEMENT_DAYS
MAX_IMPORT_ROWS = 10_000

Inn = Annotated[
    str, Field(description="ИНН: exactly 14 digits.", examples=["01904202310427"], max_length=64)
]
LegalForm = Annotated[
    str,
    Field(
        description=f"One of: {', '.join(customers.LEGAL_FORMS)}.",
        examples=["ОсОО"],
        max_length=32,
    ),
]
Email = Annotated[
    str | None,
    Field(
        description="E-mail for notifications: an ASCII address, stored with the domain in "
        "lower case. null or empty: none.",
        examples=["buh@romashka.kg"],
        max_length=320,
    ),
]
Phone = Annotated[
    str | None,
    Field(
        description="Kyrgyz phone for SMS, written as people do: `+996 555 123 456`, "
        "`996555123456`, `0555 123 456` (spaces, hyphens, dots, parentheses allowed); stored "
        "in E.164, `+996555123456`. null or empty: none.",
        examples=["0555 123 456"],
        max_length=32,
    ),
]
Language = Annotated[
    str,
    Field(
        description="Language of notifications: `ru` (Russian) or `ky` (Kyrgyz).",
        examples=["ky"],
        max_length=8,
        json_schema_extra={"enum": list(customers.LANGUAGES)},
    ),
]


class CustomerIn(BaseModel):
    """A customer to register."""

    model_config = ConfigDict(extra="forbid")

    inn: Inn
    name: str = Field(max_length=300, examples=["ОсОО «Ромашка»"])
    legal_form: LegalForm = "ОсОО"
    email: Email = None
    phone: Phone = None
    language: Language = customers.DEFAULT_LANGUAGE


class ContactsIn(BaseModel):
    """Contacts to change. A field left out stays as it is; `null` (or "") clears an e-mail
    or a phone. The language cannot be cleared."""

    model_config = ConfigDict(extra="forbid")

    email: Email = None
    phone: Phone = None
    language: Annotated[
        str | None,
        Field(
            description="`ru` or `ky`; not null.",
            examples=["ky"],
            max_length=8,
            json_schema_extra={"enum": list(customers.LANGUAGES)},
        ),
    ] = None


CONTACTS_EXAMPLES: dict[str, Any] = {
    "set": {
        "summary": "Set the e-mail, the phone and Kyrgyz notifications",
        "value": {"email": "buh@romashka.kg", "phone": "0555 123 456", "language": "ky"},
    },
    "clear_phone": {"summary": "No more SMS: clear the phone", "value": {"phone": None}},
    "language": {"summary": "Only the language", "value": {"language": "ru"}},
}


class Customer(BaseModel):
    """A customer with their SOCHI balance."""

    inn: str = Field(examples=["01904202310427"])
    name: str = Field(examples=["ОсОО «Ромашка»"])
    legal_form: str = Field(examples=["ОсОО"])
    status: str = Field(description="active | blocked", examples=["active"])
    account: str = Field(description="Ledger account code.", examples=["customer:01904202310427"])
    balance: str = Field(description=AMOUNT_DESCRIPTION, examples=["1500.00"])
    email: str | None = Field(
        description="E-mail for notifications; null: none.", examples=["buh@romashka.kg"]
    )
    phone: str | None = Field(
        description="Phone for SMS in E.164; null: none.", examples=["+996555123456"]
    )
    language: str = Field(
        description="Language of notifications: ru | ky.",
        examples=["ru"],
        json_schema_extra={"enum": list(customers.LANGUAGES)},
    )


class CustomerList(BaseModel):
    items: list[Customer]


class ImportRowIn(BaseModel):
    """One customer of an import."""

    model_config = ConfigDict(extra="forbid")

    inn: Inn
    name: str = Field(max_length=300, examples=["ИП Асанов А."])
    legal_form: LegalForm = "ОсОО"
    email: Email = None
    phone: Phone = None
    language: Language = customers.DEFAULT_LANGUAGE


class ImportResult(BaseModel):
    imported: int = Field(examples=[2])


class StatementLine(BaseModel):
    """One posting of the period, with the balance after it."""

    entry_id: int = Field(examples=[1042])
    at: UtcTime = Field(description="When the entry was written (UTC).")
    kind: str = Field(description="payment | reversal | …", examples=["payment"])
    description: str = Field(examples=["Пополнение баланса СОЧИ, ИНН 01904202310427; …"])
    amount: str = Field(description="Positive: credited; negative: debited.", examples=["500.00"])
    balance: str = Field(description="Balance after this line.", examples=["1500.00"])


class StatementOut(BaseModel):
    """A customer's balance over a period of days in Asia/Bishkek."""

    inn: str = Field(examples=["01904202310427"])
    name: str = Field(examples=["ОсОО «Ромашка»"])
    account: str = Field(examples=["customer:01904202310427"])
    date_from: date
    date_to: date
    timezone: str = Field(examples=["Asia/Bishkek"])
    opening_balance: str = Field(examples=["1000.00"])
    total_credit: str = Field(examples=["500.00"])
    total_debit: str = Field(examples=["0.00"])
    closing_balance: str = Field(examples=["1500.00"])
    lines: list[StatementLine]


def _out(customer: customers.Customer, balance: int) -> Customer:
    return Customer(
        inn=customer.inn,
        name=customer.name,
        legal_form=customer.legal_form,
        status=customer.status,
        account=f"customer:{customer.inn}",
        balance=format_amount(balance),
        email=customer.email,
        phone=customer.phone,
        language=customer.language,
    )


def _contacts_refused(error: customers.ContactsError, prefix: str = "") -> list[FieldError]:
    return [
        FieldError(field=f"{prefix}{field}", message=message) for field, message in error.errors
    ]


def _found(conn: Connection, inn: str) -> customers.Customer:
    if not is_inn(inn):
        raise bad_input(("inn", INN_MESSAGE))
    customer = customers.get(conn, inn)
    if customer is None:
        raise ProblemError("customer_not_found", f"Абонент с ИНН {inn} не найден")
    return customer


@router.post(
    "",
    status_code=201,
    summary="Register a customer",
    description="Registers an organisation or sole proprietor with a zero balance. "
    "Needs a `write` key. E-mail, phone and language of notifications are optional "
    "(`PATCH /customers/{inn}` changes them later). Audited as `customer.create`.",
    responses=responses(*AUTH, "invalid_request", "customer_exists"),
)
def create_customer(body: CustomerIn, caller: Writer) -> Customer:
    exists = ProblemError("customer_exists", f"Абонент с ИНН {body.inn} уже есть")
    try:
        with transaction(caller.runtime) as conn:
            customer = customers.create_audited(
                conn,
                inn=body.inn,
                name=body.name,
                legal_form=body.legal_form,
                email=body.email,
                phone=body.phone,
                language=body.language,
                actor=caller.actor,
                address=caller.address,
            )
    except customers.CustomerExists:
        raise exists from None
    except customers.ContactsError as error:
        raise bad_input(*error.errors) from None
    except customers.CustomerError as error:
        raise bad_input(core_message(error, "inn")) from None
    return _out(customer, 0)


@router.get(
    "",
    summary="Search customers",
    description="Customers whose INN starts with `q` or whose name contains it, by name. "
    "Without `q`, the first customers by name.",
    responses=responses(*AUTH, "invalid_request"),
)
def search_customers(
    caller: Reader,
    q: Annotated[str, Query(max_length=100, description="INN prefix or part of the name.")] = "",
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many (1–500).")] = 50,
) -> CustomerList:
    with transaction(caller.runtime) as conn:
        found = customers.search(conn, q.strip(), limit=limit)
        money = statements.balances(conn, [c.account_id for c in found])
    return CustomerList(items=[_out(c, money.get(c.account_id, 0)) for c in found])


@router.get(
    "/{inn}",
    summary="One customer with their balance",
    responses=responses(*AUTH, "invalid_request", "customer_not_found"),
)
def get_customer(inn: str, caller: Reader) -> Customer:
    with transaction(caller.runtime) as conn:
        customer = _found(conn, inn)
        return _out(customer, customers.balance(conn, customer))


def _given(body: ContactsIn, field: str) -> str | customers.Keep | None:
    """The field's value if the request named it, else KEEP (leave it as it is)."""
    return getattr(body, field) if field in body.model_fields_set else customers.KEEP


@router.patch(
    "/{inn}",
    summary="Change a customer's contacts",
    description="Sets the e-mail, the phone (any Kyrgyz notation; stored as E.164) and the "
    "language of notifications (`ru` or `ky`). Only the fields sent change; `null` clears an "
    "e-mail or a phone, and with it that channel's notifications. Every bad field is named "
    "in the 422 problem's `errors`. Needs a `write` key; a change is audited as "
    "`customer.contacts` with the values before and after, a request that changes nothing "
    "is not.",
    responses=responses(*AUTH, "invalid_request", "customer_not_found"),
)
def update_customer_contacts(
    inn: str,
    body: Annotated[ContactsIn, Body(openapi_examples=CONTACTS_EXAMPLES)],
    caller: Writer,
) -> Customer:
    email, phone, language = (_given(body, f) for f in ("email", "phone", "language"))
    try:
        customers.normalise_contacts(email=email, phone=phone, language=language)
    except customers.ContactsError as error:
        raise bad_input(*error.errors) from None
    with transaction(caller.runtime) as conn:
        _found(conn, inn)
        _before, after = customers.set_contacts_audited(
            conn,
            inn,
            email=email,
            phone=phone,
            language=language,
            actor=caller.actor,
            address=caller.address,
        )
        return _out(after, customers.balance(conn, after))


def _set_status(inn: str, status: str, caller: Caller) -> Customer:
    with transaction(caller.runtime) as conn:
        _found(conn, inn)
        _before, after = customers.set_status_audited(
            conn, inn, status, actor=caller.actor, address=caller.address
        )
        return _out(after, customers.balance(conn, after))


@router.post(
    "/{inn}/block",
    summary="Block a customer",
    description="Agents are then refused payments to this INN (OSMP result 79). Blocking a "
    "blocked customer changes nothing. Audited as `customer.block`.",
    responses=responses(*AUTH, "invalid_request", "customer_not_found"),
)
def block_customer(inn: str, caller: Writer) -> Customer:
    return _set_status(inn, "blocked", caller)


@router.post(
    "/{inn}/unblock",
    summary="Unblock a customer",
    description="Payments to this INN are accepted again. Audited as `customer.unblock`.",
    responses=responses(*AUTH, "invalid_request", "customer_not_found"),
)
def unblock_customer(inn: str, caller: Writer) -> Customer:
    return _set_status(inn, "active", caller)


class _Refused(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("import refused")
        self.errors = errors


@router.post(
    "/import",
    status_code=201,
    summary="Import customers",
    description="A JSON list of up to 10 000 customers, all or nothing: if any row is bad or "
    "its INN is already registered, nothing is imported and the 422 problem's `errors` name "
    "each bad row by its index in the list (`3.inn`, `4.phone`). Contacts are optional, "
    "as in a single registration. Each customer is audited as "
    "`customer.import`.",
    responses=responses(*AUTH, "invalid_request"),
)
def import_customers(
    rows: Annotated[list[ImportRowIn], Body(min_length=1, max_length=MAX_IMPORT_ROWS)],
    caller: Writer,
) -> ImportResult:
    errors: list[FieldError] = []
    good: list[customers.ImportRow] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        try:
            customers.validate(row.inn, row.name, row.legal_form)
        except customers.CustomerError as error:
            field, message = core_message(error, "inn")
            errors.append(FieldError(field=f"{index}.{field}", message=message))
            continue
        try:
            contacts = customers.normalise_contacts(
                email=row.email, phone=row.phone, language=row.language
            )
        except customers.ContactsError as error:
            errors += _contacts_refused(error, f"{index}.")
            continue
        if row.inn in seen:
            errors.append(
                FieldError(
                    field=f"{index}.inn", message=f"ИНН {row.inn} уже был в строке {seen[row.inn]}"
                )
            )
            continue
        seen[row.inn] = index
        good.append(
            customers.ImportRow(
                index,
                row.inn,
                row.name,
                row.legal_form,
                email=contacts["email"],
                phone=contacts["phone"],
                language=contacts["language"] or customers.DEFAULT_LANGUAGE,
            )
        )
    try:
        with transaction(caller.runtime) as conn:
            added, known = customers.import_rows_audited(
                conn, good, actor=caller.actor, address=caller.address
            )
            errors += [
                FieldError(field=f"{p.line}.{field}", message=message)
                for p in known
                for field, message in [core_message(ValueError(p.message), "inn")]
            ]
            if errors:
                raise _Refused(errors)
    except _Refused as refused:
        found = sorted(refused.errors, key=lambda e: int(e.field.partition(".")[0]))
        shown = found[:100]
        raise ProblemError(
            "invalid_request",
            f"Ничего не импортировано: ошибок в строках — {len(found)}"
            + (f" (показаны первые {len(shown)})" if len(shown) < len(found) else ""),
            errors=shown,
        ) from None
    except customers.RegisteredConcurrently:  # an INN registered concurrently: nothing imported
        raise ProblemError(
            "customer_exists", "Ничего не импортировано: ИНН из списка только что добавлен"
        ) from None
    return ImportResult(imported=added)


@router.get(
    "/{inn}/statement",
    summary="A customer's statement over a period",
    description="Every posting to the customer's balance written on the days "
    "`date_from`–`date_to` (inclusive, dates in Asia/Bishkek), with the opening balance, "
    "each line's amount and the running balance, and the closing balance. Defaults: from the "
    "first day of the current month to today. At most 366 days.",
    responses=responses(*AUTH, "invalid_request", "customer_not_found"),
)
def customer_statement(
    inn: str,
    caller: Reader,
    date_from: Annotated[str | None, date_query("First day, YYYY-MM-DD.")] = None,
    date_to: Annotated[str | None, date_query("Last day, YYYY-MM-DD.")] = None,
) -> StatementOut:
    today = datetime.now(STATEMENT_ZONE).date()
    try:
        first, last = customers.statement_period(
            date_of(date_from, "date_from"), date_of(date_to, "date_to"), today=today
        )
    except customers.CustomerError as error:
        raise bad_input(core_message(error, "date_from")) from None
    with transaction(caller.runtime) as conn:
        customer = _found(conn, inn)
        found = customers.statement(conn, customer, first, last)
    return StatementOut(
        inn=customer.inn,
        name=customer.name,
        account=f"customer:{customer.inn}",
        date_from=first,
        date_to=last,
        timezone=STATEMENT_ZONE.key,
        opening_balance=format_amount(found.opening),
        total_credit=format_amount(found.credits),
        total_debit=format_amount(found.debits),
        closing_balance=format_amount(found.closing),
        lines=[
            StatementLine(
                entry_id=line.entry_id,
                at=line.created_at,
                kind=line.entry_kind,
                description=line.description,
                amount=format_amount(line.amount),
                balance=format_amount(line.balance),
            )
            for line in found.lines
        ],
    )
