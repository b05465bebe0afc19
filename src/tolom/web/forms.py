"""What the back-office pages share when they read a request: the pydantic base every page's
form is (`PageForm`), numbers in the URL, keyset cursors, and the one exception for a value
no form offers.

A form's fields are declared with the same types as the operator API's models
(`tolom.fields`: amounts, INNs, days, choices, the core's lengths), so a rule lives once.
Reading tells two failures apart, as the pages always have: a value no page of ours could
send (a choice not offered, a broken cursor or hidden field: tampering) is `BadFilter`, which
the page answers 400; a value a person typed wrongly (a field named in the form's
`mistakes`) is said next to that field, with what was typed shown back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from tolom.httpkit.ids import id_from


class BadFilter(ValueError):
    """A value the page's form could not have sent (answered 400)."""


def mistake(key: str, **values: Any) -> PydanticCustomError:
    """A form validator's refusal that names the page's message (key and its values), for
    what a person may well have typed wrongly."""
    return PydanticCustomError("mistake", key, {"key": key, **values})


def _tampered(what: str) -> PydanticCustomError:
    return PydanticCustomError("tampered", "no form of ours sends this {what}", {"what": what})


def at_most(limit: int) -> BeforeValidator:
    """A text longer than `limit` (its input's `maxlength`) is tampering, even in a field
    that may hold a typed mistake (`Annotated[str, at_most(64)]`)."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value.strip()) > limit:
            raise _tampered("length")
        return value

    return BeforeValidator(check)


def one_of(choices: Iterable[str]) -> AfterValidator:
    """A choice among those the core lists at run time (a select's options): anything else
    is tampering, or the field's mistake when the form names it in `mistakes`."""
    allowed = frozenset(choices)

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError("not offered")
        return value

    return AfterValidator(check)


class PageForm(BaseModel):
    """A page's form as typed: frozen, unknown fields ignored (the CSRF token, buttons),
    texts stripped.

    Subclasses declare fields (aliases for names Python cannot spell, e.g. `from`) and
    `mistakes`: field → the message key said when that typed text breaks the field's rule.
    A failure of any other field is tampering. A field that may hold a mistake is text
    (what was typed), read into its value by a property, so the form re-renders as typed.
    """

    model_config = ConfigDict(
        frozen=True, extra="ignore", str_strip_whitespace=True, populate_by_name=True
    )

    mistakes: ClassVar[Mapping[str, str]] = {}
    # The message said for a text longer than its field takes (`max` is the limit);
    # None: the field's own key.
    too_long: ClassVar[str | None] = None

    # field → what is wrong with it, in the user's language (pages add the core's refusals)
    errors: dict[str, str] = Field(default_factory=dict, exclude=True)

    @classmethod
    def read(cls, fields: Mapping[str, object], t: Any = None) -> Self:
        """The form from posted fields (`auth.form_fields`) or query parameters (a field
        posted many times, as checkboxes of one name, is given as a tuple).

        BadFilter for tampering; a typed mistake comes back in `errors` (said with `t`, a
        `web.i18n.Translator`; the key itself without one) and the form keeps the text."""
        data = {k: v for k, v in fields.items() if not cls._page_only(k)}
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            found = cls._mistakes(error, t)
        rest = {k: v for k, v in data.items() if cls._field_named(k) not in found}
        try:
            valid = cls.model_validate(rest)
        except ValidationError as error:  # a field without a default was mistyped
            raise BadFilter(str(error.errors()[0]["loc"])) from None
        typed = {name: _typed(data.get(cls._alias(name), "")) for name in found}
        return valid.model_copy(update={**typed, "errors": found})

    @classmethod
    def _mistakes(cls, error: ValidationError, t: Any) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in error.errors():
            loc = item.get("loc", ())
            name = cls._field_named(str(loc[0])) if loc else ""
            if name not in cls.mistakes or item["type"] == "tampered":
                raise BadFilter(name) from None
            ctx = item.get("ctx") or {}
            if item["type"] == "mistake":
                key, values = str(ctx["key"]), {k: v for k, v in ctx.items() if k != "key"}
            elif item["type"] == "string_too_long":
                key, values = cls.too_long or cls.mistakes[name], {"max": ctx["max_length"]}
            else:
                key, values = cls.mistakes[name], {}
            found.setdefault(name, t(key, **values) if t is not None else key)
        return found

    @classmethod
    def _page_only(cls, name: str) -> bool:
        """A field the page sets (excluded, as `errors`): never read from a request."""
        info = cls.model_fields.get(name)
        return info is not None and bool(info.exclude)

    @classmethod
    def _field_named(cls, name: str) -> str:
        """The attribute a posted name (or alias) stands for."""
        for attribute, info in cls.model_fields.items():
            if name in (attribute, info.alias):
                return attribute
        return name

    @classmethod
    def _alias(cls, attribute: str) -> str:
        return cls.model_fields[attribute].alias or attribute


def _checked(value: object) -> object:
    """A checkbox posts "1" when ticked and nothing when not."""
    return value == "1" if isinstance(value, str) else value


# A checkbox of a form (posted "1" when ticked).
Checkbox = Annotated[bool, BeforeValidator(_checked)]


def _typed(value: object) -> object:
    """What was typed, shown back: a text stripped, the choices of repeated checkboxes."""
    if isinstance(value, tuple):
        return value
    return value.strip() if isinstance(value, str) else ""


def number(value: str | None) -> int | None:
    """An id from a URL or a form (`httpkit.ids.id_from`), or None."""
    return id_from(value)


def cursor(value: str | None) -> int | None:
    """A keyset page's cursor (the last id seen): None for the first page, BadFilter if it
    is not an id."""
    if not value:
        return None
    found = number(value)
    if found is None:
        raise BadFilter(value)
    return found
