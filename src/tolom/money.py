"""Money in tyiyn (1 som = 100 tyiyn, currency KGS): parsing and formatting, never floats."""

from __future__ import annotations

import re

from tolom.texts import DEFAULT, N_, text

CURRENCY = "KGS"
TYIYN_PER_SOM = 100

# The one amount grammar of the agent protocols and the APIs, written so that JSON Schema
# (ECMA-262) reads it too: the REST models publish it as their `pattern`. ASCII digits only:
# `\d` would also accept Arabic-Indic and other Unicode digits.
AMOUNT_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,2})?$"
# The grammar in words, for whoever sent an amount outside it (agents, the CLI).
AMOUNT_RULE = text(DEFAULT, N_("money.amount_rule"))
_AGENT_AMOUNT = re.compile(AMOUNT_PATTERN)


class MalformedAmount(ValueError):
    """The text is not an amount in the form the agent protocols allow."""


def parse_amount(text: str) -> int:
    """Parse an agent's amount ("500", "500.5", "500.50") into tyiyn.

    At most two decimals and a dot as the separator; signs, exponents, spaces, thousands
    separators and non-ASCII digits are refused. Zero parses (a check's placeholder is
    "0.00"); whether an amount is acceptable is the payment rules' decision, not this one's.
    """
    if _AGENT_AMOUNT.fullmatch(text) is None:  # fullmatch: "$" admits no trailing newline
        raise MalformedAmount(text)
    som, _dot, tyiyn = text.partition(".")
    return int(som) * TYIYN_PER_SOM + int(tyiyn.ljust(2, "0"))


def format_amount(tyiyn: int) -> str:
    """Render tyiyn as the protocols want it: "500.00", "-12.05"."""
    sign = "-" if tyiyn < 0 else ""
    som, rest = divmod(abs(tyiyn), TYIYN_PER_SOM)
    return f"{sign}{som}.{rest:02d}"


# People's amounts: groups of three split by a space (also no-break or narrow no-break, as
# pages print them), a comma or a dot before at most two decimals.
_PEOPLE_AMOUNT = re.compile(
    r"(?P<som>[0-9]{1,15}|[0-9]{1,3}(?:[ \u00a0\u202f][0-9]{3}){1,4})"
    r"(?:[.,](?P<tyiyn>[0-9]{1,2}))?"
)


def parse_som(text: str) -> int:
    """Parse an amount in som as a person types it into tyiyn: "1 510,50", "1510.5",
    "1510,50", "1 510" (surrounding spaces ignored).

    Thousands only as groups of three split by one space, and a comma or a dot before at
    most two decimals; signs, letters, exponents, "1,510.50" and non-ASCII digits are
    refused (MalformedAmount). Zero parses; whether an amount is acceptable is the caller's
    rule, not this one's.
    """
    match = _PEOPLE_AMOUNT.fullmatch(text.strip())
    if match is None:
        raise MalformedAmount(text)
    som = int("".join(c for c in match["som"] if c.isdigit()))
    tyiyn = int((match["tyiyn"] or "0").ljust(2, "0"))
    return som * TYIYN_PER_SOM + tyiyn
