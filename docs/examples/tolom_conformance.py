#!/usr/bin/env python3
"""Tolom's conformance kit: try your agent client against the sandbox. Standard library only
(Python 3.11 or later); nothing of Tolom needs to be installed.

    export TOLOM_URL=https://sandbox.example.kg TOLOM_AGENT=mybox   # a sandbox agent
    export TOLOM_SECRET=...          # its secret (OSMP, HTTP Basic)
    export TOLOM_SIGNING_KEY=...     # its signing key (REST, 64 hex)

    python3 tolom_conformance.py scenarios [--protocol osmp|rest|both]
        Plays every answer of the guides' magic-account table (and repeats, a changed
        repeat, a wrong account format, wrong credentials; over REST status and cancel) and
        checks that the sandbox answers as documented: what your client will meet.

    python3 tolom_conformance.py proxy [--port 8765] [--lose-answers] [--record FILE]
        A recording proxy to the sandbox. Point YOUR client at http://127.0.0.1:8765 instead
        of TOLOM_URL (credentials unchanged), make it pay the magic accounts it prints, then
        stop the proxy with Ctrl-C: it checks what your client did against the guides'
        checklist and prints PASS, FAIL or NOT TRIED per item (exit status 1 on a FAIL).

    python3 tolom_conformance.py report FILE
        The same report again, from a recording saved with `proxy --record FILE`.

The magic accounts are read from the guides (agents-osmp.md, agents-rest.md; by default in
the folder above this script, else `--guides DIR`), so the kit and the guides never differ.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GUIDES = Path(__file__).resolve().parent.parent
OSMP_PATH = "/gateway/osmp"
REST_PATH = "/api/v1/agent"
SOCHI_AMOUNT = "500.00"  # a top-up within the default limits (1.00 to 500000.00)

# What an answer to a pay means for the client's next step.
OK, AGAIN, FINAL, AUTH = "ok", "again", "final", "auth"
OSMP_AGAIN = {1, 90}  # temporary error; payment not finished: resend the same txn_id
OSMP_AUTH = 8  # HTTP 401/403: fix the cause, then the same txn_id may be resent
REST_AGAIN = {202, 503}  # payment_pending; temporarily_unavailable (and any other 5xx)
REST_AUTH_PROBLEMS = {"agent_disabled", "address_not_allowed"}


# --- the guides' magic-account tables -------------------------------------------------------

Expect = tuple[int | None, str | None]
"""An answer: (OSMP result, None) or (REST HTTP status, problem code or None)."""


@dataclass(frozen=True)
class Row:
    """One row of a guide's sandbox table: what the sandbox answers for this account."""

    service: str
    account: str
    check: Expect
    pays: tuple[Expect, ...]  # the answers to successive pays of one txn_id
    amount_due: str | None = None
    below: Expect | None = None  # a pay of the invoice below / above its amount
    above: Expect | None = None
    slow_seconds: int | None = None


_ROW = re.compile(r"^\|\s*`(sochi|eds)`\s*\|\s*`(\d{14}|\d{16})`\s*\|([^|]*)\|([^|]*)\|\s*$")
_TICKED = re.compile(r"`[^`]*`")
_PROBLEM = re.compile(r"`([a-z]+(?:_[a-z]+)+)`")
_NOT_PROBLEMS = {"amount_due", "txn_id"}
_SLOW = re.compile(r"\*\*(\d+)\s*\w+\*\*")  # "**35 s**", "**35 с**"
_TIMES = re.compile(r"\*\*(\d+)\*\*")  # "(**2** attempts)"
_AMOUNT = re.compile(r"`amount(?:_due)?`\s+(\d+\.\d\d)")


