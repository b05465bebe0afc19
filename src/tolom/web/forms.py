"""What the back-office pages share when they read a request: numbers in the URL, keyset
cursors, and the one exception for a filter value no form offers."""

from __future__ import annotations

MAX_ID_DIGITS = 18  # below 2**63: anything longer is not one of our ids


class BadFilter(ValueError):
    """A filter value the page's form could not have sent (answered 400)."""


def number(value: str | None) -> int | None:
    """An id from a URL or a form: ASCII digits only (no "٣", no "+1", no spaces), or None."""
    if not value or not (value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS):
        return None
    return int(value)


def cursor(value: str | None) -> int | None:
    """A keyset page's cursor (the last id seen): None for the first page, BadFilter if it
    is not an id."""
    if not value:
        return None
    found = number(value)
    if found is None:
        raise BadFilter(value)
    return found
