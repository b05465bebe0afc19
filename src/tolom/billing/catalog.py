"""The product catalogue and the services' limits: data, seeded from `tolom/data/*.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tolom.db.schema import products, services
from tolom.money import parse_amount
from tolom.texts import N_, Refusal


@dataclass(frozen=True, slots=True)
class Service:
    """A service agents take payments for, with its default amount limits in tyiyn."""

    code: str
    name: str
    min_amount: int
    max_amount: int


@dataclass(frozen=True, slots=True)
class Product:
    """A product an invoice can contain; `price` is None until the company sets one."""

    code: str
    name: str
    kind: str
    price: int | None
    active: bool


def _load(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        resources.files("tolom.data").joinpath(name).read_text(encoding="utf-8")
    )
    return data


def seed(conn: Connection) -> None:
    """Insert the shipped services and products that the database does not have yet.

    Existing rows are left alone: once installed, prices and limits belong to the operators.
    """
    known_services = set(conn.execute(select(services.c.code)).scalars())
    for item in _load("services.json"):
        if item["code"] not in known_services:
            conn.execute(
                insert(services).values(
                    code=item["code"],
                    name=item["name"],
                    min_amount=parse_amount(item["min_amount"]),
                    max_amount=parse_amount(item["max_amount"]),
                )
            )
    known_products = set(conn.execute(select(products.c.code)).scalars())
    for item in _load("catalog.json"):
        if item["code"] not in known_products:
            price = item["price"]
            conn.execute(
                insert(products).values(
                    code=item["code"],
                    name=item["name"],
                    kind=item["kind"],
                    price=None if price is None else parse_amount(price),
                )
            )


def list_services(conn: Connection) -> list[Service]:
    """All services, in code order."""
    rows = conn.execute(select(services).order_by(services.c.code))
    return [Service(r.code, r.name, int(r.min_amount), int(r.max_amount)) for r in rows]


def list_products(conn: Connection) -> list[Product]:
    """All products, in code order."""
    rows = conn.execute(select(products).order_by(products.c.code))
    return [Product(r.code, r.name, r.kind, r.price, r.active) for r in rows]


def get_product(conn: Connection, code: str) -> Product | None:
    """One product by its code, if there is one."""
    r = conn.execute(select(products).where(products.c.code == code)).first()
    return None if r is None else Product(r.code, r.name, r.kind, r.price, r.active)


class CatalogError(Refusal):
    """A price or a limit the catalogue cannot take, worded by a catalogue key."""


def set_price(conn: Connection, code: str, price: int) -> bool:
    """Set a product's price; False if there is no such product."""
    if price <= 0:
        raise CatalogError(N_("catalog.error.price"))
    result = conn.execute(update(products).where(products.c.code == code).values(price=price))
    return result.rowcount == 1


def set_service_limits(conn: Connection, code: str, min_amount: int, max_amount: int) -> bool:
    """Set a service's default amount limits; False if there is no such service."""
    if not 0 < min_amount <= max_amount:
        raise CatalogError(N_("catalog.error.limits"))
    result = conn.execute(
        update(services)
        .where(services.c.code == code)
        .values(min_amount=min_amount, max_amount=max_amount)
    )
    return result.rowcount == 1