def read_table(path: Path, protocol: str) -> list[Row]:
    """The sandbox table of an agent guide (English or Russian: only the numbers, codes and
    bold figures are read, never the words)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        found = _ROW.match(line)
        if found:
            service, account, check, pay = found.groups()
            parse = _osmp_row if protocol == "osmp" else _rest_row
            rows.append(parse(service, account, check, pay))
    if not rows:
        raise SystemExit(f"{path}: no sandbox table of magic accounts found")
    return rows


def guide_rows(protocol: str, guides: Path = GUIDES) -> list[Row]:
    name = "agents-osmp.md" if protocol == "osmp" else "agents-rest.md"
    path = guides / name
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --guides DIR, the folder with {name}")
    return read_table(path, protocol)


def _split(cell: str, marks: str = ":;") -> tuple[str, str]:
    """The answer itself, and what follows the first mark (remarks; below and above)."""
    parts = re.split(f"[{marks}]", cell, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _osmp_row(service: str, account: str, check: str, pay: str) -> Row:
    head, tail = _split(_TICKED.sub(" ", pay))
    codes = [int(c) for c in re.findall(r"\b\d+\b", head)]
    after = [int(c) for c in re.findall(r"\b\d{3}\b", tail)]
    amount = _AMOUNT.search(check)
    first_check = re.search(r"\b\d+\b", _TICKED.sub(" ", check))
    assert first_check is not None, check
    return Row(
        service,
        account,
        (int(first_check.group()), None),
        tuple((c, None) for c in codes),
        amount_due=amount.group(1) if amount else None,
        below=(after[0], None) if amount and len(after) == 2 else None,
        above=(after[1], None) if amount and len(after) == 2 else None,
        slow_seconds=_slow(pay),
    )


def _rest_answers(cell: str) -> list[Expect]:
    statuses = [int(s) for s in re.findall(r"\b[1-5]\d\d\b", _TICKED.sub(" ", cell))]
    problems = [p for p in _PROBLEM.findall(cell) if p not in _NOT_PROBLEMS]
    answers: list[Expect] = []
    for status in statuses:
        answers.append((status, None if status == 200 else (problems.pop(0) if problems else None)))
    return answers


def _rest_row(service: str, account: str, check: str, pay: str) -> Row:
    head, tail = _split(pay, ";")
    pays = _rest_answers(head)
    times = _TIMES.search(head)
    if times and len(pays) > 1:  # "503 … (**2** attempts), then 200"
        pays = [pays[0]] * int(times.group(1)) + pays[1:]
    after = [p for p in _PROBLEM.findall(tail) if p not in _NOT_PROBLEMS]
    amount = _AMOUNT.search(check)
    bounded = amount is not None and len(after) == 2
    return Row(
        service,
        account,
        _rest_answers(check)[0],
        tuple(pays),
        amount_due=amount.group(1) if amount else None,
        below=(None, after[0]) if bounded else None,
        above=(None, after[1]) if bounded else None,
        slow_seconds=_slow(pay),
    )


def _slow(cell: str) -> int | None:
    found = _SLOW.search(cell)
    return int(found.group(1)) if found else None


# --- talking to Tolom -----------------------------------------------------------------------


@dataclass
class Answer:
    """What came back: None for status when nothing did (timeout, lost connection)."""

    status: int | None
    result: int | None = None  # OSMP
    problem: str | None = None  # REST
    receipt: str | None = None  # OSMP prv_txn, REST receipt
    body: Any = None
    error: str = ""

    def expect(self, protocol: str) -> Expect:
        return (self.result, None) if protocol == "osmp" else (self.status, self.problem)


def read_osmp(status: int, body: bytes) -> Answer:
    try:
        xml = ET.fromstring(body)  # noqa: S314 - Tolom's answer; stdlib only, no defusedxml
        result = int(xml.findtext("result") or "")
    except (ET.ParseError, ValueError):
        return Answer(status, error="not Tolom's XML")
    fields = {f.get("name"): f.text for f in xml.iterfind("fields/*")}
    return Answer(status, result=result, receipt=xml.findtext("prv_txn"), body=fields)


def read_rest(status: int, body: bytes) -> Answer:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return Answer(status, error="not JSON")
    if not isinstance(data, dict):
        return Answer(status, body=data)
    receipt = data.get("receipt")
    return Answer(
        status,
        problem=data.get("code") if status != 200 else None,  # 202: payment_pending
        receipt=None if receipt is None else str(receipt),
        body=data,
    )


def _send(request: urllib.request.Request, timeout: float) -> tuple[int | None, bytes, str]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read(), ""
    except urllib.error.HTTPError as error:
        return error.code, error.read(), ""
    except (urllib.error.URLError, OSError) as error:  # timeout, refused, reset
        return None, b"", str(getattr(error, "reason", error))


def signed(agent: str, key_hex: str, method: str, path: str, body: bytes) -> str:
    """The REST Authorization header (docs/agents-rest.md, section 2)."""
    timestamp = int(time.time())
    text = f"{method}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    signature = hmac.new(bytes.fromhex(key_hex), text.encode(), hashlib.sha256).hexdigest()
    return f"Tolom-HMAC-SHA256 agent={agent},timestamp={timestamp},signature={signature}"


@dataclass
class Client:
    """A well-behaved client of both protocols, for the scenarios."""

    url: str
    agent: str
    secret: str
    signing_key: str
    zone: tzinfo

    def osmp(self, service: str, timeout: float = 60, **params: str) -> Answer:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}{OSMP_PATH}/{service}?{query}")  # noqa: S310
        basic = base64.b64encode(f"{self.agent}:{self.secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
        status, body, error = _send(request, timeout)
        return Answer(None, error=error) if status is None else read_osmp(status, body)

    def rest(
        self, method: str, path: str, payload: dict[str, str] | None = None, timeout: float = 60
    ) -> Answer:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url + path, data=body or None, method=method)  # noqa: S310
        request.add_header(
            "Authorization", signed(self.agent, self.signing_key, method, path, body)
        )
        if body:
            request.add_header("Content-Type", "application/json")
        status, data, error = _send(request, timeout)
        return Answer(None, error=error) if status is None else read_rest(status, data)

    def check(self, protocol: str, service: str, account: str, timeout: float = 60) -> Answer:
        if protocol == "osmp":
            return self.osmp(
                service, timeout, command="check", txn_id=new_txn_id(), account=account
            )
        return self.rest(
            "POST", f"{REST_PATH}/check", {"service": service, "account": account}, timeout
        )

    def pay(
        self, protocol: str, service: str, account: str, amount: str, txn_id: str, **kw: Any
    ) -> Answer:
        now = datetime.now(self.zone)
        if protocol == "osmp":
            return self.osmp(
                service,
                command="pay",
                txn_id=txn_id,
                txn_date=now.strftime("%Y%m%d%H%M%S"),
                account=account,
                sum=amount,
                **kw,
            )
        payload = {
            "txn_id": txn_id,
            "txn_date": now.isoformat(timespec="seconds"),
            "service": service,
            "account": account,
            "amount": amount,
        }
        return self.rest("POST", f"{REST_PATH}/payments", payload, **kw)


_counter = iter(range(1, 10**6))


def new_txn_id() -> str:
    """Unique per run and across runs: milliseconds since 1970 and a counter (16 digits)."""
    return f"{int(time.time() * 1000)}{next(_counter) % 1000:03d}"


def zone_named(name: str) -> tzinfo:
    """The agent's zone; Asia/Bishkek (UTC+6, no daylight saving) even without tz data."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:
        if name == "Asia/Bishkek":
            return timezone(timedelta(hours=6))
        raise SystemExit(f"unknown time zone {name!r}") from None


