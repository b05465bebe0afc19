"""Ids as the adapters receive them in a path, a query or a form: ASCII digits only (no
"٣", no "+1", no spaces), at most 18 of them (below 2**63, so they fit a BIGINT). A keyset
page's cursor is the last id it showed. What a bad id means is each adapter's to say: the
API answers 422, a page 404 or 400."""

from __future__ import annotations

MAX_ID_DIGITS = 18


def id_from(text: str | None) -> int | None:
    """The id `text` spells, or None if it spells none."""
    if not text or not (text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS):
        return None
    return int(text)


def next_cursor(ids: list[int], limit: int) -> tuple[int, str | None]:
    """How many of `limit + 1` fetched rows to show, and the cursor to the rest (if any)."""
    if len(ids) > limit:
        return limit, str(ids[limit - 1])
    return len(ids), None
