"""The synthetic check: a sandbox agent pays and cancels through each public gateway over
HTTP, as an agent's software does, and says per gateway whether the path works, which
step failed and why, and how long each step and the whole took.

`tolom probe` runs it once; `ProbeLoop` beside a delivery worker (`companions`) every
TOLOM_PROBE_INTERVAL_SECONDS and records the results for /metrics (`metrics.heartbeats`).
Only a sandbox agent may be used (`credentials` refuses any other): its answers come from
the magic accounts (`payments.sandbox`), so the probe never creates a real payment. The
gateways' answers do not say whether an agent is a sandbox one (on purpose), so that is
asked of the database the server uses.

The paths, with a fresh txn_id per pay:
- OSMP: check, pay, repeat (the same receipt number) for the top-up and the invoice
  account; OSMP has no cancel, so each pay is then cancelled over REST.
- REST: check, pay, status, cancel for both.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from tolom.agents import service as agents
from tolom.gateway import signing
from tolom.metrics import heartbeats
from tolom.settings import Settings
from tolom.texts import DEFAULT, N_, Refusal, text

if TYPE_CHECKING:  # httpx loads on first use: a server's start does not need it
    import httpx

log = logging.getLogger("tolom.probe")

GATEWAYS = ("osmp", "rest")
# The magic accounts that always answer OK (docs/agents-*.md "Sandbox").
SOCHI_ACCOUNT = "99999000000000"
EDS_ACCOUNT = "9999900000000005"
SOCHI_AMOUNT = "1500.00"
TIMEOUT_SECONDS = 10.0
CANCEL_REASON = "tolom probe"
ACCOUNTS = (("sochi", SOCHI_ACCOUNT), ("eds", EDS_ACCOUNT))

# Why a step failed: a catalogue key each, with the answer's details as `detail`.
UNREACHABLE = N_("probe.failure.unreachable")
TIMEOUT = N_("probe.failure.timeout")
HTTP_STATUS = N_("probe.failure.http")
RESULT = N_("probe.failure.result")
ANSWER = N_("probe.failure.answer")


class ProbeRefused(Refusal):
    """The probe cannot run as this agent (unknown, not a sandbox agent, no secret)."""


class StepFailed(Exception):
    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass(frozen=True, slots=True)
class Credentials:
    agent: str
    secret: str
    timezone: ZoneInfo

    @property
    def signing_key(self) -> bytes:
        return bytes.fromhex(agents.signing_key_for(self.secret))


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str  # check | pay | repeat | status | cancel
    service: str
    seconds: float
    failure: str | None = None  # a catalogue key (UNREACHABLE, …)
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def reason(self, language: str | None = DEFAULT) -> str | None:
        return None if self.failure is None else text(language, self.failure, **self.values)


@dataclass(frozen=True, slots=True)
class PathResult:
    """One gateway's path: its steps up to the first failure."""

    gateway: str
    steps: tuple[StepResult, ...]
    seconds: float

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and self.failed is None


@dataclass(frozen=True, slots=True)
class Report:
    base_url: str
    agent: str
    paths: tuple[PathResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.paths)

    def as_json(self, language: str | None = DEFAULT) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "base_url": self.base_url,
            "agent": self.agent,
            "ms": _ms(self.seconds),
            "gateways": [
                {
                    "gateway": path.gateway,
                    "ok": path.ok,
                    "ms": _ms(path.seconds),
                    "failed_step": None if path.failed is None else path.failed.step,
                    "reason": None if path.failed is None else path.failed.reason(language),
                    "steps": [
                        {
                            "step": s.step,
                            "service": s.service,
                            "ok": s.ok,
                            "ms": _ms(s.seconds),
                            "reason": s.reason(language),
                        }
                        for s in path.steps
                    ],
                }
                for path in self.paths
            ],
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# --- who the probe is ---------------------------------------------------------------------


def credentials(engine: Engine, code: str, secret: str | None = None) -> Credentials:
    """The sandbox agent `code` and its secret (`agents.service.sandbox_credentials`: never
    a real agent); ProbeRefused when the probe cannot speak as it."""
    if not code:
        raise ProbeRefused(N_("probe.error.no_agent"))
    with engine.connect() as conn:
        try:
            found = agents.sandbox_credentials(conn, code, secret)
        except agents.AgentError as refused:
            raise ProbeRefused(refused.key, **refused.values) from refused
    return Credentials(found.code, found.secret, ZoneInfo(found.timezone))


# --- the paths ----------------------------------------------------------------------------