# --- mode 1: the scenarios ------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    passed: bool
    said: str


def shown(answer: Expect | None, protocol: str) -> str:
    if answer is None:
        return "no answer"
    status, problem = answer
    if protocol == "osmp":
        return "no answer" if status is None else str(status)
    return " ".join(str(x) for x in (status, problem) if x is not None) or "no answer"


def same(got: Expect, documented: Expect) -> bool:
    """REST refusals the guides name by code alone (below/above) match on the code."""
    return all(d is None or g == d for g, d in zip(got, documented, strict=True))


def _amount(row: Row, delta: str = "0") -> str:
    return str(Decimal(row.amount_due or SOCHI_AMOUNT) + Decimal(delta))


def play(
    client: Client, protocol: str, rows: list[Row], timeout: float, patience: float, slow: bool
) -> Iterator[Outcome]:
    """Every scenario of one protocol, in order; each yields whether the sandbox answered as
    the guides say."""
    label = protocol.upper()
    again = OSMP_AGAIN if protocol == "osmp" else REST_AGAIN
    ok_row = next(
        r for r in rows if r.pays == (((0, None) if protocol == "osmp" else (200, None)),)
    )
    for row in rows:
        if row.slow_seconds and not slow:
            continue
        where = f"{row.service} {row.account}"
        wait = patience if row.slow_seconds else 60
        got = client.check(protocol, row.service, row.account, timeout=wait).expect(protocol)
        yield Outcome(
            f"{label} check {where}",
            same(got, row.check),
            f"{shown(got, protocol)}, documented {shown(row.check, protocol)}",
        )
        txn_id = new_txn_id()
        answers: list[Answer] = []
        note = ""
        if row.slow_seconds:
            first = client.pay(
                protocol, row.service, row.account, _amount(row), txn_id, timeout=timeout
            )
            if first.status is None:
                note = f"no answer within {timeout:g} s ({first.error}); resent the same txn_id: "
            else:
                answers.append(first)
                note = f"answered within the {timeout:g} s timeout: "
        while len(answers) < len(row.pays) + 2:
            answer = client.pay(
                protocol, row.service, row.account, _amount(row), txn_id, timeout=wait
            )
            answers.append(answer)
            if answer.expect(protocol)[0] not in again:
                break
        got_all = tuple(a.expect(protocol) for a in answers)
        yield Outcome(
            f"{label} pay {where}",
            len(got_all) == len(row.pays) and all(map(same, got_all, row.pays)),
            note
            + f"{', '.join(shown(g, protocol) for g in got_all)} with one txn_id, documented "
            + ", ".join(shown(p, protocol) for p in row.pays),
        )
        if answers and answers[-1].receipt and not row.slow_seconds:
            repeat = client.pay(protocol, row.service, row.account, _amount(row), txn_id)
            yield Outcome(
                f"{label} repeat {where}",
                repeat.receipt == answers[-1].receipt,
                f"the same pay again: receipt {repeat.receipt}, first {answers[-1].receipt}",
            )
        for bound, delta in ((row.below, "-0.01"), (row.above, "0.01")):
            if bound is not None:
                got = client.pay(
                    protocol, row.service, row.account, _amount(row, delta), new_txn_id()
                ).expect(protocol)
                yield Outcome(
                    f"{label} pay {where} {_amount(row, delta)}",
                    same(got, bound),
                    f"{shown(got, protocol)}, documented {shown(bound, protocol)}",
                )
    yield from _beyond_the_table(client, protocol, ok_row)


