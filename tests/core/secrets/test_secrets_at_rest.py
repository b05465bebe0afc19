"""Agents' REST signing keys and webhook secrets are stored sealed with a key kept outside
the database (tolom.secretbox): a copy of the database alone cannot sign an agent's
payments or a webhook. Rotation, the check, the migration of plain rows, start-up errors."""

from __future__ import annotations

import base64
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from tests.core.events.test_webhooks import Receiver, add_endpoint, emit, fast, receiving
from tests.factories import RestAgent, add_customer, run_cli
from tolom import audit, secretbox
from tolom.agents import service as agents
from tolom.app import create_app
from tolom.db import migrate
from tolom.db.engine import make_engine
from tolom.db.schema import webhook_endpoints
from tolom.events import webhooks
from tolom.events.worker import Worker
from tolom.runtime import Runtime
from tolom.settings import Settings


def _raw_rows(engine: Engine) -> str:
    """Every column of every agent and webhook endpoint row, as the database holds them."""
    with engine.connect() as conn:
        rows = [
            *conn.execute(text("SELECT * FROM agents")).all(),
            *conn.execute(text("SELECT * FROM webhook_endpoints")).all(),
        ]
    return "\n".join(repr(tuple(r)) for r in rows)


def _rest(settings: Settings, engine: Engine, code: str, secret: str) -> RestAgent:
    app = create_app(runtime=Runtime.on(settings, engine))
    return RestAgent(TestClient(app, client=("127.0.0.1", 50000)), engine, code, secret)


