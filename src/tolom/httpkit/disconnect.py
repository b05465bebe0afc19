"""Long work for one request stops when its client goes away."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

T = TypeVar("T")

POLL_SECONDS = 0.5


async def run_while_connected(request: Request, work: Callable[[threading.Event], T]) -> T:
    """`work(gone)` in a worker thread; `gone` is set if the client disconnects meanwhile,
    for the work to notice and stop (e.g. `reconciliation.xlsx.cancelled_when`). Call it
    once the request's body has been read: the watcher then only waits for the end."""
    gone = threading.Event()

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_SECONDS)
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        return await run_in_threadpool(work, gone)
    finally:
        watcher.cancel()
