"""Customers: organisations and sole proprietors identified by INN, each with a balance."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, func, insert, or_, select, update

from tolom.db.schema import account_balances, customers
from tolom.identifiers import is_inn
from tolom.ledger.accounts import create_account

LEGAL_FORMS = ("ОсОО", "ОАО", "ЗАО", "ИП", "ОО", "ОФ", "ГП", "МП", "Учреждение", "КХ", "Филиал")


class CustomerError(ValueError):
    """A customer operation that cannot be done, with a message for the operator."""


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer as operators see it."""

    id: int
    inn: str
    name: str
    legal_form: str
    status: str
    account_id: int


def validate(inn: str, name: str, legal_form: str) -> None:
    """Raise CustomerError naming the first bad field."""
    if not is_inn(inn):
        raise CustomerError(f"inn: ИНН должен состоять ровно из 14 цифр, получено {inn!r}")
    if not name.strip():
        raise CustomerError("name: наименование не может быть пустым")
    if len(name) > 300:
        raise CustomerError("name: наименование длиннее 300 символов")
    if legal_form not in LEGAL_FORMS:
        raise CustomerError(
            f"legal_form: неизвестная форма {legal_form!r}; допустимы: {', '.join(LEGAL_FORMS)}"
        )


def add(conn: Connection, *, inn: str, name: str, legal_form: str) -> Customer:
    """Register a customer and open their balance account."""
    validate(inn, name, legal_form)
    if get(conn, inn) is not None:
        raise CustomerError(f"inn: клиент с ИНН {inn} уже есть")
    account = create_account(
        conn, code=f"customer:{inn}", kind="customer", name=name.strip(), may_go_negative=False
    )
    customer_id = conn.execute(
        insert(customers)
        .values(inn=inn, name=name.strip(), legal_form=legal_form, account_id=account.id)
        .returning(customers.c.id)
    ).scalar_one()
    return Customer(customer_id, inn, name.strip(), legal_form, "active", account.id)


def get(conn: Connection, inn: str) -> Customer | None:
    """The customer with this INN, if any."""
    row = conn.execute(select(customers).where(customers.c.inn == inn)).first()
    if row is None:
        return None
    return Customer(row.id, row.inn, row.name, row.legal_form, row.status, row.account_id)


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
    return [Customer(r.id, r.inn, r.name, r.legal_form, r.status, r.account_id) for r in rows]


def set_status(conn: Connection, inn: str, status: str) -> Customer:
    """Block or unblock a customer: a blocked one cannot be paid for (result 79)."""
    if status not in ("active", "blocked"):
        raise CustomerError(f"status: {status!r}")
    result = conn.execute(update(customers).where(customers.c.inn == inn).values(status=status))
    if result.rowcount != 1:
        raise CustomerError(f"inn: клиент с ИНН {inn} не найден")
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


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A bad line of an import file: its number (1 = the header) and what is wrong."""

    line: int
    message: str


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    inn: str
    name: str
    legal_form: str


def read_import_file(path: Path) -> tuple[list[ImportRow], list[ImportProblem]]:
    """Parse a customers CSV (header: inn,name[,legal_form]); UTF-8, optional BOM.

    Returns the good rows and the problems; duplicates within the file are problems too.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        return [], [ImportProblem(0, f"файл не в кодировке UTF-8 (байт {error.start})")]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        return [], [ImportProblem(1, f"заголовок не читается как CSV: {error}")]
    missing = {"inn", "name"} - set(header)
    if missing:
        return [], [ImportProblem(1, f"в заголовке нет столбцов: {', '.join(sorted(missing))}")]
    rows: list[ImportRow] = []
    problems: list[ImportProblem] = []
    seen: dict[str, int] = {}
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as error:  # e.g. a field over the csv module's size limit
            problems.append(
                ImportProblem(reader.line_num + 1, f"строка не читается как CSV: {error}")
            )
            break
        number = reader.line_num  # the file's line, blank lines included
        record = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            problems.append(ImportProblem(number, "лишние поля в строке"))
            continue
        row = ImportRow(number, record["inn"], record["name"], record.get("legal_form") or "ОсОО")
        try:
            validate(row.inn, row.name, row.legal_form)
        except CustomerError as error:
            problems.append(ImportProblem(number, str(error)))
            continue
        if row.inn in seen:
            problems.append(
                ImportProblem(number, f"inn: ИНН {row.inn} уже был в строке {seen[row.inn]}")
            )
            continue
        seen[row.inn] = number
        rows.append(row)
    return rows, problems


def import_rows(conn: Connection, rows: Iterable[ImportRow]) -> tuple[int, list[ImportProblem]]:
    """Add the rows whose INN is new; returns how many were added and the rows refused."""
    added, problems = 0, []
    for row in rows:
        try:
            add(conn, inn=row.inn, name=row.name, legal_form=row.legal_form)
        except CustomerError as error:  # the INN is already registered
            problems.append(ImportProblem(row.line, str(error)))
            continue
        added += 1
    return added, problems
