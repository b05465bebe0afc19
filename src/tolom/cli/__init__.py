"""The `tolom` command line: an adapter over the same core the gateways use.

One module per command group; this file only assembles them under the root `app`.
"""

from __future__ import annotations

import typer

from tolom.cli import events as events_cli
from tolom.cli.agents import agent_app
from tolom.cli.apikeys import apikey_app
from tolom.cli.archive import archive_app
from tolom.cli.catalog import catalog_app, service_app
from tolom.cli.charges import charge_app
from tolom.cli.customers import customer_app
from tolom.cli.db import db_app
from tolom.cli.demo import demo
from tolom.cli.exports import export_app
from tolom.cli.invoices import invoice_app
from tolom.cli.ledger import ledger_app
from tolom.cli.orders import orders_app
from tolom.cli.payments import payment_app
from tolom.cli.probe import probe
from tolom.cli.reconcile import reconcile_app
from tolom.cli.sandbox import sandbox_app
from tolom.cli.secrets import secrets_app
from tolom.cli.serve import serve
from tolom.cli.simulate import simulate_app
from tolom.cli.tariffs import tariff_app
from tolom.cli.users import user_app

app = typer.Typer(
    help="Tolom: payment acceptance and billing.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.add_typer(db_app, name="db")
app.command("serve")(serve)
app.command("demo")(demo)
app.add_typer(agent_app, name="agent")
app.add_typer(customer_app, name="customer")
app.add_typer(catalog_app, name="catalog")
app.add_typer(service_app, name="service")
app.add_typer(invoice_app, name="invoice")
app.add_typer(ledger_app, name="ledger")
app.add_typer(apikey_app, name="apikey")
app.add_typer(secrets_app, name="secrets")
app.add_typer(events_cli.webhook_app, name="webhook")
app.add_typer(events_cli.events_app, name="events")
app.command("worker")(events_cli.worker)
app.add_typer(tariff_app, name="tariff")
app.add_typer(orders_app, name="order")
app.add_typer(charge_app, name="charge")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(user_app, name="user")
app.add_typer(payment_app, name="payment")
app.add_typer(export_app, name="export")
app.add_typer(archive_app, name="archive")
app.add_typer(sandbox_app, name="sandbox")
app.command("probe")(probe)
app.add_typer(simulate_app, name="simulate")


def main() -> None:
    """Entry point for `python -m tolom`."""
    app(prog_name="tolom")


if __name__ == "__main__":
    main()
