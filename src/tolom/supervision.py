"""A server worker stops when its supervisor is gone.

`tolom serve --workers N` runs uvicorn's supervisor, which starts N worker processes on one
listening socket. Stopped with SIGTERM or SIGINT it stops them; killed with SIGKILL (the OOM
killer, `kill -9`, a crashed container runtime) it cannot, and uvicorn's workers do not
notice: they go on serving on the old socket, unsupervised, holding the port, so a new
`tolom serve` cannot bind it. `start_parent_watchdog` makes a worker notice and stop itself.
See docs/operations.md.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.5  # how often a worker looks for its supervisor
GRACE_SECONDS = 30.0  # then how long its graceful shutdown may take before it just exits


def start_parent_watchdog(
    *, interval: float = CHECK_SECONDS, grace: float = GRACE_SECONDS
) -> threading.Thread | None:
    """In a worker process started by a supervisor, watch for the supervisor dying.

    When it has (the process was re-parented: `os.getppid()` is no longer the supervisor's
    pid), send this process SIGTERM, which uvicorn answers with its graceful shutdown; if
    the process is still there `grace` seconds later, exit at once. Returns the (daemon)
    thread, or None when this process was not started by `multiprocessing` (a single
    `tolom serve` process, tests, the CLI): its parent is a shell or a service manager,
    whose exit must not stop the server.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return None
    supervisor: int = parent.pid
    thread = threading.Thread(
        target=_watch,
        args=(supervisor, interval, grace),
        name="tolom-parent-watchdog",
        daemon=True,  # never keeps the process alive by itself
    )
    thread.start()
    return thread


def _watch(supervisor: int, interval: float, grace: float) -> None:
    """The watchdog's loop: one getppid() call per `interval`, nothing else."""
    while os.getppid() == supervisor:
        time.sleep(interval)
    log.warning("supervisor process %d is gone; stopping worker %d", supervisor, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    log.error("worker %d still running %.1f s after SIGTERM; exiting", os.getpid(), grace)
    os._exit(1)
