"""Rotating the key that seals secrets at rest, as audited use cases (`tolom secrets
rotate` and `prune` call them; the key file and the sealing itself are `secretbox`'s).

A rotation puts the new key first in the key file, reseals every value an older key
sealed, and writes one audit line; pruning drops the older keys from the file once nothing
needs them, and writes one audit line. The database is asked first, so that a rotation
never changes the key file while the audit trail is out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from tolom import audit, secretbox


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation did: the new current key's fingerprint, how many keys the file now
    holds, the values resealed per column, and the values no key opened."""

    current: str
    keys: int
    resealed: dict[str, int]
    failures: list[str]


class KnownKey(ValueError):
    """The offered key is already an older key in the file (rotating back is refused)."""


def rotate(
    engine: Engine, ring: secretbox.Keyring, new: str, *, actor: str, batch: int = 500
) -> Rotation:
    """Make `new` (base64url text, already stripped) the current key and reseal with it.
    SecretKeyError for a malformed key, KnownKey for an older key of the file."""
    assert ring.path is not None
    new_raw = secretbox.parse_keys(new, "--key")[0]
    before = ring.keys()
    if new_raw in before[1:]:
        raise KnownKey(secretbox.fingerprint(new_raw))
    with engine.connect():
        pass  # the database answers before the key file changes
    if new_raw != before[0]:
        text = ring.path.read_text(encoding="ascii")
        secretbox.replace_key_file(ring.path, f"{new}\n{text}")
    counts, failures = secretbox.reseal_all(engine, ring, batch)
    keys = ring.keys()
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=actor,
            action="secrets.rotate",
            object_type="secret_key",
            object_id=secretbox.fingerprint(new_raw),
            before={"current": secretbox.fingerprint(before[0]), "keys": len(before)},
            after={"keys": len(keys), "resealed": counts, "failures": failures},
        )
    return Rotation(secretbox.fingerprint(new_raw), len(keys), counts, failures)


def prune(engine: Engine, ring: secretbox.Keyring, *, actor: str) -> int:
    """Keep only the current key in the file; how many keys were removed. The caller has
    checked (`secretbox.check`) that no value still needs an older key."""
    assert ring.path is not None
    keys = ring.keys()
    if len(keys) == 1:
        return 0
    with engine.connect():
        pass  # the database answers before the key file changes
    secretbox.replace_key_file(ring.path, keys[0].decode("ascii") + "\n")
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=actor,
            action="secrets.prune",
            object_type="secret_key",
            object_id=secretbox.fingerprint(keys[0]),
            before={"keys": len(keys)},
            after={"keys": 1},
        )
    return len(keys) - 1
