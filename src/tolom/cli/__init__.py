"""The `tolom` command line: an adapter over the same core the gateways use."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from sqlalchemy import Connection, select

from tolom import apikeys, audit, installation, logs, secretbox
from tolom.agents import admin as agent_admin
from tolom.agents import service as agents
from tolom.billing import catalog, customers, invoices
from tolom.cli import common
from tolom.cli import events as events_cli
from tolom.cli.charges import charge_app
from tolom.cli.documents import invoice_pdf
from tolom.cli.exports import export_app
from tolom.cli.listen import listen
from tolom.cli.orders import orders_app
from tolom.cli.payments import payment_app
from tolom.cli.reconcile import reconcile_app
from tolom.cli.secrets import secrets_app
from tolom.cli.tariffs import tariff_app
from tolom.cli.users import user_app
from tolom.db.schema import services
from tolom.ledger.statements import latest_entries
from tolom.ledger.verify import verify_ledger
from tolom.money import format_amount
from tolom.settings import get_settings

app = typer.Typer(
    help="Tolom: payment acceptance and billing.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
agent_app = typer.Typer(help="Payment agents and their credentials.", no_args_is_help=True)
customer_app = typer.Typer(
    help="Customers (organisations and sole proprietors).", no_args_is_help=True
)
catalog_app = typer.Typer(help="Products that invoices can contain.", no_args_is_help=True)
service_app = typer.Typer(
    help="The services agents pay into and their limits.", no_args_is_help=True
)
invoice_app = typer.Typer(help="Invoices for signatures and carriers.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
apikey_app = typer.Typer(
    help="API keys of the operator and service API (/api/v1).", no_args_is_help=True
)
for sub, name in [
    (db_app, "db"),
    (agent_app, "agent"),
    (customer_app, "customer"),
    (catalog_app, "catalog"),
    (service_app, "service"),
    (invoice_app, "invoice"),
    (ledger_app, "ledger"),
    (apikey_app, "apikey"),
    (secrets_app, "secrets"),
]:
    app.add_typer(sub, name=name)

JsonOption = common.JsonOption
_engine = common.engine
_transaction = common.transaction
_fail = common.fail
_emit = common.emit
_amount = common.amount
_cli_actor = common.cli_actor


# --- db -------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema, then add the shipped services, products and accounts."""
    from tolom.db import migrate  # alembic and mako: only for this command

    engine = _engine()
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            installation.prepare(conn)
    finally:
        engine.dispose()
    typer.echo(f"Схема базы данных актуальна ({engine.url.render_as_string(hide_password=True)})")


