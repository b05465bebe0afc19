"""Demo data: real-looking customers, invoices and two agents, for a first look at Tolom."""

from __future__ import annotations

import ipaddress
import random
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from tolom import apikeys
from tolom.agents import service as agents
from tolom.backoffice import users
from tolom.billing import charges, customers, invoices
from tolom.db.schema import agents as agents_table
from tolom.db.schema import customers as customers_table
from tolom.events import endpoints

# (legal form, name). Names are invented; any likeness to a real company is chance.
DEMO_CUSTOMERS = [
    ("ОсОО", "ОсОО «Ала-Тоо Консалтинг»"),
    ("ОсОО", "ОсОО «Бишкек Строй Сервис»"),
    ("ОсОО", "ОсОО «Нарын Агро Трейд»"),
    ("ОсОО", "ОсОО «Ысык-Көл Тур»"),
    ("ОсОО", "ОсОО «Ош Фарм Плюс»"),
    ("ОсОО", "ОсОО «Жалал-Абад Текстиль»"),
    ("ОсОО", "ОсОО «Тянь-Шань Логистик»"),
    ("ОАО", "ОАО «Кыргызалтынсервис»"),
    ("ЗАО", "ЗАО «Ак-Суу Минерал»"),
    ("ОО", "ОО «Ассоциация бухгалтеров Чуйской области»"),
    ("ОФ", "ОФ «Билим Булагы»"),
    ("Учреждение", "Учреждение «Частная школа Нур»"),
    ("ИП", "ИП Асанов Бакыт Токтогулович"),
    ("ИП", "ИП Абдыкадырова Айгуль Маратовна"),
    ("ИП", "ИП Исмаилов Руслан Эркинович"),
    ("ИП", "ИП Жумабаева Гульнара Сапаровна"),
    ("ИП", "ИП Токтосунов Азамат Бекболотович"),
    ("ИП", "ИП Ким Елена Викторовна"),
    ("ИП", "ИП Мамытов Нурлан Кубанычбекович"),
    ("КХ", "КХ «Береке» (Сокулукский район)"),
]

DEMO_INVOICES = [
    ("ОсОО «Кара-Балта Энерго»", None, [("eds-head", 1), ("eds-accountant", 1)]),
    ("ИП Сыдыков Эмиль Талантбекович", None, [("eds-rutoken", 1)]),
    ("ОсОО «Токмок Авто»", None, [("eds-complex-5", 1)]),
]


@dataclass(frozen=True, slots=True)
class DemoAgent:
    code: str
    name: str
    secret: str


# Reports of the first customer that wait for a top-up: (form, period, description, tyiyn).
DEMO_WAITING_REPORTS = [
    ("vat", "2026-10", "НДС за октябрь 2026", 150_00),
    ("sales-tax", "2026-10", "Налог с продаж за октябрь 2026", 200_00),
]
DEMO_WEBHOOK = "demo-inbox"
DEMO_WEBHOOK_PORT = 8900  # `tolom demo --webhook-port` when it is taken


def demo_webhook_url(port: int = DEMO_WEBHOOK_PORT) -> str:
    """Where `tolom webhook listen demo-inbox` receives the demo's events."""
    return f"http://127.0.0.1:{port}/tolom-webhooks"


# One back-office user per role, named after it.
DEMO_USERS = {
    "admin": "Администратор (демо)",
    "operator": "Айгерим Оператор (демо)",
    "accountant": "Бакыт Бухгалтер (демо)",
    "auditor": "Нурлан Аудитор (демо)",
}


@dataclass(frozen=True, slots=True)
class DemoResult:
    agents: list[DemoAgent]
    customers: list[customers.Customer]
    invoices: list[invoices.Invoice]
    api_key: str  # demo-admin, scope admin
    waiting: list[charges.Charge]  # the first customer's reports awaiting payment
    webhook: tuple[str, str]  # name, URL
    users: dict[str, str]  # back-office username (= role) -> password, shown once


