"""`tolom reconcile`: import with progress, show, resolve, close, reopen, calendar, format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from tests.adapters.api.test_operator_api import PEER, Api, api
from tests.core.reconciliation.test_reconciliation import DAY, planted, registry
from tests.factories import Cli
from tolom import audit
from tolom.db.schema import registries
from tolom.reconciliation.matching import KINDS

__all__ = ["api", "planted"]  # the fixtures, used by name


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_day_from_registry_to_closing(
    cli: Cli, api: Api, engine: Engine, planted: dict[str, Any], tmp_path: Path
) -> None:
    file = tmp_path / "optima-2026-11-21.txt"
    file.write_bytes(planted["content"])
    shown = cli("reconcile", "import", "optima", str(file))
    assert shown.exit_code == 0, shown.output
    assert "Реестр №1 агента optima за 21.11.2026: 6 строк на 870,00" in shown.stdout
    assert "нет у агента: 1" in shown.stdout and "разница (агент − мы): -180,00" in shown.stdout
    assert "Сверка" in shown.stderr or "Разбор" in shown.stderr  # the progress bar

    again = _json(cli("reconcile", "import", "optima", str(file), "--json"))
    assert again["replayed"] is True and again["summary"]["difference"] == "-180.00"

    day = _json(cli("reconcile", "show", "optima", "2026-11-21", "--json"))
    assert day["state"] == "open" and len(day["discrepancies"]) == 5
    refused = cli("reconcile", "close", "optima", "2026-11-21")
    assert refused.exit_code == 1 and "не разобрано расхождений — 5" in refused.stderr

    for item in day["discrepancies"]:
        action = "accept" if item["kind"] == "missing_ours" else "explain"
        done = _json(
            cli("reconcile", "resolve", str(item["id"]), action, "--reason", "сверено", "--json")
        )
        assert done["resolution"] in ("accepted", "explained")
    closed = _json(cli("reconcile", "close", "optima", "2026-11-21", "--json"))
    assert closed["state"] == "closed" and closed["closed_at"].endswith("Z")
    answered = api.get("/api/v1/reconciliation/days/optima/2026-11-21").json()
    detail_only = {"discrepancy_count", "discrepancies", "next_cursor"}
    assert closed == {key: value for key, value in answered.items() if key not in detail_only}
    assert "закрыт" in cli("reconcile", "close", "optima", "2026-11-21").stdout
    bad = cli("reconcile", "import", "optima", str(file), "--day", "2026-11-21")
    assert bad.exit_code == 0  # the same file: nothing to change, even on a closed day
    calendar = _json(
        cli("reconcile", "days", "--from", "2026-11-20", "--to", "2026-11-21", "--json")
    )
    from_api = api.get("/api/v1/reconciliation/days?from=2026-11-20&to=2026-11-21").json()
    assert calendar == from_api["items"]
    states = {(c["agent"], c["day"]): c["state"] for c in calendar}
    assert states[("optima", "2026-11-21")] == "closed"
    assert states[("optima", "2026-11-20")] == "none"
    reopened = cli("reconcile", "reopen", "optima", "2026-11-21", "--reason", "исправление")
    assert reopened.exit_code == 0 and "снова открыт" in reopened.stdout


def test_the_json_is_the_apis_shape(
    cli: Cli, api: Api, planted: dict[str, Any], tmp_path: Path
) -> None:
    """`--json` answers as the operator API does: som strings, the API's field names."""
    file = tmp_path / "optima-2026-11-21.txt"
    file.write_bytes(planted["content"])
    done = _json(cli("reconcile", "import", "optima", str(file), "--json"))
    assert done["total"] == "870.00"
    summary = done["summary"]
    assert (summary["their_amount"], summary["our_amount"]) == ("870.00", "1050.00")
    assert (summary["difference"], summary["discrepancy_count"]) == ("-180.00", 5)
    assert list(summary["classes"]) == list(KINDS)
    assert summary["classes"]["amount_mismatch"] == {
        "count": 1,
        "their_amount": "250.00",
        "our_amount": "200.00",
    }

    path = f"/api/v1/reconciliation/days/optima/{DAY.isoformat()}"
    answered = api.get(path).json()
    assert summary == answered["summary"]
    day = _json(cli("reconcile", "show", "optima", DAY.isoformat(), "--json"))
    assert day["summary"] == answered["summary"]
    assert day["discrepancies"] == answered["discrepancies"]
    # The whole day is the API's, its registry an object; only the paging is the API's own.
    assert day == {key: value for key, value in answered.items() if key != "next_cursor"}
    assert day["registry"]["id"] == done["registry"] and "file" not in day
    assert day["registry"]["imported_at"].endswith("Z")
    mismatch = next(d for d in day["discrepancies"] if d["kind"] == "amount_mismatch")
    assert "payment" not in mismatch and mismatch["payment_id"] is not None
    assert (mismatch["their_amount"], mismatch["our_amount"]) == ("250.00", "200.00")
    assert mismatch["registry"] == done["registry"]

    resolved = _json(
        cli("reconcile", "resolve", str(mismatch["id"]), "reverse", "--reason", "ошибка", "--json")
    )
    from_api = api.get(f"/api/v1/reconciliation/discrepancies/{mismatch['id']}").json()
    assert resolved == from_api
    assert resolved["resolution_payment_id"] == mismatch["payment_id"]
    assert resolved["resolved_at"].endswith("Z")