def _beyond_the_table(client: Client, protocol: str, row: Row) -> Iterator[Outcome]:
    """The answers that need no magic account: a changed repeat, format, credentials and,
    over REST, status and cancel."""
    label = protocol.upper()
    rest = protocol == "rest"
    txn_id = new_txn_id()
    paid = client.pay(protocol, row.service, row.account, _amount(row), txn_id)
    changed = client.pay(protocol, row.service, row.account, _amount(row, "1"), txn_id)
    conflict: Expect = (409, "txn_id_conflict") if rest else (300, None)
    yield Outcome(
        f"{label} changed repeat",
        bool(paid.receipt) and same(changed.expect(protocol), conflict),
        f"the same txn_id with another amount: {shown(changed.expect(protocol), protocol)}, "
        f"documented {shown(conflict, protocol)}",
    )
    invalid: Expect = (422, "invalid_account") if rest else (4, None)
    for service, account in (("sochi", row.account[:13]), ("eds", "9999900000000006")):
        got = client.check(protocol, service, account).expect(protocol)
        yield Outcome(
            f"{label} wrong format {service} {account}",
            same(got, invalid),
            f"{shown(got, protocol)}, documented {shown(invalid, protocol)}",
        )
    stranger = Client(client.url, client.agent, client.secret + "x", "00" * 32, client.zone)
    answer = stranger.check(protocol, row.service, row.account)
    got = answer.expect(protocol)
    unauthorised: Expect = (401, "bad_signature") if rest else (OSMP_AUTH, None)
    yield Outcome(
        f"{label} wrong credentials",
        same(got, unauthorised) and answer.status == 401,
        f"HTTP {answer.status}, {shown(got, protocol)}, documented {shown(unauthorised, protocol)}",
    )
    if not rest:
        return
    found = client.rest("GET", f"{REST_PATH}/payments/{txn_id}")
    yield Outcome(
        "REST status",
        found.status == 200 and found.receipt == paid.receipt,
        f"{found.status}, receipt {found.receipt} (paid {paid.receipt})",
    )
    reason = {"reason": "conformance kit"}
    cancelled = client.rest("POST", f"{REST_PATH}/payments/{txn_id}/cancel", reason)
    status = (cancelled.body or {}).get("status") if isinstance(cancelled.body, dict) else None
    yield Outcome(
        "REST cancel",
        cancelled.status == 200 and status == "reversed",
        f"{cancelled.status}, {status}",
    )
    unknown = client.rest("GET", f"{REST_PATH}/payments/{new_txn_id()}").expect(protocol)
    yield Outcome(
        "REST status unknown txn_id",
        same(unknown, (404, "payment_not_found")),
        f"{shown(unknown, protocol)}, documented 404 payment_not_found",
    )


def run_scenarios(args: argparse.Namespace) -> int:
    client = Client(
        base_url(),
        _env("TOLOM_AGENT"),
        os.environ.get("TOLOM_SECRET", ""),
        os.environ.get("TOLOM_SIGNING_KEY", ""),
        zone_named(args.timezone),
    )
    protocols = ["osmp", "rest"] if args.protocol == "both" else [args.protocol]
    for protocol in protocols:
        _env("TOLOM_SECRET" if protocol == "osmp" else "TOLOM_SIGNING_KEY")
    failed = 0
    for protocol in protocols:
        rows = guide_rows(protocol, args.guides)
        print(f"{protocol.upper()}: {len(rows)} magic accounts from the guide, {client.url}")
        for outcome in play(
            client, protocol, rows, args.timeout, args.patience, not args.skip_slow
        ):
            failed += not outcome.passed
            print(
                f"  {'PASS' if outcome.passed else 'FAIL'}  {outcome.name}: {outcome.said}",
                flush=True,
            )
    print("all scenarios answered as documented" if not failed else f"{failed} scenario(s) FAILED")
    return 1 if failed else 0


