"""Time as Tolom keeps it: the home zone, and timestamps as the database hands them back."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Kyrgyzstan's zone (UTC+6, no daylight saving): the company's days, customers' times, the
# default zone of a new agent. Defined here only.
HOME_ZONE_NAME = "Asia/Bishkek"
HOME_ZONE = ZoneInfo(HOME_ZONE_NAME)


def as_utc(moment: datetime) -> datetime:
    """An aware datetime: SQLite returns naive ones, which were written as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
