"""`tolom ledger`: the double-entry ledger checked against its postings."""

from __future__ import annotations

from dataclasses import asdict

import typer

from tolom.cli.common import JsonOption, emit, t, transaction
from tolom.ledger.verify import verify_ledger

ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)


@ledger_app.command("verify")
def ledger_verify(as_json: JsonOption = False) -> None:
    """Recompute every balance from the postings; exit 1 and name the culprit on any discrepancy."""
    with transaction() as conn:
        problems = verify_ledger(conn)
    data = {"ok": not problems, "problems": [asdict(p) for p in problems]}
    if problems:
        emit(
            data,
            as_json,
            "\n".join(
                t("cli.ledger.problem", kind=p.kind, subject=p.subject, detail=p.detail)
                for p in problems
            ),
        )
        raise typer.Exit(code=1)
    emit(data, as_json, t("cli.ledger.ok"))