def test_the_database_holds_no_signing_key_or_webhook_secret_in_plain_text(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        secret = agents.create(
            conn, code="optima", name="Оптима", networks=["*"], service_codes=["sochi"]
        )
    signing_key = agents.signing_key_for(secret)
    with receiving(Receiver()) as receiver:
        add_endpoint(engine, receiver)
        webhook_key = receiver.secret.removeprefix("whsec_")
        stored = _raw_rows(engine)
        for plain in (
            signing_key,
            signing_key.upper(),
            webhook_key,
            base64.b64decode(webhook_key).hex(),
            secret,
        ):
            assert plain not in stored

        # ...and yet both still work: a signed REST pay verifies, a webhook is signed.
        rest = _rest(settings, engine, "optima", secret)
        paid = rest.pay("sochi", add_customer(engine), "100.00")
        assert paid.status_code == 200, paid.text
        event_id = emit(engine)
        Worker(fast(settings), engine).run(once=True)
    assert str(event_id) in receiver.ids() and receiver.hits
    for hit in receiver.hits:  # the pay's own event and ours
        webhooks.verify(receiver.secret, hit.headers, hit.body)


def test_a_request_signed_with_another_key_is_still_refused(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        secret = agents.create(
            conn, code="optima", name="Оптима", networks=["*"], service_codes=["sochi"]
        )
    rest = _rest(settings, engine, "optima", secret)
    forged = rest.send("GET", "/api/v1/agent/payments/1", key=b"\x00" * 32)
    assert forged.status_code == 401, forged.text


def _own_key_file(tmp_path: Path, secret_key_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the run's key file for this test alone (the CLI finds it too)."""
    path = tmp_path / "keys" / "secret.key"
    path.parent.mkdir()
    shutil.copy(secret_key_file, path)
    monkeypatch.setenv("TOLOM_SECRET_KEY_FILE", str(path))
    return path


def test_rotation_reseals_everything_and_the_old_key_is_no_longer_needed(
    database_url: str,
    tmp_path: Path,
    secret_key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _own_key_file(tmp_path, secret_key_file, monkeypatch)
    settings = Settings(database_url=database_url, secret_key_file=str(path), agent_cache_seconds=0)
    engine = make_engine(settings, pool_size=2)
    try:
        with engine.begin() as conn:
            secret = agents.create(
                conn, code="optima", name="Оптима", networks=["*"], service_codes=["sochi"]
            )
        with receiving(Receiver()) as receiver:
            add_endpoint(engine, receiver)
            old_key = path.read_text().strip()

            rotated = run_cli(database_url, monkeypatch, ["secrets", "rotate", "--json"])
            assert rotated.exit_code == 0, rotated.output
            assert '"failures": []' in rotated.output

            keys = path.read_text().split()
            assert len(keys) == 2 and keys[1] == old_key
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            # Nothing is left that only the old key opens: the new key alone opens all.
            alone = tmp_path / "new-only.key"
            secretbox.create_key_file(alone, keys[0])
            old_only = tmp_path / "old-only.key"
            secretbox.create_key_file(old_only, old_key)
            sealed = _sealed_values(engine)
            assert len(sealed) == 2
            for value in sealed:
                secretbox.Keyring(alone).open(value)
                with pytest.raises(secretbox.SealError):
                    secretbox.Keyring(old_only).open(value)

            # A key already first (put on every host beforehand): only resealing is left.
            again = run_cli(database_url, monkeypatch, ["secrets", "rotate", "--key", keys[0]])
            assert again.exit_code == 0 and path.read_text().split() == keys, again.output

            checked = run_cli(database_url, monkeypatch, ["secrets", "check"])
            assert checked.exit_code == 0, checked.output
            assert "под прежними ключами: 0" in checked.output
            pruned = run_cli(database_url, monkeypatch, ["secrets", "prune"])
            assert pruned.exit_code == 0, pruned.output
            assert path.read_text().split() == [keys[0]]

            # The running engine's keyring re-read the file: everything still works.
            rest = _rest(settings, engine, "optima", secret)
            paid = rest.pay("sochi", add_customer(engine), "100.00")
            assert paid.status_code == 200, paid.text
            emit(engine)
            Worker(fast(settings), engine).run(once=True)
        assert receiver.hits and all(hit.verified for hit in receiver.hits)

        with engine.connect() as conn:
            trail = audit.entries(conn, object_type="secret_key")
        assert [e["action"] for e in trail] == ["secrets.prune", "secrets.rotate", "secrets.rotate"]
        assert all(e["actor"].startswith("cli:") for e in trail)
        assert keys[0] not in repr(trail) and old_key not in repr(trail)  # fingerprints only
    finally:
        engine.dispose()


def _sealed_values(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            *conn.execute(
                text("SELECT signing_key_sealed FROM agents WHERE signing_key_sealed IS NOT NULL")
            ).scalars(),
            *conn.execute(select(webhook_endpoints.c.secret_sealed)).scalars(),
        ]


def test_check_names_values_the_key_file_cannot_open(
    database_url: str,
    tmp_path: Path,
    secret_key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _own_key_file(tmp_path, secret_key_file, monkeypatch)
    engine = make_engine(Settings(database_url=database_url, secret_key_file=str(path)))
    try:
        with engine.begin() as conn:
            agents.create(conn, code="optima", name="Оптима", networks=["*"], service_codes=["eds"])
            agent_id = conn.execute(text("SELECT id FROM agents WHERE code = 'optima'")).scalar()
    finally:
        engine.dispose()
    secretbox.replace_key_file(path, secretbox.new_key() + "\n")  # the wrong key file
    checked = run_cli(database_url, monkeypatch, ["secrets", "check", "--json"])
    assert checked.exit_code == 1
    assert f"agents:{agent_id}" in checked.output
    refused = run_cli(database_url, monkeypatch, ["secrets", "rotate"])
    assert refused.exit_code == 1 and f"agents:{agent_id}" in refused.output


def test_a_missing_or_malformed_key_file_is_an_error_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'tolom.sqlite3'}"
    missing = tmp_path / "nowhere" / "secret.key"
    with pytest.raises(secretbox.SecretKeyError, match="не найден"):
        make_engine(Settings(database_url=url, secret_key_file=str(missing)))
    monkeypatch.setenv("TOLOM_SECRET_KEY_FILE", str(missing))
    told = run_cli(url, monkeypatch, ["db", "upgrade"])  # a message, not a traceback
    assert told.exit_code == 1 and "не найден" in told.output and "secrets init" in told.output
    assert not missing.exists(), "a configured key file is never made up"
    made = run_cli(url, monkeypatch, ["secrets", "init"])
    assert made.exit_code == 0 and "создан" in made.output, made.output
    assert stat.S_IMODE(os.stat(missing).st_mode) == 0o600
    assert run_cli(url, monkeypatch, ["db", "upgrade"]).exit_code == 0
    again = run_cli(url, monkeypatch, ["secrets", "init"])
    assert again.exit_code == 0 and "ничего не изменено" in again.output
    malformed = tmp_path / "bad.key"
    malformed.write_text("not a key\n")
    with pytest.raises(secretbox.SecretKeyError, match="строка 1"):
        make_engine(Settings(database_url=url, secret_key_file=str(malformed)))
    empty = tmp_path / "empty.key"
    empty.write_text("# no keys yet\n")
    with pytest.raises(secretbox.SecretKeyError, match="нет ни одного ключа"):
        make_engine(Settings(database_url=url, secret_key_file=str(empty)))


def test_unset_a_sqlite_database_gets_its_own_key_file_and_postgresql_must_configure_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TOLOM_SECRET_KEY_FILE")
    folder = tmp_path / "var"
    engine = make_engine(Settings(database_url=f"sqlite:///{folder / 'tolom.sqlite3'}"))
    engine.dispose()
    made = folder / "secret.key"
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o600
    assert len(secretbox.parse_keys(made.read_text(), "test")) == 1
    assert "Back it up separately from the database" in caplog.text

    unset = secretbox.keyring("", "postgresql+psycopg://tolom@db.example.kg/tolom")
    with pytest.raises(secretbox.SecretKeyError, match="TOLOM_SECRET_KEY_FILE не задан"):
        unset.seal("x")


def _alembic(engine: Engine, action: Any, revision: str) -> None:
    with engine.connect() as connection:
        config = migrate.alembic_config(engine)
        config.attributes["connection"] = connection
        action(config, revision)
        connection.commit()


def test_the_migration_seals_plain_rows_and_the_downgrade_opens_them(engine: Engine) -> None:
    signing_key = agents.signing_key_for("legacy-secret")
    webhook_key = base64.b64encode(b"w" * 32).decode("ascii")
    _alembic(engine, command.downgrade, "0009")
    try:
        with engine.begin() as conn:
            account = conn.execute(text("SELECT id FROM accounts ORDER BY id LIMIT 1")).scalar()
            conn.execute(
                text(
                    "INSERT INTO agents (code, name, secret_hash, allowed_networks, timezone, "
                    "clearing_account_id, signing_key) VALUES ('legacy', 'Legacy', :hash, '*', "
                    "'Asia/Bishkek', :account, :key)"
                ),
                {
                    "hash": agents.hash_secret("legacy-secret"),
                    "account": account,
                    "key": signing_key,
                },
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_endpoints (name, url, secret, event_types) "
                    "VALUES ('legacy', 'https://crm.example.kg/hooks', :secret, '*')"
                ),
                {"secret": webhook_key},
            )
        migrate.upgrade(engine)
        stored = _raw_rows(engine)
        assert signing_key not in stored and webhook_key not in stored
        with engine.connect() as conn:
            agent = agents.load(conn, "legacy")
            sealed = conn.execute(
                select(webhook_endpoints.c.secret_sealed).where(
                    webhook_endpoints.c.name == "legacy"
                )
            ).scalar_one()
            assert secretbox.for_connection(conn).open(sealed) == webhook_key
        assert agent is not None and agent.signing_key == bytes.fromhex(signing_key)

        _alembic(engine, command.downgrade, "0009")
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT signing_key FROM agents WHERE code = 'legacy'")).scalar()
                == signing_key
            )
            assert (
                conn.execute(
                    text("SELECT secret FROM webhook_endpoints WHERE name = 'legacy'")
                ).scalar()
                == webhook_key
            )
    finally:
        migrate.upgrade(engine)
