"""The integrators' conformance kit (docs/examples/tolom_conformance.py) in proxy mode, in
front of a real `tolom serve` with a sandbox agent: a well-behaved client passes every
checklist item it exercises; a badly behaved one (a new txn_id after result 1, a refusal
resent, no check, txn_date in UTC) is named item by item. The kit's scenario mode runs in
test_docs_examples.py (it plays the guides' tables)."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from tests.factories import REPO, new_txn_id
from tests.system.test_concurrency import live_server  # noqa: F401 - the fixture
from tolom.agents import service as agents

KIT = REPO / "docs" / "examples" / "tolom_conformance.py"
REST_CLIENT = REPO / "docs" / "examples" / "tolom_rest_client.py"
SLOW_SECONDS = 2  # the slow magic account's delay in these tests (35 s live)
BISHKEK = ZoneInfo("Asia/Bishkek")


def load_kit() -> ModuleType:
    """The kit as a module, for its table reader (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("tolom_conformance", KIT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sandbox_server(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """`tolom serve` on the test database with the slow account answering after 2 s."""
    monkeypatch.setenv("TOLOM_SANDBOX_SLOW_SECONDS", str(SLOW_SECONDS))
    base: str = request.getfixturevalue("live_server")
    return base


def sandbox_agent(engine: Engine, code: str) -> dict[str, str]:
    """A sandbox agent allowed from loopback; the kit's environment for it."""
    with engine.begin() as conn:
        secret = agents.create(
            conn,
            code=code,
            name="Песочница",
            networks=["127.0.0.0/8"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )
    return {
        "TOLOM_AGENT": code,
        "TOLOM_SECRET": secret,
        "TOLOM_SIGNING_KEY": agents.signing_key_for(secret),
    }


# --- the proxy ---------------------------------------------------------------------------


@contextmanager
def proxy(upstream: str, tmp_path: Path, *options: str) -> Iterator[dict[str, object]]:
    """The kit's proxy as its own process; on leaving, stopped with SIGINT like Ctrl-C, and
    its report (stdout), exit status and recording put in the yielded dict."""
    record = tmp_path / "record.json"
    process = subprocess.Popen(
        [sys.executable, str(KIT), "proxy", "--port", "0", "--record", str(record), *options],
        env={**os.environ, "TOLOM_URL": upstream},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("listening on http://127.0.0.1:"), first + process.stderr.read()  # type: ignore[union-attr]
    url = first.split()[2].rstrip(",")
    found: dict[str, object] = {"url": url}
    try:
        yield found
    finally:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        found.update(report=out, stderr=err, status=process.returncode)
        if record.exists():
            found["record"] = json.loads(record.read_text())


def verdicts(report: str) -> dict[str, str]:
    """{item: PASS | FAIL | NOT TRIED} from the kit's report."""
    found = {}
    for line in report.splitlines():
        for verdict in ("PASS", "FAIL", "NOT TRIED"):
            if line.startswith(verdict + " "):
                found[line[len(verdict) :].strip().split(":")[0]] = verdict
    return found


class OsmpClient:
    """A tiny OSMP agent client; `polite` decides whether it follows the guide's rules."""

    def __init__(self, url: str, env: dict[str, str], *, polite: bool) -> None:
        self.url = url
        self.auth = base64.b64encode(f"{env['TOLOM_AGENT']}:{env['TOLOM_SECRET']}".encode())
        self.polite = polite

    def send(self, service: str, timeout: float = 10, **params: str) -> int | None:
        """One request; the result code, or None when no answer came."""
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}/gateway/osmp/{service}?{query}")
        request.add_header("Authorization", "Basic " + self.auth.decode())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        return int(body.split("<result>")[1].split("<")[0])

    def pay(self, service: str, account: str, amount: str, *, timeout: float = 10) -> int | None:
        """Check, then pay until a final answer: the same txn_id and data every time (the
        rude client: no check, UTC dates, a new txn_id after result 1, a refusal resent)."""
        if self.polite:
            self.send(service, command="check", txn_id=new_txn_id(), account=account)
        zone = BISHKEK if self.polite else UTC
        txn_id = new_txn_id()
        when = datetime.now(zone).strftime("%Y%m%d%H%M%S")
        result = None
        for attempt in range(4):
            result = self.send(
                service,
                timeout=timeout if attempt == 0 else 10,
                command="pay",
                txn_id=txn_id,
                txn_date=when,
                account=account,
                sum=amount,
            )
            if result not in (None, 1, 90):
                if self.polite or result == 0:
                    return result
            elif not self.polite:
                txn_id = new_txn_id()  # wrong: this may pay twice
            time.sleep(0.1)
        return result


def test_a_well_behaved_osmp_client_passes(
    sandbox_server: str, engine: Engine, tmp_path: Path
) -> None:
    env = sandbox_agent(engine, "kitgood")
    pending = [r.account for r in load_kit().guide_rows("osmp") if r.pays[0] == (90, None)]
    with proxy(sandbox_server, tmp_path, "--lose-answers") as run:
        client = OsmpClient(str(run["url"]), env, polite=True)
        assert client.pay("sochi", "99999000000000", "500.00") == 0  # its answer lost once
        assert client.pay("sochi", "99999000000001", "500.00") == 0  # 1, 1, then 0
        for account in pending:
            assert client.pay("sochi", account, "500.00") == 0
        assert client.pay("sochi", "99999000000999", "500.00", timeout=SLOW_SECONDS / 2) == 0
        assert client.pay("sochi", "99999000000005", "500.00") == 5
        assert client.pay("sochi", "99999000000241", "500.00") == 241
        assert client.pay("eds", "9999900000000005", "1500.00") == 0
    found = verdicts(str(run["report"]))
    assert run["status"] == 0, run["report"]
    assert found == {
        "retry-result-1": "PASS",
        "retry-result-90": "PASS" if pending else "NOT TRIED",
        "resend-after-timeout": "PASS",
        "resend-after-lost-answer": "PASS",
        "stop-on-refusal": "PASS",
        "one-txn-id-one-payment": "PASS",
        "check-before-pay": "PASS",
        "txn-date": "PASS",
    }, run["report"]
    # The recording says what happened: the lost answer and the timeout, each resent.
    record = run["record"]
    assert isinstance(record, list)
    # (the pays accepted at their first attempt).
    lost = [e["account"] for e in record if e.get("lost_by_kit")]
    assert lost == ["99999000000000", "9999900000000005"]
    assert [e["account"] for e in record if e.get("client_gave_up")] == ["99999000000999"]


def test_a_badly_behaved_osmp_client_is_named_item_by_item(
    sandbox_server: str, engine: Engine, tmp_path: Path
) -> None:
    env = sandbox_agent(engine, "kitbad")
    with proxy(sandbox_server, tmp_path) as run:
        client = OsmpClient(str(run["url"]), env, polite=False)
        assert client.pay("sochi", "99999000000001", "500.00") == 1  # never gets past 1
        assert client.pay("sochi", "99999000000005", "500.00") == 5  # resent 4 times
    report = str(run["report"])
    assert run["status"] == 1, report
    found = verdicts(report)
    assert {name for name, verdict in found.items() if verdict == "FAIL"} == {
        "retry-result-1",
        "stop-on-refusal",
        "check-before-pay",
        "txn-date",
    }, report
    assert found["one-txn-id-one-payment"] == "PASS"
    assert found["resend-after-timeout"] == "NOT TRIED"
    assert "the same payment was sent with a new txn_id" in report
    assert "sent again after the final answer 5" in report
    assert "(UTC instead of local time?)" in report
    assert "FAILED: retry-result-1, stop-on-refusal, check-before-pay, txn-date" in report
    # The saved recording gives the same report again.
    again = subprocess.run(
        [sys.executable, str(KIT), "report", str(tmp_path / "record.json")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert again.returncode == 1
    assert again.stdout.strip() == report[report.index("Recorded") :].strip()


def _rest_example(url: str, env: dict[str, str], *args: str) -> int:
    """docs/examples/tolom_rest_client.py, unchanged, pointed at the proxy; its status."""
    done = subprocess.run(
        [sys.executable, str(REST_CLIENT), *args],
        env={**os.environ, **env, "TOLOM_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(done.stdout.partition("\n")[0])


def test_the_guides_rest_example_used_as_documented_passes(
    sandbox_server: str, engine: Engine, tmp_path: Path
) -> None:
    """The guide's REST client, repeated on 503 as its docstring says, passes the items it
    exercises; the kit recognises REST's retry and refusal answers."""
    env = sandbox_agent(engine, "kitrest")
    with proxy(sandbox_server, tmp_path) as run:
        url = str(run["url"])
        for account, final in (("99999000000001", 200), ("99999000000242", 422)):
            assert _rest_example(url, env, "check", "sochi", account) == 200
            txn_id = new_txn_id()
            statuses = [_rest_example(url, env, "pay", "sochi", account, "500.00", txn_id)]
            while statuses[-1] == 503:
                statuses.append(_rest_example(url, env, "pay", "sochi", account, "500.00", txn_id))
            assert statuses[-1] == final, statuses
    found = verdicts(str(run["report"]))
    assert run["status"] == 0, run["report"]
    assert {name for name, verdict in found.items() if verdict == "PASS"} == {
        "retry-result-1",
        "stop-on-refusal",
        "one-txn-id-one-payment",
        "check-before-pay",
        "txn-date",
    }, run["report"]
