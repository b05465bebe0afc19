"""A cap on unauthenticated gateway requests per client address.

Every agent request is recorded (PRODUCT invariant 5), and so is a request that fails
authentication — which would let anyone fill the request log, and the database's write
capacity, by sending requests without credentials. Each address may have a few such
requests recorded per minute (enough for an agent fixing its configuration); past that,
its unauthenticated requests are answered "too many requests" without a record of each,
and the operations log says how many were refused that way.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
_MAX_ADDRESSES = 100_000  # a flood from many addresses clears the table, never grows it


class StrangerLimit:
    """Counts unauthenticated requests per address in fixed one-minute windows."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._window = 0
        self._counts: dict[str, int] = {}

    def admit(self, address: str, now: float | None = None) -> float | None:
        """None if this unauthenticated request from `address` may be answered and recorded;
        otherwise how many seconds until the address's window ends (for Retry-After)."""
        moment = time.monotonic() if now is None else now
        window = int(moment // WINDOW_SECONDS)
        with self._lock:
            if window != self._window or len(self._counts) > _MAX_ADDRESSES:
                self._report()
                self._window, self._counts = window, {}
            count = self._counts.get(address, 0) + 1
            self._counts[address] = count
        if count <= self.per_minute:
            return None
        return (window + 1) * WINDOW_SECONDS - moment

    def _report(self) -> None:
        for address, count in self._counts.items():
            if count > self.per_minute:
                log.warning(
                    "%d unauthenticated gateway requests from %s in a minute; %d answered "
                    "429 without a record",
                    count,
                    address,
                    count - self.per_minute,
                )
