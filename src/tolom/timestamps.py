"""Timestamps as the database hands them back."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """An aware datetime: SQLite returns naive ones, which were written as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