def test_a_format_change_is_audited_as_by_the_api(
    cli: Cli, api: Api, engine: Engine, planted: dict[str, Any], tmp_path: Path
) -> None:
    """The same change writes the same `registry_format.set` line from either side, and
    settings that change nothing write none."""
    wanted = {"kind": "csv", "encoding": "cp1251", "header": True, "total_line": False}
    wanted["columns"] = {"txn_id": "Номер", "date": "Дата", "account": "ИНН", "amount": 4}
    settings = tmp_path / "format.json"
    settings.write_text(json.dumps(wanted, ensure_ascii=False), encoding="utf-8")
    first = cli("reconcile", "format", "optima", "--file", str(settings))
    assert first.exit_code == 0 and "сохранён" in first.stdout, first.output
    again = cli("reconcile", "format", "optima", "--file", str(settings))
    assert again.exit_code == 0 and "не изменился" in again.stdout, again.output
    default = tmp_path / "default.json"
    default.write_text("{}", encoding="utf-8")
    assert cli("reconcile", "format", "optima", "--file", str(default)).exit_code == 0
    path = "/api/v1/agents/optima/registry-format"
    assert api.client.put(path, json=wanted, headers=api.auth("admin")).status_code == 200
    assert api.client.put(path, json=wanted, headers=api.auth("admin")).status_code == 200
    with engine.connect() as conn:
        trail = list(reversed(audit.entries(conn, "agent", "optima")))
    assert [line["actor"].partition(":")[0] for line in trail] == ["cli", "cli", "apikey"]
    by_cli, by_api = trail[0], trail[2]
    assert (by_cli["address"], by_api["address"]) == (None, PEER)
    assert {k: by_cli[k] for k in ("action", "object_type", "object_id", "before", "after")} == {
        k: by_api[k] for k in ("action", "object_type", "object_id", "before", "after")
    }


def test_bad_input_is_a_message_never_a_traceback(
    cli: Cli, engine: Engine, planted: dict[str, Any], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"101\t21.11.2026\t09:00:00\t01234567890123\t5.00\n")
    result = cli("reconcile", "import", "optima", str(broken))
    assert result.exit_code == 1 and "итоговой строки" in result.stderr
    assert cli("reconcile", "show", "optima", "вчера").exit_code == 1
    assert "нет агента" in cli("reconcile", "show", "nobody", "2026-11-21").stderr
    assert cli("reconcile", "resolve", "999", "accept", "--reason", "x").exit_code == 1
    settings = tmp_path / "format.json"
    settings.write_text('{"kind": "csv", "delimiter": ";;"}', encoding="utf-8")
    assert "разделитель" in cli("reconcile", "format", "optima", "--file", str(settings)).stderr
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(registries)).scalar_one() == 0


