"""`tolom catalog` and `tolom service`: products invoices contain, services agents pay into."""

from __future__ import annotations

from typing import Annotated

import typer

from tolom.billing import catalog
from tolom.cli.common import JsonOption, emit, fail, t, transaction
from tolom.cli.common import amount as som_amount
from tolom.money import format_amount

catalog_app = typer.Typer(help="Products that invoices can contain.", no_args_is_help=True)
service_app = typer.Typer(
    help="The services agents pay into and their limits.", no_args_is_help=True
)


@catalog_app.command("list")
def catalog_list(as_json: JsonOption = False) -> None:
    """Products with code, Russian name and price."""
    with transaction() as conn:
        products = catalog.list_products(conn)
    rows = [
        {
            "code": p.code,
            "name": p.name,
            "kind": p.kind,
            "price": None if p.price is None else format_amount(p.price),
        }
        for p in products
    ]
    no_price = t("cli.catalog.no_price")
    human = "\n".join(f"{r['code']:24} {r['price'] or no_price:>14}  {r['name']}" for r in rows)
    emit(rows, as_json, human)


@catalog_app.command("set-price")
def catalog_set_price(
    code: str, price: Annotated[str, typer.Argument(help="Price in som, e.g. 2500.00")]
) -> None:
    """Set a product's price (e.g. the RuToken carrier, whose price is not public)."""
    amount = som_amount(price)
    if amount <= 0:
        fail(t("cli.catalog.price_positive"))
    with transaction() as conn:
        if not catalog.set_price(conn, code, amount):
            fail(t("cli.catalog.no_product", code=repr(code)))
    typer.echo(t("cli.catalog.price_saved"))


@service_app.command("list")
def service_list(as_json: JsonOption = False) -> None:
    """Services with their default amount limits."""
    with transaction() as conn:
        rows = [
            {
                "code": r.code,
                "name": r.name,
                "min": format_amount(r.min_amount),
                "max": format_amount(r.max_amount),
            }
            for r in catalog.list_services(conn)
        ]
    emit(
        rows,
        as_json,
        "\n".join(f"{r['code']:6} {r['min']:>10} … {r['max']:>12}  {r['name']}" for r in rows),
    )


@service_app.command("set-limits")
def service_set_limits(
    code: str,
    min_amount: Annotated[str, typer.Option("--min", help="Smallest amount, som.")],
    max_amount: Annotated[str, typer.Option("--max", help="Largest amount, som.")],
) -> None:
    """Set a service's default limits (agents may have their own, see agent set-limits)."""
    with transaction() as conn:
        try:
            found = catalog.set_service_limits(
                conn, code, som_amount(min_amount), som_amount(max_amount)
            )
        except ValueError as error:
            fail(str(error))
        if not found:
            fail(t("cli.service.not_found", code=repr(code)))
    typer.echo(t("cli.service.saved"))
