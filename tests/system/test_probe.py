"""`tolom probe` and the worker's probe against a real `tolom serve`: a sandbox agent pays
and cancels through both gateways over HTTP; a broken path is reported with its step and
reason and a non-zero exit; a real agent is refused before any request; nothing real is
written; the worker's heartbeat and the probe's results reach any server's /metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from tests.factories import Cli, add_agent
from tests.system.test_concurrency import live_server  # noqa: F401 - the fixture
from tolom.agents import service as agents
from tolom.db.schema import (
    gateway_requests,
    journal_entries,
    payments,
    probe_results,
    sandbox_payments,
    worker_heartbeats,
)


def _sandbox_agent(engine: Engine, code: str = "probe") -> None:
    with engine.begin() as conn:
        agents.create(
            conn,
            code=code,
            name="Проверка",
            networks=["127.0.0.0/8"],
            service_codes=["sochi", "eds"],
            sandbox=True,
        )


def _count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _real_figures(engine: Engine) -> tuple[int, int]:
    return _count(engine, payments), _count(engine, journal_entries)


def _wait(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_probe_pays_and_cancels_through_both_gateways(
    live_server: str,  # noqa: F811
    engine: Engine,
    cli: Cli,
) -> None:
    _sandbox_agent(engine)
    before = _real_figures(engine)
    done = cli("probe", "--agent", "probe", "--base-url", live_server, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["ok"] is True and report["agent"] == "probe"
    by_gateway = {g["gateway"]: g for g in report["gateways"]}
    assert set(by_gateway) == {"osmp", "rest"}
    steps = {
        gateway: [(s["step"], s["service"]) for s in found["steps"]]
        for gateway, found in by_gateway.items()
    }
    osmp_steps = ["check", "pay", "repeat", "cancel"]
    assert steps["osmp"] == [(s, v) for v in ("sochi", "eds") for s in osmp_steps]
    rest_steps = ["check", "pay", "status", "cancel"]
    assert steps["rest"] == [(s, v) for v in ("sochi", "eds") for s in rest_steps]
    for found in by_gateway.values():
        assert found["ok"] and found["failed_step"] is None and found["reason"] is None
        assert all(s["ok"] and s["ms"] >= 0 for s in found["steps"])
        assert found["ms"] >= max(s["ms"] for s in found["steps"])
    # Four sandbox pays (two per gateway), each cancelled, under fresh txn_ids; nothing real.
    with engine.connect() as conn:
        rows = conn.execute(select(sandbox_payments)).all()
    assert len(rows) == 4 and len({r.txn_id for r in rows}) == 4
    assert all(r.cancelled_at is not None for r in rows)
    assert {(r.service, r.account, r.amount) for r in rows} == {
        ("sochi", "99999000000000", 150_000),
        ("eds", "9999900000000005", 150_000),
    }
    assert _real_figures(engine) == before

    again = cli("probe", "--agent", "probe", "--base-url", live_server)  # the human form
    assert again.exit_code == 0, again.output
    assert "OSMP: работает" in again.output and "REST: работает" in again.output
    assert "pay eds" in again.output and "Все пути работают" in again.output
    assert _count(engine, sandbox_payments) == 8  # fresh txn_ids each run


def test_a_broken_path_says_where_and_why_and_exits_non_zero(
    live_server: str,  # noqa: F811
    engine: Engine,
    cli: Cli,
) -> None:
    _sandbox_agent(engine)
    wrong = cli("probe", "--agent", "probe", "--base-url", live_server, "--secret", "x", "--json")
    assert wrong.exit_code == 1, wrong.output
    report = json.loads(wrong.output)
    assert report["ok"] is False
    for found in report["gateways"]:
        assert not found["ok"] and found["failed_step"] == "check"
        assert found["reason"].startswith("HTTP 401")
        assert len(found["steps"]) == 1  # the path stops at its first failure
    assert "bad_signature" in report["gateways"][1]["reason"]

    with engine.begin() as conn:
        agents.set_enabled(conn, "probe", False)
    time.sleep(1.5)  # the servers' agent cache (TOLOM_AGENT_CACHE_SECONDS=1)
    disabled = cli("probe", "--agent", "probe", "--base-url", live_server)
    assert disabled.exit_code == 1
    assert "OSMP: НЕ РАБОТАЕТ" in disabled.output and "REST: НЕ РАБОТАЕТ" in disabled.output
    assert "ошибка на шаге check sochi: HTTP 403" in disabled.output
    assert "agent_disabled" in disabled.output

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with engine.begin() as conn:
        agents.set_enabled(conn, "probe", True)
    away = cli("probe", "--agent", "probe", "--base-url", nowhere, "--json")
    assert away.exit_code == 1
    reasons = [g["reason"] for g in json.loads(away.output)["gateways"]]
    assert all(r.startswith("сервер недоступен") for r in reasons), reasons
    assert _count(engine, sandbox_payments) == 0


def test_the_probe_refuses_a_real_agent_before_any_request(
    live_server: str,  # noqa: F811
    engine: Engine,
    cli: Cli,
) -> None:
    secret = add_agent(engine, "realone", networks=["127.0.0.0/8"])
    requests = _count(engine, gateway_requests)
    before = _real_figures(engine)
    refused = cli("probe", "--agent", "realone", "--secret", secret, "--base-url", live_server)
    assert refused.exit_code == 1
    assert "не тестовый" in refused.output
    unknown = cli("probe", "--agent", "nobody", "--base-url", live_server, "--json")
    assert unknown.exit_code == 1 and "nobody" in json.loads(unknown.output)["error"]
    assert cli("probe", "--base-url", live_server).exit_code == 1  # no agent configured
    assert _count(engine, gateway_requests) == requests  # not a single request was sent
    assert _real_figures(engine) == before


def _scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _series(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str):  # type: ignore[no-untyped-def]
    return {
        dict(labels).get("worker") or dict(labels).get("gateway"): value
        for (found, labels), value in samples.items()
        if found == name
    }


def test_a_standalone_worker_probes_and_beats_into_the_servers_metrics(
    live_server: str,  # noqa: F811
    engine: Engine,
    database_url: str,
) -> None:
    _sandbox_agent(engine)
    env = {
        **os.environ,
        "TOLOM_DATABASE_URL": database_url,
        "TOLOM_PROBE_INTERVAL_SECONDS": "1",
        "TOLOM_PROBE_AGENT": "probe",
        "TOLOM_PROBE_BASE_URL": live_server,
        "TOLOM_LOG_FORMAT": "json",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tolom", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    name = f"{socket.gethostname()}:{worker.pid}"
    try:
        seen: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

        def reported() -> bool:  # each server process caches its figures a few seconds
            samples = _scrape(live_server)
            seen.clear()
            seen.update(samples)
            probes = _series(samples, "tolom_probe_success")
            loops = _series(samples, "tolom_worker_last_loop_timestamp_seconds")
            return probes == {"osmp": 1.0, "rest": 1.0} and name in loops

        _wait(reported, 40, "the worker's heartbeat and probe in /metrics")
        samples = seen
        assert time.time() - _series(samples, "tolom_worker_last_loop_timestamp_seconds")[name] < 60
        durations = _series(samples, "tolom_probe_duration_seconds")
        assert set(durations) == {"osmp", "rest"} and all(d > 0 for d in durations.values())
        last_runs = _series(samples, "tolom_probe_last_run_timestamp_seconds")
        assert all(time.time() - t < 60 for t in last_runs.values())
        with engine.connect() as conn:
            recorded = conn.execute(select(probe_results)).all()
        assert {(r.gateway, r.ok, r.worker) for r in recorded} == {
            ("osmp", True, name),
            ("rest", True, name),
        }
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    lines = [json.loads(line) for line in errors.splitlines() if line.startswith("{")]
    probes = [line for line in lines if line["logger"] == "tolom.probe"]
    assert any(p["gateway"] == "osmp" and p["ok"] is True and "steps" in p for p in probes)
    assert all(line["level"] != "ERROR" for line in lines), errors
    # A worker that stops cleanly takes its heartbeat row with it.
    assert _count(engine, worker_heartbeats) == 0
    assert _count(engine, payments) == 0