def test_a_csv_agent_in_cp1251(cli: Cli, planted: dict[str, Any], tmp_path: Path) -> None:
    settings = tmp_path / "format.json"
    settings.write_text(
        json.dumps(
            {
                "kind": "csv",
                "encoding": "cp1251",
                "header": True,
                "total_line": False,
                "columns": {
                    "txn_id": "Номер",
                    "date": "Дата",
                    "time": "Время",
                    "account": "ИНН",
                    "amount": "Сумма",
                },
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    assert cli("reconcile", "format", "optima", "--file", str(settings)).exit_code == 0
    shown = _json(cli("reconcile", "format", "optima"))
    assert shown["encoding"] == "cp1251"
    inn = planted["inn"]
    text = "Номер;Дата;Время;ИНН;Сумма\n" + "".join(
        f"{txn};21.11.2026;{at};{inn};{amount}\n"
        for txn, at, amount in (
            ("101", "09:00:00", "100,00"),
            ("102", "10:00:00", "200,00"),
            ("103", "11:00:00", "300,00"),
            ("104", "12:00:00", "400,00"),
            ("105", "23:59:59", "50,00"),
        )
    )
    file = tmp_path / "optima.csv"
    file.write_bytes(text.encode("cp1251"))
    done = _json(cli("reconcile", "import", "optima", str(file), "--json"))
    assert done["day"] == DAY.isoformat() and done["summary"]["matched_count"] == 5
    assert registry  # the QIWI helper is shared with the core tests


def test_export_act_and_the_watched_folder(
    cli: Cli, engine: Engine, planted: dict[str, Any], tmp_path: Path
) -> None:
    import os

    ours = tmp_path / "ours.txt"
    exported = cli("reconcile", "export", "optima", "2026-11-21", "-o", str(ours))
    assert exported.exit_code == 0 and "5 платежей" in exported.stdout
    assert ours.read_text(encoding="utf-8").endswith("Total: 5 1050.00\n")

    folder = tmp_path / "inbox"
    (folder / "optima").mkdir(parents=True)
    (folder / "nobody").mkdir()
    good = folder / "optima" / "reestr_2026-11-21.txt"
    good.write_bytes(planted["content"])
    bad = folder / "optima" / "broken.txt"
    bad.write_bytes(b"garbage\n")
    stranger = folder / "nobody" / "x.txt"
    stranger.write_bytes(planted["content"])
    fresh = folder / "optima" / "still-writing.txt"
    fresh.write_bytes(b"101\t21.11.2026")
    for path in (good, bad, stranger):
        os.utime(path, (1, 1))  # long untouched: completely written
    result = cli("reconcile", "watch", str(folder), "--once")
    assert result.exit_code == 0, result.output
    assert "reestr_2026-11-21.txt: 21.11.2026, 6 строк, расхождений 5" in result.stdout
    assert "broken.txt: отклонён" in result.stderr and "нет агента" in result.stderr
    assert (folder / "optima" / "done" / "reestr_2026-11-21.txt").exists()
    summary = json.loads(
        (folder / "optima" / "done" / "reestr_2026-11-21.txt.result.json").read_text()
    )
    assert summary["summary"]["classes"]["missing_theirs"]["count"] == 1
    assert isinstance(summary["summary"]["their_amount"], str)  # som, as the API writes it
    assert "Строка 1" in (folder / "optima" / "failed" / "broken.txt.error.txt").read_text()
    assert fresh.exists()  # left for the next pass

    draft = tmp_path / "akt.pdf"
    made = cli("reconcile", "act", "optima", "2026-11-21", "--pdf", str(draft))
    assert made.exit_code == 0 and draft.read_bytes().startswith(b"%PDF")
    assert "черновик" in made.stderr
    assert "нет реестра" in cli("reconcile", "act", "optima", "2026-11-20").stderr


SECRET = "SECRET-TOKEN-0123456789"


def _watched(tmp_path: Path) -> tuple[Path, Path]:
    """An inbox with the agent's folder, and a file outside it that must stay unread."""
    folder = tmp_path / "inbox"
    (folder / "optima").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(f"{SECRET}\t21.11.2026\t10:00:00\t1\t5.00\nTotal: 1 5.00\n")
    return folder, secret


def _settle(*paths: Path) -> None:
    import os

    for path in paths:
        os.utime(path, (1, 1), follow_symlinks=False)


def test_the_watched_folder_never_follows_a_link(
    engine: Engine, planted: dict[str, Any], tmp_path: Path
) -> None:
    from tolom.reconciliation import watch

    folder, secret = _watched(tmp_path)
    link = folder / "optima" / "reestr.txt"
    link.symlink_to(secret)
    _settle(link, secret)
    [outcome] = watch.scan_once(engine, folder)
    assert outcome.imported is None and outcome.error is not None
    assert "символическая ссылка" in outcome.error and SECRET not in outcome.error
    moved = folder / "optima" / "failed" / "reestr.txt"
    assert moved.is_symlink() and not link.exists()  # the link moved, not what it points at
    note = (folder / "optima" / "failed" / "reestr.txt.error.txt").read_text()
    assert "символическая ссылка" in note and SECRET not in note
    assert secret.read_text().startswith(SECRET)

    # A linked agent folder is not entered: nothing in it is read, moved or written.
    elsewhere = tmp_path / "outside" / "agent"
    elsewhere.mkdir()
    (elsewhere / "reestr.txt").write_bytes(planted["content"])
    _settle(elsewhere / "reestr.txt")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    [outcome] = watch.scan_once(engine, folder)
    assert outcome.agent == "linked" and "символическая ссылка" in (outcome.error or "")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["reestr.txt"]


def test_the_watched_folder_writes_nothing_through_a_link(
    engine: Engine, planted: dict[str, Any], tmp_path: Path
) -> None:
    from tolom.reconciliation import watch

    folder, secret = _watched(tmp_path)
    # A note planted as a link to a file outside: the note replaces the link, not the file.
    (folder / "optima" / "failed").mkdir()
    (folder / "optima" / "failed" / "broken.txt.error.txt").symlink_to(secret)
    broken = folder / "optima" / "broken.txt"
    broken.write_bytes(b"garbage\n")
    _settle(broken)
    [outcome] = watch.scan_once(engine, folder)
    assert outcome.error is not None and "Строка 1" in outcome.error
    assert secret.read_text().startswith(SECRET)
    note = folder / "optima" / "failed" / "broken.txt.error.txt"
    assert not note.is_symlink() and "Строка 1" in note.read_text()

    # done/ and failed/ as links to a folder outside: nothing is moved there.
    outside = secret.parent
    (folder / "optima" / "failed").rename(tmp_path / "old-failed")
    for name in ("done", "failed"):
        (folder / "optima" / name).symlink_to(outside, target_is_directory=True)
    good = folder / "optima" / "reestr_2026-11-21.txt"
    good.write_bytes(planted["content"])
    bad = folder / "optima" / "broken-again.txt"
    bad.write_bytes(b"garbage\n")
    _settle(good, bad)
    outcomes = {outcome.file: outcome for outcome in watch.scan_once(engine, folder)}
    assert outcomes["reestr_2026-11-21.txt"].imported is not None
    assert "Строка 1" in (outcomes["broken-again.txt"].error or "")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert bad.exists()  # refused, but left where it is: its failed/ is not a real folder
