"""The company's payment instructions, as data: which service to choose in each channel and
which number to type.

The texts live in one place, `tolom/data/payment_instructions.json` (or the file named by
the `payment_instructions_file` setting), so the company can change a wording without a
code change. They are read and checked once: a placeholder this module cannot fill is a
startup error, never a half-filled invoice in a customer's hands.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from tolom.formatting import date_time, som

# What each service's texts may say in braces, filled from the invoice or the customer.
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "eds": frozenset({"invoice_number", "amount", "valid_until"}),
    "sochi": frozenset({"inn"}),
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class InstructionsError(ValueError):
    """The instructions file cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Channel:
    """One way to pay: where to go, which service to choose, which number to type."""

    code: str
    title: str
    choose: str  # the service or section to choose
    enter: str  # the number to type, and where
    steps: tuple[str, ...]
    note: str | None = None
    requisites: bool = False  # print the company's bank requisites under it


@dataclass(frozen=True, slots=True)
class Instructions:
    """How to pay one service, every channel; texts filled or (as loaded) with placeholders."""

    service: str
    title: str
    intro: str
    channels: tuple[Channel, ...]

    def filled(self, values: Mapping[str, str]) -> Instructions:
        """The texts with their placeholders replaced by `values` (each must be given)."""
        missing = PLACEHOLDERS[self.service] - values.keys()
        if missing:
            raise InstructionsError(f"не заданы значения: {', '.join(sorted(missing))}")

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        return Instructions(
            self.service,
            fill(self.title),
            fill(self.intro),
            tuple(
                Channel(
                    c.code,
                    fill(c.title),
                    fill(c.choose),
                    fill(c.enter),
                    tuple(fill(s) for s in c.steps),
                    fill(c.note) if c.note is not None else None,
                    c.requisites,
                )
                for c in self.channels
            ),
        )


def invoice_values(number: str, total: int, expires_at: datetime) -> dict[str, str]:
    """The `eds` placeholders' values for an invoice, worded as the invoice PDF prints them:
    the PDF and the "How to pay" page (`site.pay`) fill the same texts the same way."""
    return {"invoice_number": number, "amount": som(total), "valid_until": date_time(expires_at)}


def shipped_text() -> str:
    return (resources.files("tolom") / "data" / "payment_instructions.json").read_text("utf-8")


@lru_cache(maxsize=4)
def load(path: str = "") -> dict[str, Instructions]:
    """Every service's instructions from `path` (empty: the shipped file), checked."""
    text = Path(path).read_text("utf-8") if path else shipped_text()
    try:
        data = json.loads(text)
    except ValueError as error:
        raise InstructionsError(
            f"{path or 'payment_instructions.json'}: не JSON: {error}"
        ) from None
    return parse(data)


def parse(data: Any) -> dict[str, Instructions]:
    """Instructions from the decoded JSON; InstructionsError names the first fault."""
    services = _field(data, "services", dict, "")
    found = {}
    for service in PLACEHOLDERS:
        where = f"services.{service}"
        item = _field(services, service, dict, "services")
        channels = _field(item, "channels", list, where)
        if not channels:
            raise InstructionsError(f"{where}.channels: нужен хотя бы один способ оплаты")
        found[service] = Instructions(
            service,
            _text(item, "title", where, service),
            _text(item, "intro", where, service),
            tuple(_channel(c, f"{where}.channels[{i}]", service) for i, c in enumerate(channels)),
        )
    return found


def _channel(item: Any, where: str, service: str) -> Channel:
    if not isinstance(item, dict):
        raise InstructionsError(f"{where}: нужен объект")
    steps = _field(item, "steps", list, where)
    requisites = item.get("requisites", False)
    if not isinstance(requisites, bool):
        raise InstructionsError(f"{where}.requisites: нужно true или false")
    return Channel(
        code=_text(item, "code", where, service),
        title=_text(item, "title", where, service),
        choose=_text(item, "choose", where, service),
        enter=_text(item, "enter", where, service),
        steps=tuple(_checked(s, f"{where}.steps[{i}]", service) for i, s in enumerate(steps)),
        note=_text(item, "note", where, service) if "note" in item else None,
        requisites=requisites,
    )


def _field(item: Any, name: str, kind: type, where: str) -> Any:
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, kind):
        label = "объект" if kind is dict else "список" if kind is list else "строка"
        raise InstructionsError(f"{where + '.' if where else ''}{name}: нужен {label}")
    return value


def _text(item: dict[str, Any], name: str, where: str, service: str) -> str:
    return _checked(item.get(name), f"{where}.{name}", service)


def _checked(value: Any, where: str, service: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InstructionsError(f"{where}: нужен непустой текст")
    for name in _PLACEHOLDER.findall(value):
        if name not in PLACEHOLDERS[service]:
            allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS[service]))
            raise InstructionsError(f"{where}: неизвестная подстановка {{{name}}}; можно {allowed}")
    if _PLACEHOLDER.sub("", value).count("{") or _PLACEHOLDER.sub("", value).count("}"):
        raise InstructionsError(f"{where}: непарная фигурная скобка")
    return value