def run(base_url: str, who: Credentials, *, timeout: float = TIMEOUT_SECONDS) -> Report:
    """Both gateways' paths against `base_url`, one after the other."""
    started = time.perf_counter()
    import httpx

    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout) as http:
        client = _Client(http, who)
        paths = (client.path("osmp", client.osmp_steps), client.path("rest", client.rest_steps))
    return Report(base_url, who.agent, paths, time.perf_counter() - started)


def _txn_id() -> str:
    """Fresh per pay: microseconds and a random pair of digits (18 digits)."""
    return f"{time.time_ns() // 1000}{secrets.randbelow(100):02d}"


T = TypeVar("T")


class _Steps:
    """A path's steps as they run: each timed, the first failure ends the path."""

    def __init__(self) -> None:
        self.done: list[StepResult] = []

    def run(self, name: str, service: str, action: Callable[[], T]) -> T:
        began = time.perf_counter()
        try:
            result = action()
        except StepFailed as error:
            took = time.perf_counter() - began
            self.done.append(StepResult(name, service, took, error.key, error.values))
            raise
        self.done.append(StepResult(name, service, time.perf_counter() - began))
        return result


class _Client:
    def __init__(self, http: httpx.Client, who: Credentials) -> None:
        self.http = http
        self.who = who

    def path(self, gateway: str, steps: Callable[[_Steps], None]) -> PathResult:
        started = time.perf_counter()
        done = _Steps()
        with suppress(StepFailed):  # recorded as the last step
            steps(done)
        return PathResult(gateway, tuple(done.done), time.perf_counter() - started)

    # --- OSMP ---

    def osmp_steps(self, steps: _Steps) -> None:
        for service, account in ACCOUNTS:
            txn_id = _txn_id()
            checked = steps.run(
                "check",
                service,
                partial(self._osmp, service, command="check", txn_id=txn_id, account=account),
            )
            amount = checked.get("amount") or SOCHI_AMOUNT  # an invoice asks its own amount
            pay = partial(self._osmp_pay, service, account, amount, txn_id)
            receipt = steps.run("pay", service, pay)
            steps.run("repeat", service, partial(_same, pay, "prv_txn", receipt))
            steps.run("cancel", service, partial(self._rest_cancel, txn_id))

    def _osmp_pay(self, service: str, account: str, amount: str, txn_id: str) -> str:
        """A pay; its receipt number (prv_txn)."""
        now = datetime.now(self.who.timezone).strftime("%Y%m%d%H%M%S")
        answer = self._osmp(
            service, command="pay", txn_id=txn_id, account=account, sum=amount, txn_date=now
        )
        if not answer.get("prv_txn"):
            raise StepFailed(ANSWER, detail="no prv_txn")
        return answer["prv_txn"]

    def _osmp(self, service: str, **params: str) -> dict[str, str]:
        """One OSMP request (POST, form-encoded, Basic auth): the answer's fields."""
        response = self._send(
            "POST",
            f"/gateway/osmp/{service}",
            data=params,
            auth=(self.who.agent, self.who.secret),
        )
        try:
            # Our own server's answer; expat resolves no external entities.
            root = ET.fromstring(response.content)  # noqa: S314
        except ET.ParseError as error:
            raise StepFailed(ANSWER, detail=f"HTTP {response.status_code}: not XML") from error
        fields = {child.tag: (child.text or "") for child in root}
        fields |= {f.get("name", ""): (f.text or "") for f in root.iter() if f.get("name")}
        comment = fields.get("comment", "")
        if response.status_code != 200:
            raise StepFailed(HTTP_STATUS, status=response.status_code, detail=comment)
        if fields.get("result") != "0":
            raise StepFailed(RESULT, result=fields.get("result", "?"), detail=comment)
        return fields

    # --- REST ---

    def rest_steps(self, steps: _Steps) -> None:
        for service, account in ACCOUNTS:
            txn_id = _txn_id()
            checked = steps.run(
                "check",
                service,
                partial(
                    self._rest,
                    "POST",
                    "/api/v1/agent/check",
                    {"service": service, "account": account},
                ),
            )
            paid = steps.run(
                "pay",
                service,
                partial(
                    self._rest,
                    "POST",
                    "/api/v1/agent/payments",
                    {
                        "txn_id": txn_id,
                        "txn_date": datetime.now(UTC).isoformat(timespec="seconds"),
                        "service": service,
                        "account": account,
                        "amount": checked.get("amount_due") or SOCHI_AMOUNT,
                    },
                    expect=("status", "accepted"),
                ),
            )
            steps.run(
                "status",
                service,
                partial(
                    self._rest,
                    "GET",
                    f"/api/v1/agent/payments/{txn_id}",
                    expect=("receipt", paid.get("receipt")),
                ),
            )
            steps.run("cancel", service, partial(self._rest_cancel, txn_id))

    def _rest_cancel(self, txn_id: str) -> None:
        target = f"/api/v1/agent/payments/{txn_id}/cancel"
        self._rest("POST", target, {"reason": CANCEL_REASON}, expect=("status", "reversed"))

    def _rest(
        self,
        method: str,
        target: str,
        body: dict[str, Any] | None = None,
        *,
        expect: tuple[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One signed REST request: the answer's JSON (with `expect`'s field and value), or
        StepFailed with its problem."""
        content = json.dumps(body, ensure_ascii=False).encode() if body else b""
        key = self.who.signing_key
        signed = signing.authorization(
            self.who.agent, key, method, target, int(time.time()), content
        )
        headers = {"Authorization": signed}
        if content:
            headers["Content-Type"] = "application/json"
        response = self._send(method, target, content=content, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise StepFailed(ANSWER, detail=f"HTTP {response.status_code}: not JSON")
        if response.status_code != 200:
            detail = " ".join(str(answer.get(k) or "") for k in ("code", "detail")).strip()
            raise StepFailed(HTTP_STATUS, status=response.status_code, detail=detail)
        if expect is not None:
            _same(lambda: answer.get(expect[0]), expect[0], expect[1])
        return answer

    def _send(self, method: str, target: str, **options: Any) -> httpx.Response:
        import httpx

        try:
            return self.http.request(method, target, **options)
        except httpx.TimeoutException as error:
            raise StepFailed(TIMEOUT, seconds=self.http.timeout.read) from error
        except httpx.HTTPError as error:
            raise StepFailed(UNREACHABLE, detail=f"{type(error).__name__}: {error}") from error


def _same(action: Callable[[], Any], name: str, wanted: Any) -> None:
    """Run `action`; StepFailed unless it gives `wanted` (`name` says what it is)."""
    got = action()
    if got != wanted:
        raise StepFailed(ANSWER, detail=f"{name} {got!r}, expected {wanted!r}")


# --- beside the worker --------------------------------------------------------------------


def run_and_record(settings: Settings, engine: Engine, worker: str) -> Report | None:
    """One probe as the worker runs it: logged, and recorded for /metrics; None if it
    could not start (then every gateway is recorded as failed at the step "agent")."""
    now = datetime.now(UTC)
    try:
        who = credentials(engine, settings.probe_agent)
    except ProbeRefused as error:
        log.error("probe cannot run: %s", error, extra={"agent": settings.probe_agent})
        failed = [
            heartbeats.ProbeResult(g, False, 0.0, "agent", str(error), now, worker)
            for g in GATEWAYS
        ]
        heartbeats.record_probe(engine, failed)
        return None
    report = run(settings.own_gateways_url, who)
    finished = datetime.now(UTC)
    results = []
    for path in report.paths:
        failed_step = path.failed
        reason = None if failed_step is None else failed_step.reason()
        extra = {
            "gateway": path.gateway,
            "ok": path.ok,
            "ms": _ms(path.seconds),
            "steps": {f"{s.step} {s.service}": _ms(s.seconds) for s in path.steps},
        }
        if failed_step is None:
            log.info("probe through %s ok", path.gateway, extra=extra)
        else:
            where = f"{failed_step.step} {failed_step.service}"
            log.warning(
                "probe through %s failed at %s: %s",
                path.gateway,
                where,
                reason,
                extra=extra | {"failed_step": where, "reason": reason},
            )
        results.append(
            heartbeats.ProbeResult(
                path.gateway,
                path.ok,
                path.seconds,
                None if failed_step is None else failed_step.step,
                reason,
                finished,
                worker,
            )
        )
    heartbeats.record_probe(engine, results)
    return report


class ProbeLoop(threading.Thread):
    """The probe every TOLOM_PROBE_INTERVAL_SECONDS until `stop`; a failure to run or to
    record is logged and the loop goes on."""

    def __init__(self, settings: Settings, engine: Engine, stop: threading.Event) -> None:
        super().__init__(name="tolom-probe", daemon=True)
        self.settings = settings
        self.engine = engine
        self.stop = stop
        self.worker = heartbeats.worker_name()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                run_and_record(self.settings, self.engine, self.worker)
            except Exception:
                log.exception("probe failed to run or to record its result")
            if self.stop.wait(self.settings.probe_interval_seconds):
                break
