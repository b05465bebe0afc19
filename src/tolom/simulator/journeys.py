"""The seeds' two wallet journeys, played over the real OSMP protocol as a sandbox agent.

A wallet (Optima Bank's «Оптима 24», MegaCom's MegaPay) does what the company's payment
instructions (`../shared/seeds/`) show: the customer walks its screens, types an account,
the wallet sends `check` (and shows the name or the amount due), the customer types the
sum and taps «Оплатить», the wallet sends `pay` and shows a receipt (чек). Here the wallet
is played by Tolom itself: every request goes over HTTP (httpx) to a Tolom server's OSMP
gateway (`/gateway/osmp/{service}`) with the HTTP Basic credentials of a **sandbox** agent,
so the gateway, the step and `payments.sandbox` answer exactly as they answer an
integrator. A real agent is refused before anything is sent: the simulator never moves
real money. Like a wallet, a pay answered 1 ("temporary error") or 90 ("not finished") is
resent at once with the same `txn_id`, up to `PAY_ATTEMPTS` times.

The wallets' screen words (`Wallet`) are data, in Russian as the apps show them; what Tolom
itself says (refusals, panels) is in the catalogues. The back office's `/simulator` page
(`web.simulator`) and `tolom simulate` (`cli.simulate`) both call this module.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from tolom.agents.service import AgentError, sandbox_credentials
from tolom.db import Connection
from tolom.money import MalformedAmount, format_amount, parse_amount
from tolom.texts import N_, Refusal

if TYPE_CHECKING:  # httpx loads on first use: a server's start does not need it
    import httpx

PAY_ATTEMPTS = 4  # a pay answered 1 or 90 is sent again with the same txn_id, this often in all
TIMEOUT_SECONDS = 60.0  # agents cut a request after 60 s (the slow magic account answers sooner)
MASK = "••••••••"
RESULT_OK = 0
_AGAIN = frozenset({1, 90})  # not fatal: resend the same txn_id
_MAX_ANSWER = 64 * 1024  # characters of an answer kept for display


class SimulatorError(Refusal):
    """The journey cannot be played (an unknown or real agent, no secret, a bad choice)."""


@dataclass(frozen=True, slots=True)
class Wallet:
    """A wallet of the seeds: its name and, per service, the screens from its payments
    menu to the service (the words the app shows)."""

    code: str
    name: str
    screens: Mapping[str, tuple[str, ...]]
    account_label: Mapping[str, str]


OPTIMA = Wallet(
    "optima",
    "Оптима 24",
    {
        "sochi": ("Платежи", "Платежи от дилеров/агентов", "Dos Tek Group", "СОЧИ — ИНН"),
        "eds": (
            "Платежи",
            "Платежи от дилеров/агентов",
            "Dos Tek Group",
            "ЭЦП — номер счёта на оплату",
        ),
    },
    {
        "sochi": "ИНН Вашей организации или ИП (14 цифр)",
        "eds": "Номер счета на оплату (16 цифр)",
    },
)
MEGAPAY = Wallet(
    "megapay",
    "MegaPay",
    {
        "sochi": ("Оплата", "Другие", "СОЧИ"),
        "eds": ("Оплата", "Другие", "Оплата ЭЦП (Дос Тэк ...)"),
    },
    {"sochi": "Введите лицевой счет", "eds": "Введите лицевой счет"},
)
WALLETS: dict[str, Wallet] = {w.code: w for w in (OPTIMA, MEGAPAY)}
SERVICES = ("sochi", "eds")
PAYEE = "Dos Tek Group"  # data: how both wallets name the company


def wallet(code: str) -> Wallet:
    found = WALLETS.get(code)
    if found is None:
        raise SimulatorError(N_("simulator.error.wallet"), wallet=code)
    return found


def service(code: str) -> str:
    if code not in SERVICES:
        raise SimulatorError(N_("simulator.error.service"), service=code)
    return code


def amount(text: str) -> int:
    """A sum as the customer types it ("100", "100.50"; a comma is taken for the dot)."""
    try:
        found = parse_amount(text.strip().replace(",", "."))
    except MalformedAmount:
        raise SimulatorError(N_("simulator.error.amount"), text=text) from None
    if found <= 0:
        raise SimulatorError(N_("simulator.error.amount"), text=text)
    return found


# --- who speaks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Speaker:
    """A sandbox agent's credentials and the server it speaks to."""

    base_url: str
    code: str
    zone: ZoneInfo
    secret: str = field(repr=False)


