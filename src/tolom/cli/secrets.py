"""`tolom secrets`: the key file that seals agents' signing keys and webhook secrets.

`init` creates it, `rotate` puts a new key first and reseals every value with it, `check`
opens every value, `prune` drops the older keys once no value needs them, `new-key`
prints a key for a rotation prepared on several hosts. See
docs/operations.md ("Secrets at rest") and `tolom.secretbox`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tolom import keyrotation, secretbox
from tolom.cli.common import JsonOption, cli_actor, emit, engine, fail, t
from tolom.settings import get_settings

secrets_app = typer.Typer(
    help="The key file that seals agents' signing keys and webhook secrets.",
    no_args_is_help=True,
)

BatchOption = Annotated[
    int, typer.Option("--batch", min=1, max=100_000, help="Rows per transaction.")
]


def _keyring(as_json: bool, *, must_exist: bool = True) -> secretbox.Keyring:
    ring = secretbox.for_settings(get_settings())
    if ring.path is None:
        try:
            ring.check()  # says what to configure
        except secretbox.SecretKeyError as error:
            fail(str(error), as_json)
        fail(t("cli.secrets.in_memory"), as_json)
    if must_exist:
        try:
            ring.check()
        except secretbox.SecretKeyError as error:
            fail(str(error), as_json)
    return ring


@secrets_app.command("init")
def init(as_json: JsonOption = False) -> None:
    """Create the key file (TOLOM_SECRET_KEY_FILE, mode 0600) with a new key, if missing."""
    ring = _keyring(as_json, must_exist=False)
    assert ring.path is not None
    created = secretbox.create_key_file(ring.path)
    try:
        current = ring.keys()[0]
    except secretbox.SecretKeyError as error:
        fail(str(error), as_json)
    emit(
        {"path": str(ring.path), "created": created, "current": secretbox.fingerprint(current)},
        as_json,
        (
            t("cli.secrets.created", path=ring.path, fingerprint=secretbox.fingerprint(current))
            if created
            else t("cli.secrets.exists", path=ring.path, fingerprint=secretbox.fingerprint(current))
        ),
    )


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a new random key and change nothing (for `rotate --key` on several hosts)."""
    typer.echo(secretbox.new_key())


@secrets_app.command("rotate")
def rotate(
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="The new key (32 bytes in base64url); default: a new random one.",
        ),
    ] = None,
    batch: BatchOption = 500,
    as_json: JsonOption = False,
) -> None:
    """Put a new key first in the key file and reseal every value with it.

    The older keys stay in the file, for opening only, until `tolom secrets prune`."""
    ring = _keyring(as_json)
    new = (key or secretbox.new_key()).strip()
    db = engine()
    try:
        done = keyrotation.rotate(db, ring, new, actor=cli_actor(), batch=batch)
    except secretbox.SecretKeyError as error:
        fail(str(error), as_json)
    except keyrotation.KnownKey:
        fail(t("cli.secrets.key_known"), as_json)
    finally:
        db.dispose()
    counts, failures = done.resealed, done.failures
    shown: dict[str, Any] = {
        "path": str(ring.path),
        "current": done.current,
        "keys": done.keys,
        "resealed": counts,
        "failures": failures,
    }
    resealed = ", ".join(f"{label} — {n}" for label, n in counts.items())
    emit(
        shown,
        as_json,
        t(
            "cli.secrets.rotated",
            fingerprint=done.current,
            path=ring.path,
            count=done.keys,
            resealed=resealed,
        ),
    )
    if failures:
        fail(t("cli.secrets.unopenable", names=", ".join(failures)), as_json)


def _census(batch: int, as_json: bool) -> tuple[secretbox.Keyring, secretbox.Census]:
    ring = _keyring(as_json)
    db = engine()
    try:
        return ring, secretbox.check(db, ring, batch)
    finally:
        db.dispose()


@secrets_app.command("check")
def check(batch: BatchOption = 500, as_json: JsonOption = False) -> None:
    """Open every sealed value; report how many there are, how many need an older key and
    which cannot be opened (exit status 1)."""
    ring, census = _census(batch, as_json)
    keys = ring.keys()
    lines = [
        t(
            "cli.secrets.file",
            path=ring.path,
            count=len(keys),
            fingerprint=secretbox.fingerprint(keys[0]),
        )
    ]
    lines += [
        t("cli.secrets.census", label=label, total=census.total[label], older=census.older[label])
        for label in census.total
    ]
    lines.append(
        t("cli.secrets.failures", names=", ".join(census.failures))
        if census.failures
        else t("cli.secrets.all_open")
    )
    emit(
        {
            "path": str(ring.path),
            "keys": len(keys),
            "current": secretbox.fingerprint(keys[0]),
            "total": census.total,
            "older": census.older,
            "failures": census.failures,
        },
        as_json,
        "\n".join(lines),
    )
    if census.failures:
        raise typer.Exit(code=1)


@secrets_app.command("prune")
def prune(batch: BatchOption = 500, as_json: JsonOption = False) -> None:
    """Remove the older keys from the key file, once every value opens with the current one."""
    ring, census = _census(batch, as_json)
    older = sum(census.older.values())
    if census.failures or older:
        fail(
            t("cli.secrets.still_needed", older=older, failures=len(census.failures)),
            as_json,
        )
    db = engine()
    try:
        removed = keyrotation.prune(db, ring, actor=cli_actor())
    finally:
        db.dispose()
    emit(
        {"path": str(ring.path), "removed": removed},
        as_json,
        t("cli.secrets.pruned", path=ring.path, count=removed),
    )
