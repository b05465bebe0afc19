"""Money in tyiyn (1 som = 100 tyiyn, currency KGS): parsing and formatting, never floats."""

from __future__ import annotations

import re

CURRENCY = "KGS"
TYIYN_PER_SOM = 100

# ASCII digits only: `\d` would also accept Arabic-Indic and other Unicode digits.
_AGENT_AMOUNT = re.compile(r"(?P<som>[0-9]{1,15})(?:\.(?P<tyiyn>[0-9]{1,2}))?")


class MalformedAmount(ValueError):
    """The text is not an amount in the form the agent protocols allow."""


def parse_amount(text: str) -> int:
    """Parse an agent's amount ("500", "500.5", "500.50") into tyiyn.

    At most two decimals and a dot as the separator; signs, exponents, spaces, thousands
    separators and non-ASCII digits are refused. Zero parses (a check's placeholder is
    "0.00"); whether an amount is acceptable is the payment rules' decision, not this one's.
    """
    match = _AGENT_AMOUNT.fullmatch(text)
    if match is None:
        raise MalformedAmount(text)
    som = int(match["som"])
    tyiyn = int((match["tyiyn"] or "0").ljust(2, "0"))
    return som * TYIYN_PER_SOM + tyiyn


def format_amount(tyiyn: int) -> str:
    """Render tyiyn as the protocols want it: "500.00", "-12.05"."""
    sign = "-" if tyiyn < 0 else ""
    som, rest = divmod(abs(tyiyn), TYIYN_PER_SOM)
    return f"{sign}{som}.{rest:02d}"


def format_som(tyiyn: int) -> str:
    """Render tyiyn for people: "1 510.00 сом" (thin grouping, no float on the way)."""
    sign = "-" if tyiyn < 0 else ""
    som, rest = divmod(abs(tyiyn), TYIYN_PER_SOM)
    grouped = f"{som:,}".replace(",", " ")
    return f"{sign}{grouped}.{rest:02d} сом"
