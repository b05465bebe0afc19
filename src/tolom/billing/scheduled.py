"""Billing's scheduled jobs. The event worker runs them (hourly) but does not know them:
whoever starts a worker passes `JOBS` (`tolom worker`, `tolom serve --with-worker`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from tolom.billing import orders
from tolom.db import partitions
from tolom.settings import Settings

log = logging.getLogger("tolom.worker")

Job = Callable[[Engine, Settings], None]


def announce_expiring_signatures(engine: Engine, settings: Settings) -> None:
    """Announce signatures about to expire (each only once, so running it often, or from
    several workers, announces nothing twice)."""
    today = datetime.now(orders.ZONE).date()
    with engine.begin() as conn:
        announced = orders.announce_expiring(conn, today, settings.signature_expiry_warning_days)
    if announced:
        log.info("announced %d signature(s) expiring soon", announced)


# The coming months' partitions of the request log and the outbox (tolom.db.partitions)
# ride along: the worker is the one hourly process every installation runs. So does the
# agent sandbox's nightly reset (`tolom.payments.sandbox.nightly_job`), added where a
# worker is started: payments stands above billing, which must not import it.
JOBS: tuple[Job, ...] = (announce_expiring_signatures, partitions.ensure_job)
