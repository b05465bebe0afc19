"""Account identifiers the agents type: a customer's INN and an invoice number.

Validation here is purely syntactic, so a mistyped account is refused as "wrong format"
before any database lookup.
"""

from __future__ import annotations

import re
import secrets

_INN = re.compile(r"[0-9]{14}")
_INVOICE_NUMBER = re.compile(r"[0-9]{16}")
_TXN_ID = re.compile(r"[0-9]{1,20}")


def is_inn(text: str) -> bool:
    """An INN (ИНН) of an organisation or sole proprietor: exactly 14 ASCII digits."""
    return _INN.fullmatch(text) is not None


def luhn_check_digit(digits: str) -> str:
    """The Luhn digit that, appended to `digits`, makes a valid Luhn number."""
    total = 0
    # Walking from the right, the digit next to the (future) check digit is doubled.
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_invoice_number_shape(text: str) -> bool:
    """16 ASCII digits, whatever the check digit: what separates a mistyped invoice number
    (a digit wrong) from something that is no invoice number at all."""
    return _INVOICE_NUMBER.fullmatch(text) is not None


def is_invoice_number(text: str) -> bool:
    """16 ASCII digits whose last digit is the Luhn check digit of the first 15."""
    if not is_invoice_number_shape(text):
        return False
    return luhn_check_digit(text[:15]) == text[15]


def new_invoice_number() -> str:
    """A random invoice number: random so nobody can enumerate invoices through `check`.

    The first digit is never 0 so the number survives tools that treat it as an integer.
    """
    body = str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(14))
    return body + luhn_check_digit(body)


def is_txn_id(text: str) -> bool:
    """An agent's transaction id: 1 to 20 ASCII digits."""
    return _TXN_ID.fullmatch(text) is not None


def txn_key(txn_id: str) -> str:
    """The idempotency key of a well-formed txn_id: its number, so "0090" and "90" are one."""
    return str(int(txn_id))