def speaker(conn: Connection, code: str, base_url: str, secret: str | None = None) -> Speaker:
    """The sandbox agent `code` ready to speak, its secret opened from the store (or the one
    given): `agents.service.sandbox_credentials`, so a real agent is never spoken for."""
    try:
        found = sandbox_credentials(conn, code, secret)
    except AgentError as refused:
        raise SimulatorError(refused.key, **refused.values) from refused
    return Speaker(base_url.rstrip("/"), code, ZoneInfo(found.timezone), found.secret)


# --- one request -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The OSMP answer's elements (None: absent or not XML)."""

    result: int | None
    comment: str = ""
    osmp_txn_id: str | None = None
    prv_txn: str | None = None
    sum: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == RESULT_OK


def read_answer(body: str) -> Answer:
    """The answer's elements; an answer that is not OSMP XML has no result."""
    try:
        # Expat fetches no external entity and bounds entity expansion (Python >= 3.11's
        # bundled expat), and the answer is a Tolom gateway's.
        root = ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        return Answer(None)
    if root.tag != "response":
        return Answer(None)

    def text(tag: str) -> str | None:
        found = root.find(tag)
        return None if found is None or found.text is None else found.text.strip()

    result = text("result")
    fields = {}
    holder = root.find("fields")
    if holder is not None:
        for item in holder:
            fields[item.get("name", item.tag)] = (item.text or "").strip()
    return Answer(
        int(result) if result is not None and result.isdigit() else None,
        text("comment") or "",
        text("osmp_txn_id"),
        text("prv_txn"),
        text("sum"),
        fields,
    )


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request as it went (the secret masked) and the raw answer, or why none came."""

    command: str
    method: str
    url: str
    params: tuple[tuple[str, str], ...]
    authorization: str
    status: int | None
    body: str
    failure: str = ""

    @property
    def answer(self) -> Answer:
        return read_answer(self.body) if self.status is not None else Answer(None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "method": self.method,
            "url": self.url,
            "params": [list(p) for p in self.params],
            "authorization": self.authorization,
            "status": self.status,
            "body": self.body,
            "failure": self.failure,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Exchange:
        """An exchange a page carried from one step to the next (ValueError if malformed)."""
        try:
            status = data["status"]
            return cls(
                str(data["command"]),
                str(data["method"]),
                str(data["url"]),
                tuple((str(k), str(v)) for k, v in data["params"]),
                str(data["authorization"]),
                None if status is None else int(status),
                str(data["body"])[:_MAX_ANSWER],
                str(data.get("failure", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError("not an exchange") from error


def new_txn_id() -> str:
    """A fresh txn_id as a wallet makes one: digits (milliseconds and 4 random digits)."""
    return f"{time.time_ns() // 1_000_000}{secrets.randbelow(10_000):04d}"


async def _send(
    who: Speaker,
    service_: str,
    params: list[tuple[str, str]],
    transport: httpx.AsyncBaseTransport | None,
) -> Exchange:
    url = f"{who.base_url}/gateway/osmp/{service_}"
    shown = f"{url}?{urlencode(params)}"
    command = params[0][1]
    authorization = f"Basic {who.code}:{MASK}"
    import httpx

    try:
        async with httpx.AsyncClient(
            transport=transport, timeout=TIMEOUT_SECONDS, auth=(who.code, who.secret)
        ) as client:
            response = await client.get(url, params=tuple(params))
    except httpx.HTTPError as error:
        failure = f"{type(error).__name__}: {error}"
        return Exchange(command, "GET", shown, tuple(params), authorization, None, "", failure)
    return Exchange(
        command,
        "GET",
        shown,
        tuple(params),
        authorization,
        response.status_code,
        response.text[:_MAX_ANSWER],
    )


async def check(
    who: Speaker, service_: str, account: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> Exchange:
    """The wallet's `check` of an account (the sum a placeholder, as wallets send it)."""
    params = [("command", "check"), ("txn_id", new_txn_id()), ("account", account), ("sum", "0.00")]
    return await _send(who, service(service_), params, transport)


