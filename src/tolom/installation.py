"""What every installation has besides its schema: services, products, report tariffs, system
accounts and the manual-payment channels. Idempotent; run by `tolom db upgrade` and the test
fixtures."""

from __future__ import annotations

from sqlalchemy import Connection

from tolom.agents.service import ensure_channels
from tolom.billing import catalog, tariffs
from tolom.ledger.accounts import ensure_system_accounts


def prepare(conn: Connection) -> None:
    """Add whatever of the shipped configuration is missing; never changes what exists."""
    catalog.seed(conn)
    tariffs.seed(conn)
    ensure_system_accounts(conn)
    ensure_channels(conn)
