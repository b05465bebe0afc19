"""Customers: organisations and sole proprietors identified by INN, each with a balance."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tolom import audit
from tolom.db.schema import (
    account_balances,
    customers,
)
from tolom.formatting import ZONE
from tolom.identifiers import is_inn
from tolom.ledger import statements
from tolom.ledger.accounts import create_account
from tolom.texts import N_, Refusal

LEGAL_FORMS = ("ОсОО", "ОАО", "ЗАО", "ИП", "ОО", "ОФ", "ГП", "МП", "Учреждение", "КХ", "Филиал")
LANGUAGES = ("ru", "ky")  # of notifications: Russian, Kyrgyz
DEFAULT_LANGUAGE = "ru"
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit; also the column's width
MAX_NAME_LENGTH = 300
STATUSES = ("active", "blocked")
STATEMENT_ZONE = ZONE  # a statement's days are days in Asia/Bishkek
MAX_STATEMENT_DAYS = 366


class CustomerError(Refusal):
    """A customer operation that cannot be done, worded by a catalogue key.

    The text is "field: text" (`str()` in Russian: the API and the CLI show it); `code`
    names the refusal for adapters that say it in other words (the back-office pages).
    """

    def __init__(self, key: str, /, *, code: str = "", **values: Any) -> None:
        super().__init__(key, **values)
        self.code = code


class CustomerNotFound(CustomerError):
    """No customer has this INN."""


class CustomerExists(CustomerError):
    """A customer with this INN is already registered."""


class RegisteredConcurrently(CustomerExists):
    """The INN was registered by a concurrent transaction a moment ago (the database's
    unique key refused this one). The caller's transaction is spoilt: an import stops at
    once instead of going on with the next row."""


class ContactsError(CustomerError):
    """Contacts that cannot be stored: every bad field with its refusal, in field order.

    `errors` holds (field, Russian text without the "field: " prefix), as the API shows
    them; `refusals` the refusals themselves, for an adapter that says them in another
    language. `key` and `values` are those of the first refusal; `said` joins them all.
    """

    def __init__(self, refusals: list[tuple[str, CustomerError]]) -> None:
        first = refusals[0][1]
        super().__init__(first.key, code="contacts", **first.values)
        self.args = ("; ".join(str(refusal) for _, refusal in refusals),)
        self.refusals = refusals
        self.errors = [(field, _unprefixed(str(refusal))) for field, refusal in refusals]

    def __str__(self) -> str:
        return str(self.args[0])

    def said(self, language: str | None) -> str:
        return "; ".join(refusal.said(language) for _, refusal in self.refusals)


def _unprefixed(message: str) -> str:
    """A "field: text" message without its field."""
    return message.partition(": ")[2]


class Keep(Enum):
    """The type of `KEEP`: leave this contact as it is (None clears it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer as operators see it."""

    id: int
    inn: str
    name: str
    legal_form: str
    status: str
    account_id: int
    email: str | None = None
    phone: str | None = None
    language: str = DEFAULT_LANGUAGE

    def contacts(self) -> dict[str, str | None]:
        """The contacts as the audit log and the adapters show them."""
        return {"email": self.email, "phone": self.phone, "language": self.language}


def from_row(row: Any) -> Customer:
    return Customer(
        id=row.id,
        inn=row.inn,
        name=row.name,
        legal_form=row.legal_form,
        status=row.status,
        account_id=row.account_id,
        email=row.email,
        phone=row.phone,
        language=row.language,
    )


def validate(inn: str, name: str, legal_form: str) -> None:
    """Raise CustomerError naming the first bad field (`code`: inn, name_empty,
    name_too_long, name_nul, legal_form)."""
    if not is_inn(inn):
        raise CustomerError(N_("customer.error.inn"), code="inn", inn=repr(inn))
    if not name.strip():
        raise CustomerError(N_("customer.error.name_empty"), code="name_empty")
    if len(name) > MAX_NAME_LENGTH:
        raise CustomerError(
            N_("customer.error.name_too_long"), code="name_too_long", max=MAX_NAME_LENGTH
        )
    if "\x00" in name:
        raise CustomerError(N_("customer.error.name_nul"), code="name_nul")
    if legal_form not in LEGAL_FORMS:
        raise CustomerError(
            N_("customer.error.legal_form"),
            code="legal_form",
            form=repr(legal_form),
            allowed=", ".join(LEGAL_FORMS),
        )


# --- contacts: the one place their rules live -------------------------------------------

# An address we can put in a To header and every SMTP server takes: ASCII, dot-atom local
# part, a domain of LDH labels ending in a letters-only (or punycode) TLD. Quoted local
# parts, IP literals and internationalised addresses (SMTPUTF8) are refused on purpose.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+{_TLD}", re.ASCII)
# What people put between the digits of a phone number.
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def _shown(value: str) -> str:
    """A refused value as messages quote it: not the whole of a very long one."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def normalise_email(text: str | None) -> str | None:
    """An e-mail address as stored (domain in lower case); blank or None: no address."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    if len(value) > MAX_EMAIL_LENGTH:
        raise CustomerError(N_("customer.error.email_too_long"), max=MAX_EMAIL_LENGTH)
    if not _EMAIL.fullmatch(value) or len(value.rpartition("@")[0]) > 64:
        raise CustomerError(N_("customer.error.email"), value=_shown(value))
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalise_phone(text: str | None) -> str | None:
    """A Kyrgyz phone number in E.164 (+996 and nine digits); blank or None: no phone.

    Accepted as people write them: "+996 555 123456", "996555123456", "0555 123 456",
    with spaces, hyphens, dots or parentheses between the digits.
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    digits = _PHONE_SEPARATORS.sub("", value)
    national: str | None = None
    if digits.startswith("+996"):
        national = digits[4:]
    elif digits.startswith("996") and len(digits) == 12:
        national = digits[3:]
    elif digits.startswith("0") and len(digits) == 10:
        national = digits[1:]
    if (
        national is None
        or len(national) != 9
        or not (national.isascii() and national.isdigit())
        or national[0] == "0"
    ):
        raise CustomerError(N_("customer.error.phone"), value=_shown(value))
    return f"+996{national}"


def normalise_language(text: str | None) -> str:
    """The language of notifications: ru (Russian) or ky (Kyrgyz)."""
    value = (text or "").strip().lower()
    if value not in LANGUAGES:
        if not (text or "").strip():
            raise CustomerError(N_("customer.error.language_empty"))
        raise CustomerError(N_("customer.error.language"), value=_shown(str(text)))
    return value


ContactField = Literal["email", "phone", "language"]
_NORMALISERS: dict[ContactField, Any] = {
    "email": normalise_email,
    "phone": normalise_phone,
    "language": normalise_language,
}


def normalise_contacts(
    *,
    email: str | Keep | None = KEEP,
    phone: str | Keep | None = KEEP,
    language: str | Keep | None = KEEP,
) -> dict[ContactField, str | None]:
    """The given contacts (not KEEP) normalised; raises ContactsError naming every bad field.

    None or a blank text clears an e-mail or a phone; the language cannot be cleared.
    """
    given: dict[ContactField, str | Keep | None] = {
        "email": email,
        "phone": phone,
        "language": language,
    }
    found: dict[ContactField, str | None] = {}
    errors: list[tuple[str, CustomerError]] = []
    for field, value in given.items():
        if isinstance(value, Keep):
            continue
        try:
            found[field] = _NORMALISERS[field](value)
        except CustomerError as error:
            errors.append((field, error))
    if errors:
        raise ContactsError(errors)
    return found


def add(
    conn: Connection,
    *,
    inn: str,
    name: str,
    legal_form: str,
    email: str | None = None,
    phone: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> Customer:
    """Register a customer and open their balance account."""
    validate(inn, name, legal_form)
    contacts = normalise_contacts(email=email, phone=phone, language=language)
    if get(conn, inn) is not None:
        raise CustomerExists(N_("customer.error.exists"), code="exists", inn=inn)
    try:
        account = create_account(
            conn, code=f"customer:{inn}", kind="customer", name=name.strip(), may_go_negative=False
        )
        customer_id = conn.execute(
            insert(customers)
            .values(
                inn=inn,
                name=name.strip(),
                legal_form=legal_form,
                account_id=account.id,
                email=contacts["email"],
                phone=contacts["phone"],
                language=contacts["language"],
            )
            .returning(customers.c.id)
        ).scalar_one()
    except IntegrityError as error:  # registered by a concurrent transaction a moment ago
        raise RegisteredConcurrently(N_("customer.error.exists"), code="exists", inn=inn) from error
    return Customer(
        id=customer_id,
        inn=inn,
        name=name.strip(),
        legal_form=legal_form,
        status="active",
        account_id=account.id,
        email=contacts["email"],
        phone=contacts["phone"],
        language=contacts["language"] or DEFAULT_LANGUAGE,
    )


def set_contacts(
    conn: Connection,
    inn: str,
    *,
    email: str | Keep | None = KEEP,
    phone: str | Keep | None = KEEP,
    language: str | Keep | None = KEEP,
) -> tuple[Customer, Customer]:
    """Change a customer's contacts; returns the customer (before, after).

    Only the contacts given change; None clears an e-mail or a phone. The row is locked
    so that `before` is what this change replaced, even under concurrent changes.
    """
    values = normalise_contacts(email=email, phone=phone, language=language)
    row = conn.execute(select(customers).where(customers.c.inn == inn).with_for_update()).first()
    if row is None:
        raise CustomerNotFound(N_("customer.error.not_found"), code="not_found", inn=inn)
    before = from_row(row)
    after = replace(
        before,
        email=values.get("email", before.email),
        phone=values.get("phone", before.phone),
        language=values.get("language") or before.language,
    )
    if after != before:
        conn.execute(
            update(customers)
            .where(customers.c.id == before.id)
            .values(email=after.email, phone=after.phone, language=after.language)
        )
    return before, after


def contact_changes(
    before: Customer, after: Customer
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The contacts that differ, before and after: what the audit log records."""
    old, new = before.contacts(), after.contacts()
    changed = [field for field in old if old[field] != new[field]]
    return {f: old[f] for f in changed}, {f: new[f] for f in changed}


def get(conn: Connection, inn: str) -> Customer | None:
    """The customer with this INN, if any."""
    row = conn.execute(select(customers).where(customers.c.inn == inn)).first()
    return None if row is None else from_row(row)


def search(conn: Connection, text: str, limit: int = 50) -> list[Customer]:
    """Customers whose INN starts with, or whose name contains, `text`."""
    rows = conn.execute(
        select(customers)
        .where(
            or_(
                customers.c.inn.startswith(text, autoescape=True),
                customers.c.name.icontains(text, autoescape=True),
            )
        )
        .order_by(customers.c.name)
        .limit(limit)
    )
    return [from_row(r) for r in rows]


def set_status(conn: Connection, inn: str, status: str) -> Customer:
    """Block or unblock a customer: a blocked one cannot be paid for (result 79)."""
    if status not in STATUSES:
        raise CustomerError(N_("customer.error.status"), code="status", status=repr(status))
    result = conn.execute(update(customers).where(customers.c.inn == inn).values(status=status))
    if result.rowcount != 1:
        raise CustomerNotFound(N_("customer.error.not_found"), code="not_found", inn=inn)
    customer = get(conn, inn)
    assert customer is not None
    return customer


def balance(conn: Connection, customer: Customer) -> int:
    """The customer's balance in tyiyn."""
    return int(
        conn.execute(
            select(account_balances.c.balance).where(
                account_balances.c.account_id == customer.account_id
            )
        ).scalar_one()
    )


def count(conn: Connection) -> int:
    """How many customers there are."""
    return int(conn.execute(select(func.count()).select_from(customers)).scalar_one())


# --- audited changes: what the API and the back-office pages both call -----------------


def snapshot(customer: Customer) -> dict[str, Any]:
    """The customer as the audit log records a registration (`customer.create`)."""
    return {
        "inn": customer.inn,
        "name": customer.name,
        "legal_form": customer.legal_form,
        "status": customer.status,
        **customer.contacts(),
    }


def create_audited(
    conn: Connection,
    *,
    inn: str,
    name: str,
    legal_form: str,
    email: str | None = None,
    phone: str | None = None,
    language: str = DEFAULT_LANGUAGE,
    actor: str,
    address: str | None = None,
) -> Customer:
    """Register a customer (zero balance) and write `customer.create` in the same
    transaction.

    Refusals, in this order: CustomerError for the first bad one of INN, name and legal
    form; ContactsError naming every bad contact; CustomerExists for a registered INN
    (RegisteredConcurrently when a concurrent transaction registered it a moment ago).
    """
    customer = add(
        conn,
        inn=inn,
        name=name,
        legal_form=legal_form,
        email=email,
        phone=phone,
        language=language,
    )
    audit.record(
        conn,
        actor=actor,
        action="customer.create",
        object_type="customer",
        object_id=customer.inn,
        after=snapshot(customer),
        address=address,
    )
    return customer


def set_contacts_audited(
    conn: Connection,
    inn: str,
    *,
    email: str | Keep | None = KEEP,
    phone: str | Keep | None = KEEP,
    language: str | Keep | None = KEEP,
    actor: str,
    address: str | None = None,
) -> tuple[Customer, Customer]:
    """`set_contacts`, and a `customer.contacts` audit line with the contacts that changed
    (before and after); a change that changes nothing writes no line.

    Raises ContactsError (every bad field) or CustomerNotFound."""
    before, after = set_contacts(conn, inn, email=email, phone=phone, language=language)
    old, new = contact_changes(before, after)
    if new:
        audit.record(
            conn,
            actor=actor,
            action="customer.contacts",
            object_type="customer",
            object_id=inn,
            before=old,
            after=new,
            address=address,
        )
    return before, after


def set_status_audited(
    conn: Connection, inn: str, status: str, *, actor: str, address: str | None = None
) -> tuple[Customer, Customer]:
    """Block (`blocked`) or unblock (`active`) a customer, audited as `customer.block` or
    `customer.unblock` with the status before and after; returns (before, after).

    The row is locked first, so that of two concurrent requests only one changes the status
    and writes the audit line; asking for the status the customer already has changes
    nothing and writes nothing. Raises CustomerNotFound.
    """
    if status not in STATUSES:
        raise CustomerError(N_("customer.error.status"), code="status", status=repr(status))
    row = conn.execute(select(customers).where(customers.c.inn == inn).with_for_update()).first()
    if row is None:
        raise CustomerNotFound(N_("customer.error.not_found"), code="not_found", inn=inn)
    before = from_row(row)
    if before.status == status:
        return before, before
    after = set_status(conn, inn, status)
    audit.record(
        conn,
        actor=actor,
        action="customer.block" if status == "blocked" else "customer.unblock",
        object_type="customer",
        object_id=inn,
        before={"status": before.status},
        after={"status": after.status},
        address=address,
    )
    return before, after


# --- statements -------------------------------------------------------------------------


def statement_period(first: date | None, last: date | None, *, today: date) -> tuple[date, date]:
    """The days a statement covers: `last` defaults to today, `first` to the first day of
    `last`'s month. Refused (CustomerError, `code` period_order or period_too_long) when
    `first` comes after `last` or the period is longer than MAX_STATEMENT_DAYS."""
    last = last or today
    first = first or last.replace(day=1)
    if first > last:
        raise CustomerError(N_("customer.error.statement_order"), code="period_order")
    if (last - first).days >= MAX_STATEMENT_DAYS:
        raise CustomerError(
            N_("customer.error.statement_too_long"),
            code="period_too_long",
            days=MAX_STATEMENT_DAYS,
        )
    return first, last


def statement(
    conn: Connection, customer: Customer, first: date, last: date, *, limit: int | None = None
) -> statements.Statement:
    """The customer's balance over the days first–last (inclusive, in Asia/Bishkek): the
    opening balance, each posting with the running balance, the closing balance. With
    `limit`, at most that many lines (the totals and the closing balance still cover the
    whole period; `Statement.complete` says whether every line is there)."""
    start = datetime.combine(first, time(), STATEMENT_ZONE)
    end = datetime.combine(last + timedelta(days=1), time(), STATEMENT_ZONE)
    return statements.statement(conn, customer.account_id, start, end, limit=limit)


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A bad line of an import file: its number (1 = the header) and what is wrong."""

    line: int
    refusal: CustomerError

    @property
    def message(self) -> str:
        """What is wrong, in Russian (the CLI and the API show it)."""
        return str(self.refusal)

    def said(self, language: str | None) -> str:
        """What is wrong, in `language`."""
        return self.refusal.said(language)


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    inn: str
    name: str
    legal_form: str
    email: str | None = None
    phone: str | None = None
    language: str = DEFAULT_LANGUAGE


def read_import_file(path: Path) -> tuple[list[ImportRow], list[ImportProblem]]:
    """Parse a customers CSV (header: inn,name[,legal_form][,email][,phone][,language]);
    UTF-8, optional BOM. Contacts are normalised as `set_contacts` does; empty: none.

    Returns the good rows and the problems; duplicates within the file are problems too.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        refusal = CustomerError(N_("customer.error.import_encoding"), byte=error.start)
        return [], [ImportProblem(0, refusal)]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        refusal = CustomerError(N_("customer.error.import_header"), error=str(error))
        return [], [ImportProblem(1, refusal)]
    missing = {"inn", "name"} - set(header)
    if missing:
        refusal = CustomerError(
            N_("customer.error.import_columns"), columns=", ".join(sorted(missing))
        )
        return [], [ImportProblem(1, refusal)]
    rows: list[ImportRow] = []
    problems: list[ImportProblem] = []
    seen: dict[str, int] = {}
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as error:  # e.g. a field over the csv module's size limit
            refusal = CustomerError(N_("customer.error.import_line"), error=str(error))
            problems.append(ImportProblem(reader.line_num + 1, refusal))
            break
        number = reader.line_num  # the file's line, blank lines included
        record = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            problems.append(ImportProblem(number, CustomerError(N_("customer.error.import_extra"))))
            continue
        try:
            validate(record["inn"], record["name"], record.get("legal_form") or "ОсОО")
            contacts = normalise_contacts(
                email=record.get("email"),
                phone=record.get("phone"),
                language=record.get("language") or DEFAULT_LANGUAGE,
            )
        except CustomerError as error:
            problems.append(ImportProblem(number, error))
            continue
        row = ImportRow(
            number,
            record["inn"],
            record["name"],
            record.get("legal_form") or "ОсОО",
            email=contacts["email"],
            phone=contacts["phone"],
            language=contacts["language"] or DEFAULT_LANGUAGE,
        )
        if row.inn in seen:
            refusal = CustomerError(
                N_("customer.error.import_repeated"), inn=row.inn, line=seen[row.inn]
            )
            problems.append(ImportProblem(number, refusal))
            continue
        seen[row.inn] = number
        rows.append(row)
    return rows, problems


def import_rows(conn: Connection, rows: Iterable[ImportRow]) -> tuple[int, list[ImportProblem]]:
    """Add the rows whose INN is new; returns how many were added and the rows refused."""
    added, problems = 0, []
    for row in rows:
        try:
            add(
                conn,
                inn=row.inn,
                name=row.name,
                legal_form=row.legal_form,
                email=row.email,
                phone=row.phone,
                language=row.language,
            )
        except RegisteredConcurrently:
            raise  # the transaction is spoilt: nothing more can be imported in it
        except CustomerError as error:  # the INN is already registered
            problems.append(ImportProblem(row.line, error))
            continue
        added += 1
    return added, problems


def import_rows_audited(
    conn: Connection, rows: list[ImportRow], *, actor: str, address: str | None = None
) -> tuple[int, list[ImportProblem]]:
    """`import_rows`, and a `customer.import` line for each customer added, in the same
    transaction (a caller that refuses the import because of a problem rolls both back).
    Raises RegisteredConcurrently when an INN was registered concurrently."""
    added, problems = import_rows(conn, rows)
    refused = {p.line for p in problems}
    for row in rows:
        if row.line in refused:
            continue
        audit.record(
            conn,
            actor=actor,
            action="customer.import",
            object_type="customer",
            object_id=row.inn,
            after={
                "inn": row.inn,
                "name": row.name.strip(),
                "legal_form": row.legal_form,
                "status": "active",
                "email": row.email,
                "phone": row.phone,
                "language": row.language,
            },
            address=address,
        )
    return added, problems