def base_url() -> str:
    """TOLOM_URL, which must be http(s): urllib would also open file: URLs."""
    url = _env("TOLOM_URL").rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise SystemExit("TOLOM_URL must start with https:// (or http:// for a local test)")
    return url


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"set {name} (see the top of this script)")
    return value


# --- mode 2: the recording proxy ------------------------------------------------------------

_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length", "server", "date",
    "accept-encoding",
}  # fmt: skip


def _txn_key(txn_id: str | None) -> str | None:
    """txn_ids compare as numbers: "0090" and "90" are one transaction."""
    return str(int(txn_id)) if txn_id and txn_id.isascii() and txn_id.isdigit() else txn_id


def _money(value: str | None) -> str | None:
    try:
        return f"{Decimal(value):.2f}" if value else value
    except InvalidOperation:
        return value


def describe(method: str, target: str, body: bytes) -> dict[str, Any]:
    """What a request to Tolom was: protocol, kind, txn_id and the payment's data."""
    split = urllib.parse.urlsplit(target)
    path = split.path
    if path.startswith(OSMP_PATH + "/"):
        params = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if method == "POST":
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            for name, values in form.items():
                params.setdefault(name, []).extend(values)
        one = {name: values[0] for name, values in params.items()}
        command = one.get("command")
        return {
            "protocol": "osmp",
            "kind": command if command in ("check", "pay") else "other",
            "service": path[len(OSMP_PATH) + 1 :],
            "txn_id": one.get("txn_id"),
            "account": one.get("account"),
            "amount": _money(one.get("sum")) if command == "pay" else None,
            "txn_date": one.get("txn_date"),
        }
    if path.startswith(REST_PATH + "/"):
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        rest = path[len(REST_PATH) + 1 :].split("/")
        kind = {
            ("POST", "check"): "check",
            ("POST", "payments"): "pay",
        }.get((method, rest[0]) if len(rest) == 1 else ("", ""), "other")
        txn_id = data.get("txn_id")
        if rest[0] == "payments" and len(rest) >= 2:
            txn_id = rest[1]
            kind = "cancel" if len(rest) == 3 and rest[2] == "cancel" else "status"
        return {
            "protocol": "rest",
            "kind": kind,
            "service": data.get("service"),
            "txn_id": None if txn_id is None else str(txn_id),
            "account": data.get("account"),
            "amount": _money(data.get("amount")) if kind == "pay" else None,
            "txn_date": data.get("txn_date"),
        }
    return {"protocol": "other", "kind": "other"}


@dataclass
class Recorder:
    """Every exchange through the proxy, in order of arrival; shared by its threads."""

    upstream: str
    lose_answers: bool = False
    patience: float = 600
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, exchange: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            exchange["n"] = len(self.exchanges)
            self.exchanges.append(exchange)
        return exchange

    def lose(self, exchange: dict[str, Any]) -> bool:
        """With --lose-answers: drop the answer to a pay accepted at its txn_id's first
        attempt (Tolom has accepted it; the client must find out by resending the same
        txn_id, and gets the same receipt)."""
        if not (self.lose_answers and exchange["kind"] == "pay" and _class(exchange) == OK):
            return False
        key = _txn_key(exchange.get("txn_id"))
        with self.lock:
            return not any(
                e["n"] < exchange["n"]
                and e.get("kind") == "pay"
                and _txn_key(e.get("txn_id")) == key
                for e in self.exchanges
            )


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the report says what matters."""

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            exchange = recorder.begin(
                {"at": time.time(), "method": self.command, "path": self.path}
                | describe(self.command, self.path, body)
            )
            request = urllib.request.Request(  # noqa: S310 - base_url() checked the scheme
                recorder.upstream + self.path, data=body or None, method=self.command
            )
            for name, value in self.headers.items():
                if name.lower() not in _HOP:
                    request.add_header(name, value)
            status, data, error, headers = self._upstream(request)
            exchange["done"] = time.time()
            exchange["status"] = status
            answer = (read_osmp if exchange["protocol"] == "osmp" else read_rest)(status or 0, data)
            exchange["result"] = answer.result
            exchange["problem"] = answer.problem
            exchange["receipt"] = answer.receipt
            if status is None:
                status, data = 502, f"conformance kit: no answer from Tolom: {error}".encode()
                exchange["upstream_error"] = error
            if self._client_gone():
                exchange.update(client_gave_up=True, delivered=False)
                self.close_connection = True
                return
            if recorder.lose(exchange):
                exchange.update(lost_by_kit=True, delivered=False)
                self.close_connection = True  # the client sees the connection drop
                return
            try:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                exchange["delivered"] = True
            except OSError:
                exchange.update(client_gave_up=True, delivered=False)
                self.close_connection = True

        def _upstream(
            self, request: urllib.request.Request
        ) -> tuple[int | None, bytes, str, list[tuple[str, str]]]:
            try:
                with urllib.request.urlopen(request, timeout=recorder.patience) as response:  # noqa: S310
                    return response.status, response.read(), "", list(response.headers.items())
            except urllib.error.HTTPError as error:
                return error.code, error.read(), "", list(error.headers.items())
            except (urllib.error.URLError, OSError) as error:
                return None, b"", str(getattr(error, "reason", error)), []

        def _client_gone(self) -> bool:
            """The client closed its side while Tolom was answering (its timeout)."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward  # noqa: N815

    return Forward


