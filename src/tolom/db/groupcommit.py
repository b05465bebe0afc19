"""Group commit: items that arrive while earlier ones are in flight travel together.

Used by the gateway step (`gateway.step`) for agents' calls; it knows nothing of them:
`run` takes a batch and returns one result per item, in order.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from anyio import to_thread

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Calls queue here; up to `concurrency` drainers each take the next batch and run it.

    Natural batching: nothing waits on purpose unless `max_wait` is set, so a lone request
    goes straight through, and under load the queue that builds up while transactions are
    in flight becomes the next batch.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Item]], list[Result]],
        *,
        max_batch: int,
        concurrency: int,
        max_wait: float,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._max_wait = max_wait
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.sizes: Counter[int] = Counter()  # batch size → how many batches

    async def submit(self, call: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((call, future))
        if self._in_flight < self._concurrency:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            if self._max_wait > 0 and len(self._queue) < self._max_batch:
                await asyncio.sleep(self._max_wait)
            while self._queue:
                size = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(size)]
                self.sizes[size] += 1
                try:
                    answers = await to_thread.run_sync(self._run, [call for call, _ in batch])
                except BaseException as error:  # a bug or shutdown: nobody waits forever
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    raise
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self._in_flight -= 1