def demo_inn(rng: random.Random, legal_form: str) -> str:
    """A plausible Kyrgyz INN: organisations start with 0 and their registration date,
    individuals with 1 or 2 (sex) and their birth date; then five digits."""
    if legal_form == "ИП":
        first, year = rng.choice("12"), rng.randint(1960, 2000)
    else:
        first, year = "0", rng.randint(1995, 2024)
    return (
        f"{first}{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{year}{rng.randint(0, 99999):05d}"
    )


def has_data(conn: Connection) -> bool:
    """Whether any customer or agent (other than the built-in channels) exists."""
    people = conn.execute(select(func.count()).select_from(customers_table)).scalar_one()
    gateway_agents = select(func.count()).where(agents_table.c.kind == agents.GATEWAY)
    return bool(people or conn.execute(gateway_agents).scalar_one())


def fill_demo(
    conn: Connection,
    *,
    validity_days: int,
    seed: int = 417,
    webhook_port: int = DEMO_WEBHOOK_PORT,
) -> DemoResult:
    """Create the demo in the caller's transaction; refuses a database that has data."""
    if has_data(conn):
        raise ValueError("в базе уже есть клиенты или агенты: демо заполняет только пустую базу")
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    created = [
        customers.add(conn, inn=demo_inn(rng, form), name=name, legal_form=form)
        for form, name in DEMO_CUSTOMERS
    ]
    # Contacts for notifications (example.kg addresses: nothing leaves the machine with the
    # default console back-ends); the second customer reads Kyrgyz.
    customers.set_contacts(
        conn, created[0].inn, email="buh@ala-too.example.kg", phone="+996555123456"
    )
    customers.set_contacts(
        conn, created[1].inn, email="info@bishkek-stroy.example.kg", language="ky"
    )
    waiting = [
        charges.create(
            conn,
            charges.ChargeRequest(
                client="demo",
                idempotency_key=f"demo-{form}-{period}",
                inn=created[0].inn,
                description=description,
                amount=amount,
                report=charges.Report(None, "sti", form, period),
            ),
        )
        for form, period, description, amount in DEMO_WAITING_REPORTS
    ]
    customers.set_status(conn, created[-1].inn, "blocked")  # to see result 79
    issued = [
        invoices.create(conn, items=items, payer_name=payer, inn=inn, validity_days=validity_days)
        for payer, inn, items in DEMO_INVOICES
    ]
    issued.append(
        invoices.create(
            conn,
            items=[("eds-head", 1)],
            payer_name=created[0].name,
            inn=created[0].inn,
            validity_days=validity_days,
        )
    )
    loopback = ["127.0.0.0/8", "::1/128"]
    made = []
    for code, name in (
        ("optima", "Оптима Банк (Оптима 24, терминалы)"),
        ("megapay", "MegaPay (MegaCom)"),
    ):
        secret = agents.create(
            conn, code=code, name=name, networks=loopback, service_codes=["sochi", "eds"]
        )
        made.append(DemoAgent(code, name, secret))
    api_key = apikeys.create(conn, name="demo-admin", scopes=["admin"])
    # After the charges: the listener shows what a top-up does, not the demo's own set-up.
    # The listener is on this host: the demo allows it, the worker needs
    # TOLOM_WEBHOOK_ALLOWED_NETWORKS=127.0.0.1/32 to deliver there (scripts/dev run sets it).
    endpoints.add(
        conn,
        name=DEMO_WEBHOOK,
        url=demo_webhook_url(webhook_port),
        event_types="*",
        actor="demo",
        allowed_networks=[ipaddress.ip_network("127.0.0.1/32")],
    )
    people = {}
    for role, name in DEMO_USERS.items():
        password = secrets.token_urlsafe(9)
        users.create(conn, username=role, display_name=name, role=role, password=password)
        people[role] = password
    return DemoResult(
        made,
        created,
        issued,
        api_key,
        waiting,
        (DEMO_WEBHOOK, demo_webhook_url(webhook_port)),
        people,
    )