# --- serve and demo ------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (use several on PostgreSQL).")] = 1,
    timeout_worker_healthcheck: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="With --workers 2 or more: seconds a worker has to answer the supervisor's "
            "ping (sent every 0.5 s) before it is killed and replaced; also how long a "
            "worker restarted by SIGHUP may take to start. Default: uvicorn's.",
        ),
    ] = 5,
    access_log: Annotated[bool, typer.Option(help="Print one line per request.")] = False,
    with_worker: Annotated[
        bool,
        typer.Option(
            help="Also deliver events (webhooks, e-mail, SMS) from inside the server process; "
            "in production run `tolom worker` instead."
        ),
    ] = False,
) -> None:
    """Run the HTTP server (agent gateways, APIs, docs)."""
    import os

    import uvicorn

    if workers > 1 and get_settings().database_url.startswith("sqlite"):
        typer.secho(
            "SQLite: one writer at a time; several workers add little.", fg="yellow", err=True
        )
    if with_worker:
        os.environ["TOLOM_WORKER_IN_SERVER"] = "true"  # read by each server process
        get_settings.cache_clear()
    # Tolom's own log lines (gateway failures, deliveries, console e-mail and SMS) beside
    # uvicorn's, as text or JSON lines (TOLOM_LOG_FORMAT): the same config in every worker.
    settings = get_settings()
    try:  # every worker would fail to start without it: say so once, plainly
        secretbox.for_settings(settings).check()
    except secretbox.SecretKeyError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2) from None
    if not _loopback(host) and not settings.secure_cookies and not settings.allow_insecure_http:
        typer.secho(
            f"Не запускаю на {host}: адрес доступен из сети, а TOLOM_PUBLIC_BASE_URL — не "
            "https://, и вход в бэк-офис шёл бы открытым текстом. Поставьте TLS (nginx) "
            "впереди и задайте TOLOM_PUBLIC_BASE_URL=https://…, или, только для закрытой "
            "тестовой сети, TOLOM_ALLOW_INSECURE_HTTP=true.",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    log_config = logs.config(settings.log_format, settings.log_level)
    uvicorn.run(
        "tolom.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Client addresses are decided by TOLOM_TRUSTED_PROXIES in tolom.gateway.peers,
        # never by uvicorn's own header handling.
        proxy_headers=False,
        access_log=access_log,
        server_header=False,
        timeout_keep_alive=75,
        timeout_worker_healthcheck=timeout_worker_healthcheck,
        log_config=log_config,
    )


def _loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Host to show in the curl examples.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to show in the curl examples.")] = 8000,
    if_empty: Annotated[
        bool, typer.Option(help="Do nothing (exit 0) when the database already has data.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Fill an empty database with demo customers, invoices and agents; print how to call them."""
    from tolom.demo import fill_demo, has_data

    with _transaction() as conn:
        if if_empty and has_data(conn):
            typer.echo(
                "В базе уже есть данные, демо не создаётся. Новый секрет агента: "
                "tolom agent rotate-secret optima"
            )
            return
        try:
            result = fill_demo(conn, validity_days=get_settings().invoice_validity_days)
        except ValueError as error:
            _fail(str(error), as_json)
    base = f"http://{host}:{port}/gateway/osmp"
    agent = result.agents[0]
    customer, invoice = result.customers[0], result.invoices[0]
    stamp = datetime.now(ZoneInfo("Asia/Bishkek")).strftime("%Y%m%d%H%M%S")  # agent-local time
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
    rest = [
        rest_env,
        f"python3 docs/examples/tolom_rest_client.py check sochi {customer.inn}",
        f"python3 docs/examples/tolom_rest_client.py pay sochi {customer.inn} 250.00 2001",
        "python3 docs/examples/tolom_rest_client.py status 2001",
        "python3 docs/examples/tolom_rest_client.py cancel 2001 'Демо: отмена'",
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
    lines = ["Демо-данные созданы.", "", "Агенты (секрет и ключ подписи показываются один раз):"]
    lines += [
        f"  {a.code:8} секрет {a.secret}  ключ подписи {agents.signing_key_for(a.secret)}"
        f"  ({a.name})"
        for a in result.agents
    ]
    lines += ["", f"Ключ API оператора demo-admin (права admin): {result.api_key}"]
    lines += ["", f"Клиентов: {len(result.customers)}; счета на оплату ЭЦП:"]
    lines += [
        f"  {i.number}  {format_amount(i.total)} сом  {i.payer_name}" for i in result.invoices
    ]
    lines += ["", "Попробуйте OSMP (сервер: tolom serve):", *[f"  {c}" for c in curls]]
    lines += ["", "REST API агента (подписанные запросы):", *[f"  {c}" for c in rest]]
    lines += ["", "API оператора (документация: /docs):", *[f"  {c}" for c in api]]
    waiting_total = sum(c.amount for c in result.waiting)
    webhook_name, webhook_url = result.webhook
    lines += [
        "",
        f"Отчёты, ожидающие оплаты: {len(result.waiting)} на {format_amount(waiting_total)} сом "
        f"({customer.name}, ИНН {customer.inn}). Пополнение их отпустит:",
        f"  1) в другом окне примите вебхуки: .venv/bin/tolom webhook listen {webhook_name}",
        f"  2) пополните баланс (вторая команда OSMP выше, 500.00 сом): {curls[1]}",
        "  Сервер (TOLOM_WEBHOOK_ALLOWED_NETWORKS=127.0.0.1/32 tolom serve --with-worker: "
        "scripts/dev run так и запускает) доставит charge.settled и payment.accepted на "
        f"{webhook_url}, а письмо и SMS клиенту появятся в журнале сервера "
        "(TOLOM_EMAIL_BACKEND=console; настоящий SMTP — docs/notifications.md).",
        f"  Списания: curl -s -H 'Authorization: Bearer {result.api_key}' "
        f"'http://{host}:{port}/api/v1/charges?inn={customer.inn}'",
    ]
    lines += [
        "",
        f"Бэк-офис: http://{host}:{port}/ — пользователи (пароль показывается один раз):",
        *[f"  {name:11} пароль {password}" for name, password in result.users.items()],
    ]
    data["users"] = result.users
    data["waiting_charges"] = [c.id for c in result.waiting]
    data["webhook"] = {"name": webhook_name, "url": webhook_url}
    _emit(data, as_json, "\n".join(lines))


# --- agents -------------------------------------------------------------------------


def _agent_json(agent: agents.Agent) -> dict[str, Any]:
    return {
        "code": agent.code,
        "name": agent.name,
        "kind": agent.kind,
        "enabled": agent.enabled,
        "timezone": agent.timezone.key,
        "cancel_window_days": agent.cancel_window_days,
        "allowed_networks": "*" if agent.networks is None else [str(n) for n in agent.networks],
        "services": {
            code: {"min": format_amount(lim.min_amount), "max": format_amount(lim.max_amount)}
            for code, lim in agent.services.items()
        },
    }


@agent_app.command("create")
def agent_create(
    code: Annotated[str, typer.Argument(help="Login of the agent, e.g. optima.")],
    name: Annotated[str, typer.Option(help="Display name, e.g. «Оптима Банк».")],
    allow_ip: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="CIDR the agent calls from; repeat.")
    ] = None,
    allow_any_ip: Annotated[
        bool, typer.Option(help="Accept this agent from any address (tests, demos).")
    ] = False,
    services_: Annotated[
        str, typer.Option("--services", help="Comma-separated services.")
    ] = "sochi,eds",
    timezone: Annotated[str, typer.Option(help="Zone of the agent's txn_date.")] = "Asia/Bishkek",
    as_json: JsonOption = False,
) -> None:
    """Register an agent; prints its generated secret once."""
    networks = ["*"] if allow_any_ip else (allow_ip or [])
    try:
        with _transaction() as conn:
            secret = agent_admin.create(
                conn,
                code=code,
                name=name,
                networks=networks,
                service_codes=[s.strip() for s in services_.split(",") if s.strip()],
                timezone=timezone,
                actor=_cli_actor(),
            )
    except agents.AgentError as error:
        _fail(str(error), as_json)
    _emit_secret(code, secret, as_json, f"Агент {code} создан.")


def _emit_secret(code: str, secret: str, as_json: bool, headline: str) -> None:
    signing_key = agents.signing_key_for(secret)
    _emit(
        {"code": code, "secret": secret, "signing_key": signing_key},
        as_json,
        f"{headline} Сохраните, больше это не будет показано:\n"
        f"  секрет (пароль HTTP Basic для OSMP): {secret}\n"
        f"  ключ подписи (HMAC для REST API):     {signing_key}",
    )


@agent_app.command("list")
def agent_list(
    as_json: JsonOption = False,
    channels: Annotated[
        bool, typer.Option(help="Also list the built-in cash desk and bank channels.")
    ] = False,
) -> None:
    """All agents with their services, limits and allow-lists."""
    with _transaction() as conn:
        found = [a for a in agents.load_all(conn) if channels or a.kind == agents.GATEWAY]
    rows = [_agent_json(a) for a in found]
    human = "\n".join(
        f"{r['code']:12} {'вкл ' if r['enabled'] else 'выкл'} {r['timezone']:14} "
        f"{','.join(r['services'])} {r['allowed_networks']}  {r['name']}"
        for r in rows
    )
    _emit(rows, as_json, human or "Агентов нет.")


def _set_enabled(code: str, enabled: bool) -> None:
    try:
        with _transaction() as conn:
            agent_admin.set_enabled(conn, code, enabled, actor=_cli_actor())
    except agents.AgentError as error:
        _fail(str(error))
    typer.echo(
        f"Агент {code} {'включён' if enabled else 'отключён'} (в силе через ≤ {get_settings().agent_cache_seconds:g} с)"
    )


@agent_app.command("disable")
def agent_disable(code: str) -> None:
    """Refuse the agent's requests (HTTP 403) from now on."""
    _set_enabled(code, False)


@agent_app.command("enable")
def agent_enable(code: str) -> None:
    """Accept the agent's requests again."""
    _set_enabled(code, True)


@agent_app.command("rotate-secret")
def agent_rotate_secret(code: str, as_json: JsonOption = False) -> None:
    """Issue a new secret and signing key; the old ones stop working."""
    try:
        with _transaction() as conn:
            secret = agent_admin.rotate_secret(conn, code, actor=_cli_actor())
    except agents.AgentError as error:
        _fail(str(error), as_json)
    _emit_secret(code, secret, as_json, f"Новый секрет агента {code}.")


@agent_app.command("configure")
def agent_configure(
    code: str,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", help="Replace the allow-list with these CIDRs; repeat."),
    ] = None,
    allow_any_ip: Annotated[bool, typer.Option(help="Accept the agent from any address.")] = False,
    timezone: Annotated[str | None, typer.Option(help="Zone of the agent's txn_date.")] = None,
    cancel_window_days: Annotated[
        int | None,
        typer.Option(
            help="Days after the business day in which the agent may cancel; 0: same day."
        ),
    ] = None,
) -> None:
    """Change an agent's allow-list, time zone or cancel window."""
    networks = ["*"] if allow_any_ip else allow_ip
    try:
        with _transaction() as conn:
            agent_admin.configure(
                conn,
                code,
                networks=networks,
                timezone=timezone,
                cancel_window_days=cancel_window_days,
                actor=_cli_actor(),
            )
    except agents.AgentError as error:
        _fail(str(error))
    typer.echo(f"Сохранено (в силе через ≤ {get_settings().agent_cache_seconds:g} с).")


@agent_app.command("set-limits")
def agent_set_limits(
    code: str,
    service: str,
    min_amount: Annotated[str | None, typer.Option("--min", help="Smallest amount, som.")] = None,
    max_amount: Annotated[str | None, typer.Option("--max", help="Largest amount, som.")] = None,
    forbid: Annotated[bool, typer.Option(help="Forbid this service for the agent.")] = False,
) -> None:
    """Allow a service for an agent, with its own limits, or forbid it."""
    try:
        with _transaction() as conn:
            agent_admin.set_service(
                conn,
                code,
                service,
                allowed=not forbid,
                min_amount=_amount(min_amount) if min_amount else None,
                max_amount=_amount(max_amount) if max_amount else None,
                actor=_cli_actor(),
            )
    except agents.AgentError as error:
        _fail(str(error))
    typer.echo("Сохранено.")


# --- customers ----------------------------------------------------------------------


def _customer_json(conn: Connection, c: customers.Customer) -> dict[str, Any]:
    return {
        "inn": c.inn,
        "name": c.name,
        "legal_form": c.legal_form,
        "status": c.status,
        "balance": format_amount(customers.balance(conn, c)),
        **c.contacts(),
    }


_LANGUAGE_NAMES = {"ru": "русский", "ky": "кыргызский"}


def _contacts_lines(c: customers.Customer) -> list[str]:
    return [
        f"E-mail: {c.email or 'нет'}",
        f"Телефон для SMS: {c.phone or 'нет'}",
        f"Язык уведомлений: {c.language} ({_LANGUAGE_NAMES.get(c.language, c.language)})",
    ]


EmailOption = Annotated[
    str | None, typer.Option("--email", help="E-mail for notifications.", show_default=False)
]
PhoneOption = Annotated[
    str | None,
    typer.Option(
        "--phone",
        help="Phone for SMS: +996 555 123 456, 996555123456 or 0555 123 456.",
        show_default=False,
    ),
]
LanguageOption = Annotated[
    str | None,
    typer.Option("--language", help="Language of notifications: ru or ky.", show_default=False),
]


@customer_app.command("add")
def customer_add(
    inn: str,
    name: str,
    legal_form: Annotated[
        str, typer.Option(help=f"One of: {', '.join(customers.LEGAL_FORMS)}.")
    ] = "ОсОО",
    email: EmailOption = None,
    phone: PhoneOption = None,
    language: LanguageOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a customer with a zero balance."""
    try:
        with _transaction() as conn:
            customer = customers.add(
                conn,
                inn=inn,
                name=name,
                legal_form=legal_form,
                email=email,
                phone=phone,
                language=language or customers.DEFAULT_LANGUAGE,
            )
            data = _customer_json(conn, customer)
    except customers.CustomerError as error:
        _fail(str(error), as_json)
    _emit(data, as_json, f"Клиент {inn} «{name}» добавлен.")


@customer_app.command("import")
def customer_import(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="CSV: inn,name[,legal_form][,email][,phone][,language]",
        ),
    ],
    skip_bad: Annotated[
        bool, typer.Option(help="Import the good lines even if some are bad.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Import customers from CSV. Any bad line and nothing is imported, unless --skip-bad."""
    rows, problems = customers.read_import_file(file)

    class _Refused(Exception):
        """Roll the import back: a bad line and no --skip-bad."""

    try:
        with _transaction() as conn:
            added, known = customers.import_rows(conn, rows)
            problems = sorted(problems + known, key=lambda p: p.line)
            if problems and not skip_bad:
                raise _Refused
    except _Refused:
        for p in problems:
            typer.secho(f"строка {p.line}: {p.message}", fg="red", err=True)
        _fail(
            f"{len(problems)} ошибок; ничего не импортировано (--skip-bad: импортировать остальное)",
            as_json,
        )
    for p in problems:
        typer.secho(f"пропущена строка {p.line}: {p.message}", fg="yellow", err=True)
    report = [{"line": p.line, "error": p.message} for p in problems]
    _emit(
        {"imported": added, "skipped": report},
        as_json,
        f"Импортировано клиентов: {added}; пропущено строк: {len(report)}",
    )


def _set_customer_status(inn: str, status: str) -> None:
    try:
        with _transaction() as conn:
            customers.set_status(conn, inn, status)
    except customers.CustomerError as error:
        _fail(str(error))
    typer.echo(f"Клиент {inn}: {'заблокирован' if status == 'blocked' else 'разблокирован'}")


@customer_app.command("block")
def customer_block(inn: str) -> None:
    """Refuse payments to this customer (result 79)."""
    _set_customer_status(inn, "blocked")


@customer_app.command("unblock")
def customer_unblock(inn: str) -> None:
    """Accept payments to this customer again."""
    _set_customer_status(inn, "active")


@customer_app.command("contacts")
def customer_contacts(
    inn: str,
    email: EmailOption = None,
    phone: PhoneOption = None,
    language: LanguageOption = None,
    clear_email: Annotated[
        bool, typer.Option("--clear-email", help="Remove the e-mail: no more e-mails.")
    ] = False,
    clear_phone: Annotated[
        bool, typer.Option("--clear-phone", help="Remove the phone: no more SMS.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show or change the e-mail, phone and language of a customer's notifications."""
    if email is not None and clear_email:
        _fail("--email и --clear-email вместе нельзя", as_json)
    if phone is not None and clear_phone:
        _fail("--phone и --clear-phone вместе нельзя", as_json)
    try:
        with _transaction() as conn:
            before, after = customers.set_contacts(
                conn,
                inn,
                email=None if clear_email else customers.KEEP if email is None else email,
                phone=None if clear_phone else customers.KEEP if phone is None else phone,
                language=customers.KEEP if language is None else language,
            )
            old, new = customers.contact_changes(before, after)
            if new:
                audit.record(
                    conn,
                    actor=_cli_actor(),
                    action="customer.contacts",
                    object_type="customer",
                    object_id=inn,
                    before=old,
                    after=new,
                )
    except customers.CustomerError as error:
        _fail(str(error), as_json)
    asked = clear_email or clear_phone or any(v is not None for v in (email, phone, language))
    if new:
        headline = f"Контакты клиента {inn} изменены:"
    elif asked:
        headline = f"Контакты клиента {inn} не изменились, они уже такие:"
    else:
        headline = f"Контакты клиента {inn}:"
    _emit(
        {"inn": inn, **after.contacts(), "changed": list(new)},
        as_json,
        "\n".join([headline, *_contacts_lines(after)]),
    )


@customer_app.command("show")
def customer_show(
    inn: str,
    entries: Annotated[
        int, typer.Option(min=0, max=1000, help="How many latest ledger entries.")
    ] = 10,
    as_json: JsonOption = False,
) -> None:
    """A customer's balance (som) and latest ledger entries."""
    with _transaction() as conn:
        customer = customers.get(conn, inn)
        if customer is None:
            _fail(f"клиент с ИНН {inn} не найден", as_json)
        data = _customer_json(conn, customer)
        data["entries"] = [
            {
                "entry_id": e.entry_id,
                "at": e.created_at.isoformat(),
                "amount": format_amount(e.amount),
                "description": e.description,
            }
            for e in latest_entries(conn, customer.account_id, limit=entries)
        ]
    lines = [
        f"{data['name']} ({data['legal_form']}), ИНН {inn}, {'активен' if customer.status == 'active' else 'заблокирован'}",
        f"Баланс: {data['balance']} сом",
        *_contacts_lines(customer),
        "Последние проводки:" if data["entries"] else "Проводок нет.",
    ]
    lines += [
        f"  #{e['entry_id']:<8} {e['at'][:19]}  {e['amount']:>12}  {e['description']}"
        for e in data["entries"]
    ]
    _emit(data, as_json, "\n".join(lines))


# --- catalogue and services -----------------------------------------------------------


@catalog_app.command("list")
def catalog_list(as_json: JsonOption = False) -> None:
    """Products with code, Russian name and price."""
    with _transaction() as conn:
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
    human = "\n".join(
        f"{r['code']:24} {r['price'] or 'цена не задана':>14}  {r['name']}" for r in rows
    )
    _emit(rows, as_json, human)


@catalog_app.command("set-price")
def catalog_set_price(
    code: str, price: Annotated[str, typer.Argument(help="Price in som, e.g. 2500.00")]
) -> None:
    """Set a product's price (e.g. the RuToken carrier, whose price is not public)."""
    amount = _amount(price)
    if amount <= 0:
        _fail("цена должна быть больше нуля")
    with _transaction() as conn:
        if not catalog.set_price(conn, code, amount):
            _fail(f"нет товара {code!r}")
    typer.echo("Цена сохранена.")


@service_app.command("list")
def service_list(as_json: JsonOption = False) -> None:
    """Services with their default amount limits."""
    with _transaction() as conn:
        rows = [
            {
                "code": r.code,
                "name": r.name,
                "min": format_amount(r.min_amount),
                "max": format_amount(r.max_amount),
            }
            for r in conn.execute(select(services).order_by(services.c.code))
        ]
    _emit(
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
    with _transaction() as conn:
        try:
            found = catalog.set_service_limits(conn, code, _amount(min_amount), _amount(max_amount))
        except ValueError as error:
            _fail(str(error))
        if not found:
            _fail(f"нет услуги {code!r}")
    typer.echo("Сохранено (агенты увидят через несколько секунд).")


# --- invoices -----------------------------------------------------------------------


def _invoice_json(invoice: invoices.Invoice) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "inn": invoice.inn,
        "payer_name": invoice.payer_name,
        "total": format_amount(invoice.total),
        "status": invoice.state(datetime.now(UTC)),
        "expires_at": invoice.expires_at.isoformat(),
        "payment_id": invoice.payment_id,
        "lines": [
            {
                "product": line.product_code,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": format_amount(line.unit_price),
                "amount": format_amount(line.amount),
            }
            for line in invoice.lines
        ],
    }


def _invoice_human(invoice: invoices.Invoice) -> str:
    data = _invoice_json(invoice)
    lines = [
        f"Счёт № {data['number']} — {data['payer_name']}"
        + (f", ИНН {data['inn']}" if data["inn"] else ""),
        f"Сумма: {data['total']} сом; статус: {data['status']}; оплатить до {data['expires_at'][:10]}",
    ]
    lines += [
        f"  {x['quantity']} × {x['unit_price']} = {x['amount']}  {x['name']}" for x in data["lines"]
    ]
    return "\n".join(lines)


@invoice_app.command("create")
def invoice_create(
    item: Annotated[
        list[str],
        typer.Option("--item", help="CODE or CODE:QTY from `tolom catalog list`; repeat."),
    ],
    inn: Annotated[str | None, typer.Option(help="Payer's INN, if known.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Payer's name (default: the customer's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue an invoice; prints its number (what the customer types as the account) and total."""
    try:
        items = [invoices.parse_item(i) for i in item]
        with _transaction() as conn:
            payer = name
            if payer is None and inn is not None:
                customer = customers.get(conn, inn)
                payer = customer.name if customer else None
            if payer is None:
                _fail("укажите --name плательщика (или --inn зарегистрированного клиента)", as_json)
            invoice = invoices.create(
                conn,
                items=items,
                payer_name=payer,
                inn=inn,
                validity_days=get_settings().invoice_validity_days,
            )
    except invoices.InvoiceError as error:
        _fail(str(error), as_json)
    _emit(_invoice_json(invoice), as_json, _invoice_human(invoice))


@invoice_app.command("show")
def invoice_show(number: str, as_json: JsonOption = False) -> None:
    """An invoice with its lines and state."""
    with _transaction() as conn:
        invoice = invoices.get(conn, number)
    if invoice is None:
        _fail(f"счёт {number} не найден", as_json)
    _emit(_invoice_json(invoice), as_json, _invoice_human(invoice))


@invoice_app.command("cancel")
def invoice_cancel(number: str, as_json: JsonOption = False) -> None:
    """Cancel an unpaid invoice (agents then get result 79)."""
    try:
        with _transaction() as conn:
            invoice = invoices.cancel(conn, number)
    except invoices.InvoiceError as error:
        _fail(str(error), as_json)
    _emit(_invoice_json(invoice), as_json, f"Счёт {number} аннулирован.")


# --- ledger -------------------------------------------------------------------------


@ledger_app.command("verify")
def ledger_verify(as_json: JsonOption = False) -> None:
    """Recompute every balance from the postings; exit 1 and name the culprit on any discrepancy."""
    with _transaction() as conn:
        problems = verify_ledger(conn)
    data = {"ok": not problems, "problems": [asdict(p) for p in problems]}
    if problems:
        _emit(
            data,
            as_json,
            "\n".join(f"НЕСХОДИМОСТЬ {p.kind}: {p.subject}: {p.detail}" for p in problems),
        )
        raise typer.Exit(code=1)
    _emit(data, as_json, "Леджер сходится: все балансы равны сумме проводок.")


# --- API keys ------------------------------------------------------------------------


def _apikey_json(key: apikeys.ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "scopes": sorted(key.scopes),
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="Who uses the key, e.g. buh or sochi-backend.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="read, write or admin (admin implies write, write implies read); "
            "repeat or separate with commas.",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Create an API key; prints the token once (only its hash is stored)."""
    try:
        with _transaction() as conn:
            token = apikeys.create(conn, name=name, scopes=scope)
            granted = sorted(apikeys.parse_scopes(scope))
            audit.record(
                conn,
                actor=_cli_actor(),
                action="apikey.create",
                object_type="api_key",
                object_id=name,
                after={"name": name, "scopes": granted},
            )
    except apikeys.ApiKeyError as error:
        _fail(str(error), as_json)
    _emit(
        {"name": name, "scopes": granted, "token": token},
        as_json,
        f"Ключ API {name} создан (права: {', '.join(granted)}). "
        "Сохраните его, больше он не будет показан:\n"
        f"  {token}\n"
        "Передавайте его в заголовке запроса: Authorization: Bearer <ключ>",
    )


@apikey_app.command("list")
def apikey_list(as_json: JsonOption = False) -> None:
    """All API keys with their scopes, revoked ones too; never the tokens."""
    with _transaction() as conn:
        rows = [_apikey_json(k) for k in apikeys.list_keys(conn)]
    human = "\n".join(
        f"{r['name']:24} {','.join(r['scopes']):18} tolom_{r['prefix']}_…  "
        f"создан {r['created_at'][:19]}"
        + (f"  ОТОЗВАН {r['revoked_at'][:19]}" if r["revoked_at"] else "")
        for r in rows
    )
    _emit(rows, as_json, human or "Ключей API нет.")


@apikey_app.command("revoke")
def apikey_revoke(name: str, as_json: JsonOption = False) -> None:
    """Revoke an API key for good; requests with it get HTTP 401."""
    try:
        with _transaction() as conn:
            apikeys.revoke(conn, name)
            audit.record(
                conn,
                actor=_cli_actor(),
                action="apikey.revoke",
                object_type="api_key",
                object_id=name,
                before={"revoked": False},
                after={"revoked": True},
            )
    except apikeys.ApiKeyError as error:
        _fail(str(error), as_json)
    _emit(
        {"name": name, "revoked": True},
        as_json,
        f"Ключ API {name} отозван (в силе через ≤ {get_settings().agent_cache_seconds:g} с).",
    )


events_cli.webhook_app.command("listen")(listen)
app.add_typer(events_cli.webhook_app, name="webhook")
app.add_typer(events_cli.events_app, name="events")
app.command("worker")(events_cli.worker)


app.add_typer(tariff_app, name="tariff")
app.add_typer(orders_app, name="order")
app.add_typer(charge_app, name="charge")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(user_app, name="user")
invoice_app.command("pdf")(invoice_pdf)
app.add_typer(payment_app, name="payment")
app.add_typer(export_app, name="export")


def main() -> None:
    """Entry point for `python -m tolom`."""
    app(prog_name="tolom")


if __name__ == "__main__":
    main()
