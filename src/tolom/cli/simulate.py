"""`tolom simulate`: a wallet journey of the seeds, headless (`tolom.simulator.journeys`).

It speaks OSMP over HTTP to a Tolom server (`--base-url`, by default
`TOLOM_PUBLIC_BASE_URL`) as a sandbox agent, prints each screen, request and answer and
the receipt, and exits 1 unless the pay ended in result 0.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime
from typing import Annotated

import typer

from tolom.cli.common import JsonOption, cli_actor, engine, fail, t
from tolom.money import format_amount
from tolom.settings import get_settings
from tolom.simulator import autopay, favourites, journeys
from tolom.texts import N_
from tolom.timestamps import HOME_ZONE

# What `tolom simulate autopay` says of each repeat (`autopay.AutopayRun.outcome`).
_AUTOPAY_SAID = {
    autopay.PAID: N_("cli.simulate.autopay.paid"),
    autopay.REFUSED: N_("cli.simulate.autopay.refused"),
    autopay.RETRY: N_("cli.simulate.autopay.retry"),
    autopay.SKIPPED: N_("cli.simulate.autopay.skipped"),
}

simulate_app = typer.Typer(
    help="Play a wallet journey of the seeds through the OSMP gateway as a sandbox agent.",
    no_args_is_help=True,
)

Agent = Annotated[str, typer.Option("--agent", help="The sandbox agent's code.")]
ServiceOption = Annotated[str, typer.Option("--service", help="sochi or eds.")]
Account = Annotated[str, typer.Option("--account", help="The INN or invoice number.")]
Amount = Annotated[str, typer.Option("--amount", help="The sum in som, e.g. 100.00.")]
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="The Tolom server; default TOLOM_PUBLIC_BASE_URL."),
]
Secret = Annotated[
    str | None,
    typer.Option(
        "--secret",
        envvar="TOLOM_SIMULATE_SECRET",
        help="The sandbox agent's secret, if the server does not keep it (older agents).",
    ),
]


def _run(
    wallet_code: str,
    agent: str,
    service: str,
    account: str,
    amount: str,
    base_url: str | None,
    secret: str | None,
    as_json: bool,
    favourite: bool = False,
) -> None:
    db = engine()
    try:
        try:
            wallet = journeys.wallet(wallet_code)
            service = journeys.service(service)
            sum_ = journeys.amount(amount)
            with db.connect() as conn:
                who = journeys.speaker(
                    conn, agent, base_url or get_settings().own_gateways_url, secret
                )
        except journeys.SimulatorError as error:
            fail(str(error.said(get_settings().language)), as_json)
        journey = asyncio.run(journeys.play(who, wallet, service, account.strip(), sum_))
        if favourite:
            with db.begin() as conn:
                try:
                    favourites.add(
                        conn,
                        wallet_=wallet.code,
                        agent=agent,
                        service_=service,
                        account=account.strip(),
                        amount=sum_,
                        autopay_days=None,
                        today=datetime.now(HOME_ZONE).date(),
                        actor=cli_actor(),
                    )
                except journeys.SimulatorError as error:
                    fail(str(error.said(get_settings().language)), as_json)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(journey.as_dict(), ensure_ascii=False, indent=2))
    else:
        _print(journey)
    if not journey.ok:
        raise typer.Exit(1)


def _print(journey: journeys.Journey) -> None:
    screens = " → ".join(journey.wallet.screens[journey.service])
    typer.echo(f"{journey.wallet.name}: {screens}")
    for number, exchange in enumerate(journey.exchanges, start=1):
        typer.echo("")
        typer.echo(t("cli.simulate.request", number=number, command=exchange.command))
        typer.echo(f"  {exchange.method} {exchange.url}")
        typer.echo(f"  Authorization: {exchange.authorization}")
        if exchange.status is None:
            typer.echo(t("cli.simulate.no_answer", failure=exchange.failure))
            continue
        typer.echo(t("cli.simulate.answer", status=exchange.status))
        for line in exchange.body.strip().splitlines():
            typer.echo(f"  {line}")
    typer.echo("")
    receipt = journey.receipt
    if receipt is None:
        result = journey.last.result
        shown = "—" if result is None else str(result)
        typer.secho(
            t("cli.simulate.failed", result=shown, comment=journey.last.comment),
            fg="red",
            err=True,
        )
        return
    typer.echo(t("cli.simulate.receipt"))
    typer.echo(t("cli.simulate.receipt_payee", payee=receipt.payee, service=receipt.service))
    typer.echo(t("cli.simulate.receipt_account", account=receipt.account, name=receipt.name))
    typer.echo(t("cli.simulate.receipt_sum", sum=receipt.sum))
    typer.echo(f"  txn_id {receipt.txn_id}, prv_txn {receipt.prv_txn}")  # the protocol's names


@simulate_app.command("optima")
def optima(
    agent: Agent,
    service: ServiceOption,
    account: Account,
    amount: Amount,
    base_url: BaseUrl = None,
    secret: Secret = None,
    as_json: JsonOption = False,
) -> None:
    """«Оптима 24»: Платежи → Платежи от дилеров/агентов → Dos Tek Group → … → чек."""
    _run("optima", agent, service, account, amount, base_url, secret, as_json)


@simulate_app.command("megapay")
def megapay(
    agent: Agent,
    service: ServiceOption,
    account: Account,
    amount: Amount,
    base_url: BaseUrl = None,
    secret: Secret = None,
    favourite: Annotated[
        bool, typer.Option("--favourite", help="Also save the payment as a template.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """MegaPay: Оплата → Другие → «СОЧИ» or «Оплата ЭЦП» → … → чек."""
    _run("megapay", agent, service, account, amount, base_url, secret, as_json, favourite)


@simulate_app.command("autopay")
def autopay_(
    today: Annotated[
        str | None,
        typer.Option("--today", help="The Bishkek day to run for, YYYY-MM-DD; default today."),
    ] = None,
    base_url: BaseUrl = None,
    as_json: JsonOption = False,
) -> None:
    """MegaPay «Автоплатеж»: run the due repeats once, as the worker does; exit 1 unless
    each was paid."""
    if today is None:
        day = datetime.now(HOME_ZONE).date()
    else:
        try:
            day = date.fromisoformat(today)
        except ValueError:
            fail(t("cli.recon.bad_date", text=repr(today)), as_json)
    db = engine()
    try:
        runs = autopay.run_due(get_settings(), db, day, actor=cli_actor(), base_url=base_url)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in runs], ensure_ascii=False, indent=2))
    elif not runs:
        typer.echo(t("cli.simulate.autopay.none", day=day.isoformat()))
    for run in runs if not as_json else ():
        typer.echo(
            t(
                _AUTOPAY_SAID[run.outcome],
                favourite=run.favourite_id,
                service=journeys.MEGAPAY.screens[run.service][-1],
                account=run.account,
                amount=format_amount(run.amount),
                due=run.due.isoformat(),
                txn_id=run.txn_id,
                prv_txn=run.prv_txn,
                result="—" if run.result is None else run.result,
                comment=run.comment,
                next_due=run.next_due.isoformat(),
            )
        )
    if any(r.outcome != autopay.PAID for r in runs):
        raise typer.Exit(1)