def run_proxy(args: argparse.Namespace) -> int:
    recorder = Recorder(base_url(), args.lose_answers, args.patience)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(recorder))
    server.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    port = server.server_address[1]
    print(f"listening on http://127.0.0.1:{port}, forwarding to {recorder.upstream}", flush=True)
    print(todo(f"http://127.0.0.1:{port}", args.guides), flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    with recorder.lock:
        exchanges = list(recorder.exchanges)
    if args.record:
        Path(args.record).write_text(json.dumps(exchanges, ensure_ascii=False, indent=1))
    return print_report(exchanges, zone_named(args.timezone))


def todo(url: str, guides: Path) -> str:
    """What to make the client do through the proxy, from the OSMP guide's table."""
    try:
        rows = guide_rows("osmp", guides)
    except SystemExit:
        return f"Point your client at {url} and pay each account of the guide's sandbox table."

    def named(found: list[Row]) -> str:
        return ", ".join(f"{r.service} {r.account}" for r in found) or "(none in the guide)"

    ok = [r for r in rows if r.pays == ((0, None),) and not r.slow_seconds]
    interim = [r for r in rows if len(r.pays) > 1]
    slow = [r for r in rows if r.slow_seconds]
    refusing = [r for r in rows if r.pays[-1] != (0, None)]
    delays = ", ".join(f"{r.slow_seconds} s" for r in slow)
    return "\n".join(
        [
            f"Point your client at {url} (same agent, same credentials) and make it, in turn:",
            f"  - check and pay {named(ok)} (with --lose-answers the kit drops Tolom's answer",
            "    to a pay accepted at its first attempt, as a lost connection would)",
            f"  - pay {named(interim)}: they answer {' / '.join(str(r.pays[0][0]) for r in interim)} first",
            f"  - pay {named(slow)} with a client timeout shorter than its delay ({delays})",
            f"  - pay {named(refusing)}: final refusals",
            "Then stop the proxy (Ctrl-C, or SIGTERM) for the report.",
        ]
    )


# --- the checklist ----------------------------------------------------------------------------


@dataclass
class Item:
    """One checklist item of the guides and what the recording shows about it."""

    name: str
    rule: str
    how: str  # how to exercise it, said when it was not
    failures: list[str] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "FAIL" if self.failures else "PASS" if self.passes else "NOT TRIED"


def _class(e: dict[str, Any]) -> str:
    """OK, AGAIN (resend the same txn_id), FINAL (stop) or AUTH (fix, then resend)."""
    status = e.get("status")
    if status is None or e.get("upstream_error"):
        return AGAIN
    if e["protocol"] == "osmp":
        result = e.get("result")
        if result is None or result in OSMP_AGAIN:
            return AGAIN
        return OK if result == 0 else AUTH if result == OSMP_AUTH else FINAL
    if status == 200:
        return OK
    if status in REST_AGAIN or status >= 500:
        return AGAIN
    if status in (401, 429) or e.get("problem") in REST_AUTH_PROBLEMS:
        return AUTH
    return FINAL


def _data(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e.get("service"), e.get("account"), e.get("amount"))


def _answer(e: dict[str, Any]) -> str:
    if not e.get("delivered", True):
        return "no answer (lost by the kit)" if e.get("lost_by_kit") else "no answer (timeout)"
    if e["protocol"] == "osmp" and e.get("result") is not None:
        return str(e["result"])
    return " ".join(str(x) for x in (e.get("status"), e.get("problem")) if x is not None)


def _follow_up(pays: list[dict[str, Any]], first: dict[str, Any], why: str) -> str | None:
    """After `first` got no final answer: the same txn_id must come again with the same
    data until one, and no new txn_id may carry the same payment meanwhile. None: it did."""
    key = _txn_key(first["txn_id"])
    later = [p for p in pays if p["n"] > first["n"] and _txn_key(p["txn_id"]) == key]
    final = next((p for p in later if p.get("delivered") and _class(p) in (OK, FINAL)), None)
    end = final["n"] if final else len(pays) + 10**9
    twins = [
        p
        for p in pays
        if first["n"] < p["n"] < end and _txn_key(p["txn_id"]) != key and _data(p) == _data(first)
    ]
    if twins:
        return (
            f"txn_id {first['txn_id']}: after {why} the same payment was sent with a new "
            f"txn_id {twins[0]['txn_id']} (a double payment if both are accepted)"
        )
    if not later:
        return f"txn_id {first['txn_id']}: never resent after {why}"
    changed = [p for p in later if _data(p) != _data(first)]
    if changed:
        return f"txn_id {first['txn_id']}: resent after {why} with other data {_data(changed[0])}"
    if final is None:
        return f"txn_id {first['txn_id']}: resending stopped before a final answer"
    return None


def evaluate(exchanges: list[dict[str, Any]], zone: tzinfo) -> list[Item]:
    """The checklist, judged on a recording."""
    pays = sorted(
        (e for e in exchanges if e.get("kind") == "pay" and e.get("txn_id") and "done" in e),
        key=lambda e: e["n"],
    )
    checks = [e for e in exchanges if e.get("kind") == "check"]
    items = {
        i.name: i
        for i in (
            Item(
                "retry-result-1",
                "after result 1 (REST: 503) resend the same txn_id with the same data",
                "pay the account that answers 1 (REST: 503) first",
            ),
            Item(
                "retry-result-90",
                "after result 90 (REST: 202) resend the same txn_id with the same data",
                "pay the account that answers 90 (REST: 202) first, if the guide lists one",
            ),
            Item(
                "resend-after-timeout",
                "after a timeout resend the same txn_id with the same data",
                "pay the slow account with a client timeout shorter than its delay",
            ),
            Item(
                "resend-after-lost-answer",
                "after a lost connection resend the same txn_id; the receipt is the first one",
                "run the proxy with --lose-answers and pay an account that answers 0",
            ),
            Item(
                "stop-on-refusal",
                "never resend a txn_id refused with a final answer (4, 5, 7, 79, 241, 242, 300; REST 4xx)",
                "pay the accounts that refuse (5, 7, 79, 241, 242, 300)",
            ),
            Item(
                "one-txn-id-one-payment",
                "never use one txn_id for two different payments",
                "make any pay",
            ),
            Item(
                "check-before-pay",
                "check the account before paying it (to show the name or the invoice amount)",
                "make any pay",
            ),
            Item(
                "txn-date",
                "txn_date: OSMP YYYYMMDDHHMMSS in your local time, REST ISO 8601 with an "
                "offset; the moment of the payment",
                "make any pay",
            ),
        )
    }
    for e in pays:
        cls, answer = _class(e), _answer(e)
        name = None
        if e.get("lost_by_kit"):
            name, why = "resend-after-lost-answer", "a lost answer"
        elif not e.get("delivered", True):
            name, why = "resend-after-timeout", "a timeout"
        elif cls == AGAIN:
            ninety = e.get("result") == 90 or e.get("status") == 202
            name = "retry-result-90" if ninety else "retry-result-1"
            why = f"answer {answer}"
        if name is not None:
            failure = _follow_up(pays, e, why)
            item = items[name]
            if failure:
                item.failures.append(failure)
            else:
                item.passes.append(f"txn_id {e['txn_id']}: {_history(pays, e)}")
            if name == "resend-after-lost-answer" and not failure:
                final = _final(pays, e)
                if final is not None and final.get("receipt") != e.get("receipt"):
                    item.failures.append(f"txn_id {e['txn_id']}: receipt changed")
        if e.get("delivered", True) and cls == FINAL:
            again = [
                p
                for p in pays
                if p["n"] > e["n"] and _txn_key(p["txn_id"]) == _txn_key(e["txn_id"])
            ]
            item = items["stop-on-refusal"]
            if again:
                item.failures.append(
                    f"txn_id {e['txn_id']}: sent again after the final answer {answer}"
                )
            else:
                item.passes.append(f"txn_id {e['txn_id']}: stopped after {answer}")
    by_key: dict[str | None, list[dict[str, Any]]] = {}
    for e in pays:
        by_key.setdefault(_txn_key(e["txn_id"]), []).append(e)
    for key, group in by_key.items():
        first = group[0]
        datas = {_data(p) for p in group}
        if len(datas) > 1:
            items["one-txn-id-one-payment"].failures.append(
                f"txn_id {key}: {len(datas)} different payments {sorted(map(str, datas))}"
            )
        else:
            items["one-txn-id-one-payment"].passes.append(f"txn_id {key}")
        checked = any(
            c["n"] < first["n"] and (c.get("service"), c.get("account")) == _data(first)[:2]
            for c in checks
        )
        item = items["check-before-pay"]
        (item.passes if checked else item.failures).append(
            f"txn_id {key}: {'checked' if checked else 'no check of'} {first.get('account')} first"
        )
        problem = _date_problem(first, zone)
        item = items["txn-date"]
        (item.failures if problem else item.passes).append(
            f"txn_id {key}: {first.get('txn_date')!r}{' ' + problem if problem else ''}"
        )
    return list(items.values())


def _final(pays: list[dict[str, Any]], e: dict[str, Any]) -> dict[str, Any] | None:
    key = _txn_key(e["txn_id"])
    return next(
        (
            p
            for p in pays
            if p["n"] > e["n"]
            and _txn_key(p["txn_id"]) == key
            and p.get("delivered")
            and _class(p) in (OK, FINAL)
        ),
        None,
    )


def _history(pays: list[dict[str, Any]], e: dict[str, Any]) -> str:
    key = _txn_key(e["txn_id"])
    return ", ".join(_answer(p) for p in pays if _txn_key(p["txn_id"]) == key)


def _date_problem(e: dict[str, Any], zone: tzinfo) -> str | None:
    """What is wrong with the first pay's txn_date, judged at the moment it arrived."""
    raw = e.get("txn_date") or ""
    arrived = datetime.fromtimestamp(e["at"], UTC)
    if e["protocol"] == "osmp":
        if not re.fullmatch(r"\d{14}", raw):
            return "is not YYYYMMDDHHMMSS"
        try:
            when = datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=zone)
        except ValueError:
            return "is not a real date and time"
    else:
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return "is not ISO 8601"
        if when.tzinfo is None:
            return "has no offset (+06:00 or Z)"
    ahead = (when - arrived).total_seconds()
    if ahead > 300:
        return f"is {ahead / 60:.0f} min ahead of the clock (result 300 / 422)"
    if ahead < -1800:
        hint = " (UTC instead of local time?)" if abs(ahead + 6 * 3600) < 1800 else ""
        return f"is {-ahead / 3600:.1f} h behind the moment it was sent{hint}"
    return None