async def pay(
    who: Speaker,
    service_: str,
    account: str,
    amount_: int,
    *,
    txn_id: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Exchange]:
    """The wallet's `pay`, resent with the same txn_id while the answer says "again"."""
    txn_id = txn_id or new_txn_id()
    txn_date = datetime.now(who.zone).strftime("%Y%m%d%H%M%S")  # the wallet's local time
    params = [
        ("command", "pay"),
        ("txn_id", txn_id),
        ("txn_date", txn_date),
        ("account", account),
        ("sum", format_amount(amount_)),
    ]
    sent: list[Exchange] = []
    for _ in range(PAY_ATTEMPTS):
        exchange = await _send(who, service(service_), params, transport)
        sent.append(exchange)
        if exchange.answer.result not in _AGAIN:
            break
    return sent


# --- a journey -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """The чек a wallet shows after result 0: what the OSMP answer says."""

    wallet: str
    payee: str
    service: str
    account: str
    name: str
    sum: str
    txn_id: str
    prv_txn: str
    paid_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "wallet": self.wallet,
            "payee": self.payee,
            "service": self.service,
            "account": self.account,
            "name": self.name,
            "sum": self.sum,
            "txn_id": self.txn_id,
            "prv_txn": self.prv_txn,
            "paid_at": self.paid_at.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True, slots=True)
class Journey:
    """A journey as far as it went: its requests and answers in order, the receipt if
    the pay ended in result 0."""

    wallet: Wallet
    agent: str
    service: str
    account: str
    amount: int
    exchanges: tuple[Exchange, ...]
    receipt: Receipt | None

    @property
    def ok(self) -> bool:
        return self.receipt is not None

    @property
    def last(self) -> Answer:
        return self.exchanges[-1].answer if self.exchanges else Answer(None)

    @property
    def name(self) -> str:
        """The name (or, for an invoice, the amount due) the check showed."""
        for exchange in self.exchanges:
            if exchange.command == "check":
                return exchange.answer.fields.get("name", "")
        return ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "wallet": self.wallet.code,
            "agent": self.agent,
            "service": self.service,
            "account": self.account,
            "amount": format_amount(self.amount),
            "screens": list(self.wallet.screens[self.service]),
            "exchanges": [e.as_dict() for e in self.exchanges],
            "result": self.last.result,
            "receipt": None if self.receipt is None else self.receipt.as_dict(),
        }


def finish(
    who: Speaker,
    wallet_: Wallet,
    service_: str,
    account: str,
    amount_: int,
    exchanges: list[Exchange],
) -> Journey:
    """The journey from its exchanges: a receipt when the last is a pay answered 0."""
    receipt = None
    last = exchanges[-1] if exchanges else None
    if last is not None and last.command == "pay" and last.answer.ok:
        answer = last.answer
        name = next(
            (e.answer.fields.get("name", "") for e in exchanges if e.command == "check"), ""
        )
        receipt = Receipt(
            wallet_.name,
            PAYEE,
            wallet_.screens[service_][-1],
            account,
            name,
            answer.sum or format_amount(amount_),
            dict(last.params)["txn_id"],
            answer.prv_txn or "",
            datetime.now(who.zone),
        )
    return Journey(wallet_, who.code, service_, account, amount_, tuple(exchanges), receipt)


async def play(
    who: Speaker,
    wallet_: Wallet,
    service_: str,
    account: str,
    amount_: int,
    *,
    txn_id: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Journey:
    """The whole journey: check the account; if it can be paid, pay. Nothing is paid when
    the check says no, as a wallet shows the refusal and stops."""
    exchanges = [await check(who, service_, account, transport=transport)]
    if exchanges[0].answer.ok:
        exchanges += await pay(who, service_, account, amount_, txn_id=txn_id, transport=transport)
    return finish(who, wallet_, service_, account, amount_, exchanges)
