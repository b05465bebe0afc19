"""/metrics, /ready and the deploy/ monitoring files: counters move with real gateway
requests, readiness tells a missing database and old migrations apart, the alert rules and
the dashboard use only names Tolom exports, and `tolom serve --workers 2` adds both
workers' requests up. See docs/operations.md "Metrics and health"."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.factories import Gateway, add_customer, new_txn_id
from tests.system.test_serve_process import HOST, Database, _wait, _workers, serving
from tests.system.test_serve_process import database as database  # the fixture
from tolom.app import create_app
from tolom.runtime import Runtime
from tolom.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HISTOGRAM = "tolom_gateway_request_duration_seconds"


def scrape(
    client: TestClient | httpx.Client,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics answer: (name, labels) → value."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- the gateway's counters ------------------------------------------------------------------


def test_osmp_check_and_pay_move_the_counters_with_their_labels(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    before = scrape(gateway.client)
    assert gateway.check("sochi", inn)["result"] == 0
    assert gateway.check("sochi", "01904202310427")["result"] == 5
    txn_id = new_txn_id()
    assert gateway.pay("sochi", inn, "150.50", txn_id=txn_id)["result"] == 0
    assert gateway.pay("sochi", inn, "150.50", txn_id=txn_id)["result"] == 0  # a repeat
    after = scrape(gateway.client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    osmp = {"protocol": "osmp", "service": "sochi"}
    assert moved(f"{HISTOGRAM}_count", **osmp, command="check", result="0") == 1
    assert moved(f"{HISTOGRAM}_count", **osmp, command="check", result="5") == 1
    assert moved(f"{HISTOGRAM}_count", **osmp, command="pay", result="0") == 2
    assert moved(f"{HISTOGRAM}_bucket", **osmp, command="pay", result="0", le="+Inf") == 2
    assert moved(f"{HISTOGRAM}_sum", **osmp, command="pay", result="0") > 0
    # the repeat is answered 0 but is no new payment
    assert moved("tolom_pays_accepted_total", service="sochi") == 1
    assert moved("tolom_pays_accepted_tyiyn_total", service="sochi") == 15050
    # no label carries an account or a txn_id
    for name, labels in after:
        assert not any(inn in v or txn_id in v for _, v in labels), (name, labels)


def test_unauthenticated_requests_are_counted_under_result_8(gateway: Gateway) -> None:
    before = scrape(gateway.client)
    response = gateway.client.get("/gateway/osmp/eds", params={"command": "check"})
    assert response.status_code == 401
    after = scrape(gateway.client)
    labels = {"protocol": "osmp", "service": "eds", "command": "check", "result": "8"}
    assert (
        value(after, f"{HISTOGRAM}_count", **labels) - value(before, f"{HISTOGRAM}_count", **labels)
        == 1
    )


def test_scrape_time_gauges_and_the_pool(gateway: Gateway, engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM deliveries"))
    samples = scrape(gateway.client)
    assert value(samples, "tolom_database_up") == 1
    assert value(samples, "tolom_ready") == 1
    assert value(samples, "tolom_outbox_lag_seconds") == 0
    assert value(samples, "tolom_outbox_dead_letters") == 0
    assert value(samples, "tolom_reconciliation_days_overdue") == 0
    assert value(samples, "tolom_db_pool_connections_max") >= 1
    assert ("tolom_db_pool_connections_in_use", frozenset()) in samples


def test_metrics_only_for_allowed_addresses(runtime: Runtime) -> None:
    stranger = TestClient(create_app(runtime=runtime), client=("203.0.113.9", 40000))
    assert stranger.get("/metrics").status_code == 403
    allowed = runtime.settings.model_copy(
        update={"metrics_allowed_networks": [ipaddress.ip_network("203.0.113.0/24")]}
    )
    opened = TestClient(
        create_app(runtime=Runtime.on(allowed, runtime.engine)), client=("203.0.113.9", 40000)
    )
    assert opened.get("/metrics").status_code == 200


# --- /ready -------------------------------------------------------------------------------


def test_ready_when_migrated(gateway: Gateway) -> None:
    response = gateway.client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["migrations"] == "current"
    assert body["revision"] == body["expected_revision"]


def test_not_ready_when_migrations_are_behind(gateway: Gateway, engine) -> None:
    with engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        response = gateway.client.get("/ready")
    finally:  # the PostgreSQL schema outlives this test: later ones migrate it up and down
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert response.status_code == 503
    body = response.json()
    assert body == {
        "status": "unavailable",
        "database": "ok",
        "migrations": "behind",
        "revision": ["0001"],
        "expected_revision": body["expected_revision"],
        "version": body["version"],
    }
    assert body["expected_revision"] != ["0001"]


def test_not_ready_when_the_database_is_unreachable(settings: Settings, tmp_path: Path) -> None:
    away = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'db.sqlite3'}")
    client = TestClient(create_app(runtime=Runtime.on(settings, away)), client=("127.0.0.1", 1))
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
    assert response.json()["migrations"] == "unknown"
    samples = scrape(client)  # /metrics still answers, saying so
    assert value(samples, "tolom_database_up") == 0
    assert value(samples, "tolom_ready") == 0


# --- deploy/: alert rules and dashboard ------------------------------------------------------

_NAME = re.compile(r"\btolom_[a-z0-9_]+")


def test_alert_rules_and_dashboard_use_only_exported_names(gateway: Gateway, engine) -> None:
    inn = add_customer(engine)
    gateway.pay("sochi", inn, "10.00", txn_id=new_txn_id())  # every labelled family appears
    from tolom import metrics
    from tolom.metrics import heartbeats

    metrics.database_unavailable("gateway")
    now = datetime.now(UTC)  # a worker's heartbeat and a probe's result, as they write them
    heartbeats.beat(engine, "worker-host:4242", now, time.time())
    heartbeats.record_probe(
        engine,
        [
            heartbeats.ProbeResult(g, True, 0.2, None, None, now, "worker-host:4242")
            for g in ("osmp", "rest")
        ],
    )
    samples = scrape(gateway.client)
    exported = {name for name, _ in samples}
    assert value(samples, "tolom_probe_success", gateway="rest") == 1
    assert value(samples, "tolom_probe_duration_seconds", gateway="osmp") == 0.2
    assert value(samples, "tolom_worker_last_loop_timestamp_seconds", worker="worker-host:4242") > 0

    rules = yaml.safe_load((DEPLOY / "prometheus" / "tolom-alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(rule.get("alert") for group in rules["groups"] for rule in group["rules"])
    assert len(expressions) >= 8
    dashboard = json.loads((DEPLOY / "grafana" / "tolom.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]

    used = {name for expression in expressions for name in _NAME.findall(expression)}
    assert used, "no tolom_ metric in deploy/"
    assert used <= exported, sorted(used - exported)
    families = {n.removesuffix("_total").removesuffix("_count") for n in exported}
    assert "tolom_worker_last_loop_timestamp_seconds" in families
    assert "tolom_outbox_dead_letters" in used and "tolom_reconciliation_days_overdue" in used
    assert {"tolom_probe_success", "tolom_probe_last_run_timestamp_seconds"} <= used


# --- multiprocess: two workers, one sum ------------------------------------------------------


def test_serve_with_two_workers_sums_both_workers_requests(
    database: Database, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    env = database.env | {
        "TOLOM_METRICS_DIR": str(metrics_dir),
        "TOLOM_GATEWAY_STRANGERS_PER_MINUTE": "100000",
    }
    with serving(Database(database.directory, env), workers=2) as server:
        _wait(lambda: server.startups_complete() >= 2, 30, "both workers started")
        workers = _workers(server.pid)
        assert len(workers) == 2, server.output()
        base = f"http://{HOST}:{server.port}"
        sent = 0

        def served_by_both() -> bool:
            return all((metrics_dir / f"histogram_{pid}.db").exists() for pid in workers)

        deadline = time.monotonic() + 30
        while not served_by_both() and time.monotonic() < deadline:
            for _ in range(10):  # a new connection each: the workers take turns accepting
                with httpx.Client(base_url=base) as client:
                    assert client.get("/gateway/osmp/eds?command=check").status_code == 401
                sent += 1
        assert served_by_both(), f"one worker served all {sent} requests"
        for _ in range(3):  # whichever worker answers the scrape sums both workers' files
            with httpx.Client(base_url=base) as client:
                samples = scrape(client)
            labels = {"protocol": "osmp", "service": "eds", "command": "check", "result": "8"}
            assert value(samples, f"{HISTOGRAM}_count", **labels) == sent
            assert value(samples, "tolom_db_pool_connections_max") > 0
    assert metrics_dir.is_dir()  # configured (TOLOM_METRICS_DIR): left in place
