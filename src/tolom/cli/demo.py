"""`tolom demo`: fill an empty database with demo data and print how to try it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from tolom.agents import service as agents
from tolom.cli.common import JsonOption, emit, fail, t, transaction
from tolom.demo import DEMO_WEBHOOK_PORT, fill_demo, has_data
from tolom.formatting import som
from tolom.money import format_amount
from tolom.settings import get_settings
from tolom.timestamps import HOME_ZONE


def demo(
    host: Annotated[str, typer.Option(help="Host to show in the curl examples.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to show in the curl examples.")] = 8000,
    webhook_port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="Port of the demo's webhook endpoint on 127.0.0.1, where `tolom webhook "
            "listen demo-inbox` receives events; change it when 8900 is taken.",
        ),
    ] = DEMO_WEBHOOK_PORT,
    if_empty: Annotated[
        bool, typer.Option(help="Do nothing (exit 0) when the database already has data.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Fill an empty database with demo customers, invoices and agents; print how to call them."""
    with transaction() as conn:
        if if_empty and has_data(conn):
            typer.echo(t("cli.demo.has_data"))
            return
        try:
            result = fill_demo(
                conn,
                validity_days=get_settings().invoice_validity_days,
                webhook_port=webhook_port,
            )
        except ValueError as error:
            fail(str(error), as_json)
    base = f"http://{host}:{port}/gateway/osmp"
    agent = result.agents[0]
    customer, invoice = result.customers[0], result.invoices[0]
    stamp = datetime.now(HOME_ZONE).strftime("%Y%m%d%H%M%S")  # agent-local time
    curls = [
        f"curl -u {agent.code}:{agent.secret} '{base}/sochi?command=check&txn_id=1001&account={customer.inn}&sum=0.00'",
        f"curl -u {agent.code}:{agent.secret} '{base}/sochi?command=pay&txn_id=1001&txn_date={stamp}&account={customer.inn}&sum=500.00'",
        f"curl -u {agent.code}:{agent.secret} '{base}/eds?command=check&txn_id=1002&account={invoice.number}&sum=0.00'",
        f"curl -u {agent.code}:{agent.secret} '{base}/eds?command=pay&txn_id=1002&txn_date={stamp}&account={invoice.number}&sum={format_amount(invoice.total)}'",
    ]
    signing_key = agents.signing_key_for(agent.secret)
    rest_env = (
        f"export TOLOM_URL=http://{host}:{port} TOLOM_AGENT={agent.code} "
        f"TOLOM_SIGNING_KEY={signing_key}"
    )
    cancel_reason = t("cli.demo.cancel_reason")
    rest = [
        rest_env,
        f"python3 docs/examples/tolom_rest_client.py check sochi {customer.inn}",
        f"python3 docs/examples/tolom_rest_client.py pay sochi {customer.inn} 250.00 2001",
        "python3 docs/examples/tolom_rest_client.py status 2001",
        f"python3 docs/examples/tolom_rest_client.py cancel 2001 '{cancel_reason}'",
    ]
    api = [
        f"curl -s -H 'Authorization: Bearer {result.api_key}' http://{host}:{port}/api/v1/payments"
    ]
    data = {
        "agents": [
            {
                "code": a.code,
                "name": a.name,
                "secret": a.secret,
                "signing_key": agents.signing_key_for(a.secret),
            }
            for a in result.agents
        ],
        "api_key": result.api_key,
        "customers": len(result.customers),
        "invoices": [
            {"number": i.number, "total": format_amount(i.total)} for i in result.invoices
        ],
        "curl": curls,
        "rest": rest,
        "api": api,
    }
    lines = [t("cli.demo.created"), "", t("cli.demo.agents")]
    lines += [
        t(
            "cli.demo.agent",
            code=a.code,
            secret=a.secret,
            signing_key=agents.signing_key_for(a.secret),
            name=a.name,
        )
        for a in result.agents
    ]
    lines += ["", t("cli.demo.api_key", token=result.api_key)]
    lines += ["", t("cli.demo.customers", count=len(result.customers))]
    lines += [f"  {i.number}  {som(i.total)}  {i.payer_name}" for i in result.invoices]
    lines += ["", t("cli.demo.try_osmp"), *[f"  {c}" for c in curls]]
    lines += ["", t("cli.demo.try_rest"), *[f"  {c}" for c in rest]]
    lines += ["", t("cli.demo.try_api"), *[f"  {c}" for c in api]]
    waiting_total = sum(c.amount for c in result.waiting)
    webhook_name, webhook_url = result.webhook
    lines += [
        "",
        t(
            "cli.demo.waiting",
            count=len(result.waiting),
            amount=som(waiting_total),
            customer=customer.name,
            inn=customer.inn,
        ),
        t("cli.demo.step_listen", webhook=webhook_name),
        t("cli.demo.step_topup", amount=som(50_000), command=curls[1]),
        t("cli.demo.step_server", url=webhook_url),
        t(
            "cli.demo.step_charges",
            command=f"curl -s -H 'Authorization: Bearer {result.api_key}' "
            f"'http://{host}:{port}/api/v1/charges?inn={customer.inn}'",
        ),
        t("cli.demo.cabinet", url=f"http://{host}:{port}/cabinet", inn=customer.inn),
    ]
    lines += [
        "",
        t("cli.demo.backoffice", url=f"http://{host}:{port}/"),
        *[
            t("cli.demo.user", name=name, password=password)
            for name, password in result.users.items()
        ],
    ]
    data["users"] = result.users
    data["waiting_charges"] = [c.id for c in result.waiting]
    data["webhook"] = {"name": webhook_name, "url": webhook_url}
    emit(data, as_json, "\n".join(lines))
