"""Secrets the database must hold but must not reveal, sealed with a key kept outside it.

Agents' REST signing keys and webhook endpoints' signing secrets are HMAC keys Tolom
itself uses (to check an agent's signature, to sign a webhook), so unlike passwords they
cannot be stored as hashes. They are stored sealed (Fernet: AES-128-CBC and HMAC-SHA256)
with a key read from a file, `TOLOM_SECRET_KEY_FILE`, so a copy of the database alone
forges nothing. The file holds one key per line: the first seals, every line opens (key
rotation: `tolom secrets rotate`). A process re-reads the file whenever it has changed, so
a rotation reaches running servers without a restart.

Unset, the key file is `secret.key` next to a SQLite database, created on first start (the
one-command demo needs no setup). With PostgreSQL the setting is required (every process
refuses to start without it): every server and worker must share one key, which a file
created on each machine would not be.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, column, select, table, update
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from tolom.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"
KEY_BYTES = 32  # a Fernet key: 16 bytes sign, 16 bytes encrypt
SETTING = "TOLOM_SECRET_KEY_FILE"


class SecretKeyError(RuntimeError):
    """The key file is not configured, missing, unreadable or malformed (message in Russian,
    for operators; it names the file and the setting)."""


class SealError(ValueError):
    """A sealed value that no key of the file opens (wrong key file, or a damaged value)."""


def new_key() -> str:
    """A fresh random key in the file's form (what `Fernet.generate_key` makes)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def fingerprint(key: str | bytes) -> str:
    """A short public name for a key (audit lines, messages): reveals nothing of it."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return hashlib.sha256(raw.strip()).hexdigest()[:12]


def parse_keys(text: str, where: str) -> list[bytes]:
    """The keys of a key file's text, first (current) first; blank and `#` lines skipped."""
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            raw = base64.urlsafe_b64decode(line.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise SecretKeyError(
                f"файл ключей {where}, строка {number}: это не ключ (нужны {KEY_BYTES} байта в "
                "base64url, как печатает `tolom secrets init`)"
            )
        keys.append(line.encode("ascii"))
    if not keys:
        raise SecretKeyError(f"в файле ключей {where} нет ни одного ключа")
    return keys


def create_key_file(path: Path, key: str | None = None) -> bool:
    """Write a new key file (mode 0600) with one key; False if the file already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write((key or new_key()) + "\n")
        file.flush()
        os.fsync(file.fileno())
    return True


def replace_key_file(path: Path, text: str) -> None:
    """Replace the key file's content at once (a reader sees the old or the new file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Keyring:
    """The keys of one key file, re-read when the file changes; seals and opens values.

    `path` None: no file, either an in-memory database's throw-away key (`memory`) or no
    key configured at all (`problem` says why; every use raises it).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        create: bool = False,
        memory: bool = False,
        problem: str = "",
    ) -> None:
        self.path = path
        self._create = create
        self._problem = problem
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[bytes] = [new_key().encode("ascii")] if memory else []
        self._fernet: MultiFernet | None = None
        self._warned_mode = False

    def _refresh(self) -> None:
        """Load the file if it changed since it was read (one stat per call: cheap)."""
        if self.path is None:
            if self._problem:
                raise SecretKeyError(self._problem)
            return
        with self._lock:
            try:
                info = os.stat(self.path)
            except FileNotFoundError:
                if not self._create:
                    raise SecretKeyError(
                        f"файл ключей {self.path} не найден ({SETTING}); создайте его "
                        "командой `tolom secrets init` или укажите верный путь"
                    ) from None
                if create_key_file(self.path):
                    log.warning(
                        "created a new secret key file %s: it seals agents' signing keys and "
                        "webhook secrets. Back it up separately from the database: without "
                        "it they cannot be read (see docs/operations.md)",
                        self.path,
                    )
                info = os.stat(self.path)
            except OSError as error:
                raise SecretKeyError(f"файл ключей {self.path} не читается: {error}") from None
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if stamp == self._stamp:
                return
            try:
                text = self.path.read_text(encoding="ascii")
            except UnicodeDecodeError:
                raise SecretKeyError(
                    f"файл ключей {self.path}: не текст из ключей base64url"
                ) from None
            except OSError as error:
                raise SecretKeyError(f"файл ключей {self.path} не читается: {error}") from None
            self._keys = parse_keys(text, str(self.path))
            self._fernet = None
            self._stamp = stamp
            if info.st_mode & 0o077 and not self._warned_mode:
                self._warned_mode = True
                log.warning("secret key file %s is readable by others: chmod 600 it", self.path)

    def check(self) -> None:
        """Raise SecretKeyError now if the keys cannot be had (a clear error at start)."""
        self._refresh()

    def keys(self) -> list[bytes]:
        """The keys, the current one first."""
        self._refresh()
        return list(self._keys)

    def _multi(self) -> MultiFernet:
        self._refresh()
        fernet = self._fernet
        if fernet is None:
            # cryptography is imported on first use: a server's start does not pay for it.
            from cryptography.fernet import Fernet, MultiFernet

            fernet = self._fernet = MultiFernet([Fernet(k) for k in self._keys])
        return fernet

    def seal(self, plain: str) -> str:
        """`plain` sealed with the current key (a different text every time)."""
        return self._multi().encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        """The value `seal` sealed, with whichever key of the file sealed it."""
        from cryptography.fernet import InvalidToken

        try:
            return self._multi().decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SealError("no key of the key file opens this value") from None

    def is_current(self, sealed: str) -> bool:
        """Whether the current key sealed it (else a rotation has yet to reseal it)."""
        from cryptography.fernet import Fernet, InvalidToken

        try:
            Fernet(self.keys()[0]).decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def reseal(self, sealed: str) -> str:
        """The same value sealed with the current key."""
        from cryptography.fernet import InvalidToken

        try:
            return self._multi().rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise SealError("no key of the key file opens this value") from None


_rings: dict[object, Keyring] = {}
_rings_lock = threading.Lock()
_by_engine: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()


def keyring(secret_key_file: str, database_url: str) -> Keyring:
    """The keyring for these settings (one per file and process)."""
    where: object
    if secret_key_file:
        path = Path(secret_key_file).expanduser().absolute()
        where, candidate = path, Keyring(path)
    else:
        url = make_url(database_url)
        backend = url.get_backend_name()
        if backend == "sqlite" and url.database in (None, "", ":memory:"):
            # Its database dies with the process, and so may its key.
            where, candidate = ("memory", database_url), Keyring(None, memory=True)
        elif backend == "sqlite":
            path = (Path(str(url.database)).parent / KEY_FILE_NAME).absolute()
            where, candidate = path, Keyring(path, create=True)
        else:
            problem = (
                f"{SETTING} не задан: с {backend} укажите файл ключа, общий для всех "
                "серверов и воркеров (создать: `tolom secrets init`; см. docs/operations.md)"
            )
            where, candidate = ("unset", backend), Keyring(None, problem=problem)
    with _rings_lock:
        return _rings.setdefault(where, candidate)


def for_settings(settings: Settings) -> Keyring:
    return keyring(settings.secret_key_file, settings.database_url)


def attach(engine: Engine, settings: Settings) -> Engine:
    """Remember which keyring `engine`'s connections use, and check it at once: a missing
    or malformed key file — or, with PostgreSQL, none configured — is an error at start,
    not at the first payment."""
    ring = for_settings(settings)
    _by_engine[engine] = ring
    ring.check()
    return engine


def for_connection(conn: Connection) -> Keyring:
    """The keyring of the engine `conn` belongs to (made by `make_engine`)."""
    ring = _by_engine.get(conn.engine)
    if ring is None:  # an engine made elsewhere: the process's settings, this database
        from tolom.settings import get_settings

        url = conn.engine.url.render_as_string(hide_password=False)
        ring = keyring(get_settings().secret_key_file, url)
    return ring


# --- every sealed value in the database ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """Where sealed values live: a table, its key column, the sealed column."""

    table: str
    key: str
    sealed: str
    label: str  # for operators

    def rows_after(self, conn: Connection, after: object, limit: int) -> list[tuple[Any, str]]:
        """The next `limit` (key, sealed value) pairs after key `after`, in key order."""
        t = table(self.table, column(self.key), column(self.sealed))
        query = (
            select(t.c[self.key], t.c[self.sealed])
            .where(t.c[self.sealed].is_not(None), t.c[self.key] > after)
            .order_by(t.c[self.key])
            .limit(limit)
        )
        return [(key, str(sealed)) for key, sealed in conn.execute(query)]


SEALED_COLUMNS = (
    SealedColumn("agents", "id", "signing_key_sealed", "ключи подписи агентов"),
    SealedColumn("webhook_endpoints", "id", "secret_sealed", "секреты вебхуков"),
    SealedColumn("agents", "id", "secret_sealed", "секреты тестовых агентов"),
)


@dataclass(slots=True)
class Census:
    """What `check` found: values per column, how many still need an older key, failures."""

    total: dict[str, int]
    older: dict[str, int]
    failures: list[str]  # "table:id"


def check(engine: Engine, ring: Keyring, batch: int = 500) -> Census:
    """Open every sealed value (it proves the key file opens them all)."""
    census = Census({}, {}, [])
    for place in SEALED_COLUMNS:
        census.total[place.label] = census.older[place.label] = 0
        for key, sealed in _walk(engine, place, batch):
            census.total[place.label] += 1
            try:
                ring.open(sealed)
            except SealError:
                census.failures.append(f"{place.table}:{key}")
                continue
            if not ring.is_current(sealed):
                census.older[place.label] += 1
    return census


def _walk(engine: Engine, place: SealedColumn, batch: int) -> Iterator[tuple[object, str]]:
    after: object = 0
    while True:
        with engine.connect() as conn:
            rows = place.rows_after(conn, after, batch)
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def reseal_all(engine: Engine, ring: Keyring, batch: int = 500) -> tuple[dict[str, int], list[str]]:
    """Reseal with the current key every value an older key sealed, `batch` rows per
    transaction; a value changed meanwhile (a new secret) is left alone, it is already
    sealed with the current key. Returns resealed counts per column and failures."""
    counts: dict[str, int] = {}
    failures: list[str] = []
    for place in SEALED_COLUMNS:
        counts[place.label] = 0
        t = table(place.table, column(place.key), column(place.sealed))
        after: object = 0
        while True:
            with engine.begin() as conn:
                rows = place.rows_after(conn, after, batch)
                for key, sealed in rows:
                    if ring.is_current(sealed):
                        continue
                    try:
                        fresh = ring.reseal(sealed)
                    except SealError:
                        failures.append(f"{place.table}:{key}")
                        continue
                    changed = conn.execute(
                        update(t)
                        .where(t.c[place.key] == key, t.c[place.sealed] == sealed)
                        .values({place.sealed: fresh})
                    ).rowcount
                    counts[place.label] += changed
            if not rows:
                break
            after = rows[-1][0]
    return counts, failures
