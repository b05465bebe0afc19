"""Argon2 password hashing in a bounded pool of its own.

An argon2 hash or verify costs ~0.1 s of CPU and a thread. Run in the web server's shared
threadpool, a burst of logins (guessing, or a script gone wrong) would take every thread
the gateways need to answer agents. Here at most `password_hash_threads` hashes run at
once and at most `password_hash_queue` more wait; beyond that `PoolBusy` is raised at once
(the login page answers 429 "try later") instead of queueing without bound.

Every caller (the login page, the password page, the users page, the CLI) hashes here, and
never while holding a database transaction.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")

_hasher = PasswordHasher()


class PoolBusy(RuntimeError):
    """Every hashing thread is busy and the queue is full: try again a little later."""


class HashPool:
    """A fixed number of threads for argon2 and a bounded number of waiting jobs."""

    def __init__(self, threads: int, queue: int) -> None:
        self.threads, self.queue = threads, queue
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._slots = threading.BoundedSemaphore(threads + queue)

    def submit(self, fn: Callable[[], T], *, wait: float = 0.0) -> Future[T]:
        """Run `fn` on a hashing thread; PoolBusy when threads and queue are all taken (and
        stay so for `wait` seconds)."""
        if not self._slots.acquire(blocking=wait > 0, timeout=wait if wait > 0 else None):
            raise PoolBusy("password hashing is saturated")
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    async def run(self, fn: Callable[[], T]) -> T:
        """`submit` for async callers: the event loop waits, no other thread is taken."""
        return await asyncio.wrap_future(self.submit(fn))

    def call(self, fn: Callable[[], T], *, wait: float = 30.0) -> T:
        """`submit` for threads (the CLI, a page's worker thread): an operator's rare change
        may wait a while for a slot rather than fail at once."""
        return self.submit(fn, wait=wait).result()


_current: HashPool | None = None
_current_lock = threading.Lock()


def pool(threads: int | None = None, queue: int | None = None) -> HashPool:
    """The process's pool. Given a size (from settings), one of that size: a pool of
    another size is replaced (only tests run apps of different sizes in one process)."""
    global _current
    with _current_lock:
        current = _current
        wanted = (
            threads if threads is not None else (current.threads if current else 2),
            queue if queue is not None else (current.queue if current else 16),
        )
        if current is not None and (current.threads, current.queue) == wanted:
            return current
        # The pool replaced is not shut down: a caller still holding it may submit to it,
        # and its idle threads end once it is garbage.
        _current = HashPool(*wanted)
        return _current


def hash_with_pool(password: str) -> str:
    """Hash on the process's pool, from a thread (the CLI, a page's worker thread)."""
    return pool().call(lambda: hash_password(password))


def verify_with_pool(encoded: str, password: str) -> bool:
    """Verify on the process's pool, from a thread."""
    return pool().call(lambda: verify(encoded, password))


def hash_password(password: str) -> str:
    """The argon2id encoding of `password` (run this on a pool's thread)."""
    return _hasher.hash(password)


def verify(encoded: str, password: str) -> bool:
    """Whether `password` matches `encoded`; a malformed hash matches nothing."""
    try:
        return _hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    return _hasher.check_needs_rehash(encoded)


@cache
def dummy_hash() -> str:
    """Verified against when the username is unknown, so that both cost the same time.

    Made by the first login, not at import: an argon2 hash costs every server process
    ~0.1 s of CPU at startup otherwise (docs/operations.md).
    """
    return _hasher.hash(secrets.token_urlsafe(16))