def print_report(
    exchanges: list[dict[str, Any]], zone: tzinfo, out: Callable[[str], None] = print
) -> int:
    kinds = [e.get("kind") for e in exchanges]
    out(
        f"\nRecorded {len(exchanges)} request(s): {kinds.count('check')} check, "
        f"{kinds.count('pay')} pay, {len(exchanges) - kinds.count('check') - kinds.count('pay')} other."
    )
    items = evaluate(exchanges, zone)
    for item in items:
        out(f"{item.verdict:9}  {item.name}: {item.rule}")
        for line in item.failures[:10]:
            out(f"           - {line}")
        if item.verdict == "NOT TRIED":
            out(f"           - to try it: {item.how}")
    failed = [i.name for i in items if i.failures]
    out(f"FAILED: {', '.join(failed)}" if failed else "No item failed.")
    return 1 if failed else 0


def run_report(args: argparse.Namespace) -> int:
    exchanges = json.loads(Path(args.file).read_text(encoding="utf-8"))
    return print_report(exchanges, zone_named(args.timezone))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timezone", default="Asia/Bishkek", help="your agent's zone (txn_date)")
    parser.add_argument("--guides", type=Path, default=GUIDES, help="the folder with the guides")
    modes = parser.add_subparsers(dest="mode", required=True)
    scenarios = modes.add_parser("scenarios", help="check the sandbox's documented answers")
    scenarios.add_argument("--protocol", choices=["osmp", "rest", "both"], default="both")
    scenarios.add_argument(
        "--timeout", type=float, default=30, help="client timeout for the slow account"
    )
    scenarios.add_argument(
        "--patience", type=float, default=120, help="wait this long after a timeout"
    )
    scenarios.add_argument("--skip-slow", action="store_true", help="leave out the slow account")
    proxy = modes.add_parser("proxy", help="record your client and check it")
    proxy.add_argument("--port", type=int, default=8765, help="0: any free port")
    proxy.add_argument(
        "--lose-answers", action="store_true", help="drop the answer to a pay accepted at once"
    )
    proxy.add_argument("--record", help="save the recording to this JSON file")
    proxy.add_argument("--patience", type=float, default=600, help="how long to wait for Tolom")
    report = modes.add_parser("report", help="the report of a saved recording")
    report.add_argument("file")
    args = parser.parse_args(argv)
    run = {"scenarios": run_scenarios, "proxy": run_proxy, "report": run_report}[args.mode]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
