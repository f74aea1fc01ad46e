"""Type descriptors: how one JSON argument is checked before Keras ever sees it.

Each descriptor turns a client value into a normalized JSON value (`check`), turns that into
what the Keras constructor takes (`to_keras`), and describes itself for the catalogue
(`describe`). Every integer has an upper bound and every float must be finite and in range:
Keras silently misbehaves on values such as ``RepeatVector(2**62)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

_RECEIVED_CHARS = 80


def received(value: Any) -> str:
    """Render a client value for an error message, JSON-style and truncated."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _RECEIVED_CHARS else text[: _RECEIVED_CHARS - 3] + "..."


class ArgumentError(Exception):
    """One argument value that its descriptor refuses.

    Attributes:
        subpath: where inside the argument the problem is (".stddev", "[2]"), or "".
        message: what was expected and what was received.
    """

    def __init__(self, message: str, subpath: str = ""):
        super().__init__(message)
        self.message = message
        self.subpath = subpath

    @classmethod
    def expected(cls, expectation: str, value: Any) -> ArgumentError:
        return cls(f"expects {expectation}; received {received(value)}")

    def within(self, step: str) -> ArgumentError:
        """The same error, seen from one level further out (`step` is ".key" or "[i]")."""
        return ArgumentError(self.message, step + self.subpath)


def did_you_mean(name: str, known: list[str]) -> str:
    """A '; did you mean ...?' hint for a misspelt name, or ''."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


class Descriptor:
    """Base of all descriptors; subclasses are frozen dataclasses."""

    expectation = "a value"

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def to_keras(self, value: Any) -> Any:
        return value

    def describe(self) -> dict:
        raise NotImplementedError

    def refuse(self, value: Any) -> ArgumentError:
        return ArgumentError.expected(self.expectation, value)


def _is_integer(value: Any) -> bool:
    # JSON booleans arrive as Python bools, which are ints: never accept them as numbers.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_integer(value) or isinstance(value, float)) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class Integer(Descriptor):
    minimum: int
    maximum: int

    @property
    def expectation(self) -> str:
        return f"an integer from {self.minimum} to {self.maximum}"

    def check(self, value):
        if not _is_integer(value) or not self.minimum <= value <= self.maximum:
            raise self.refuse(value)
        return value

    def describe(self):
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclasses.dataclass(frozen=True)
class Number(Descriptor):
    minimum: float
    maximum: float
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    @property
    def expectation(self) -> str:
        if not (self.exclusive_minimum or self.exclusive_maximum):
            return f"a finite number from {self.minimum:g} to {self.maximum:g}"
        low = "greater than" if self.exclusive_minimum else "at least"
        high = "less than" if self.exclusive_maximum else "at most"
        return f"a finite number {low} {self.minimum:g} and {high} {self.maximum:g}"

    def check(self, value):
        if not _is_number(value):
            raise self.refuse(value)
        too_low = value <= self.minimum if self.exclusive_minimum else value < self.minimum
        too_high = value >= self.maximum if self.exclusive_maximum else value > self.maximum
        if too_low or too_high:
            raise self.refuse(value)
        return value

    def describe(self):
        low = "exclusiveMinimum" if self.exclusive_minimum else "minimum"
        high = "exclusiveMaximum" if self.exclusive_maximum else "maximum"
        return {"type": "number", low: self.minimum, high: self.maximum}


@dataclasses.dataclass(frozen=True)
class Boolean(Descriptor):
    expectation = "a boolean (true or false)"

    def check(self, value):
        if not isinstance(value, bool):
            raise self.refuse(value)
        return value

    def describe(self):
        return {"type": "boolean"}


@dataclasses.dataclass(frozen=True)
class Choice(Descriptor):
    values: tuple

    @property
    def expectation(self) -> str:
        return "one of " + ", ".join(received(v) for v in self.values)

    def check(self, value):
        # Comparing types too keeps 1 from matching True, and 1.0 from matching 1.
        if any(value == v and type(value) is type(v) for v in self.values):
            return value
        strings = [v for v in self.values if isinstance(v, str)]
        raise ArgumentError(f"expects {self.expectation}; received {received(value)}"
                            + did_you_mean(value, strings))

    def describe(self):
        return {"enum": list(self.values)}


@dataclasses.dataclass(frozen=True)
class Text(Descriptor):
    pattern: str
    description: str

    @property
    def expectation(self) -> str:
        return self.description

    def check(self, value):
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise self.refuse(value)
        return value

    def describe(self):
        return {"type": "string", "pattern": self.pattern}


@dataclasses.dataclass(frozen=True)
class Nullable(Descriptor):
    inner: Descriptor

    @property
    def expectation(self) -> str:
        return f"null or {self.inner.expectation}"

    def check(self, value):
        return None if value is None else self.inner.check(value)

    def to_keras(self, value):
        return None if value is None else self.inner.to_keras(value)

    def describe(self):
        return {**self.inner.describe(), "nullable": True}


@dataclasses.dataclass(frozen=True)
class ListOf(Descriptor):
    item: Descriptor
    min_length: int = 1
    max_length: int = 8
    as_tuple: bool = True

    @property
    def expectation(self) -> str:
        if self.min_length == self.max_length:
            count = f"{self.min_length}"
        else:
            count = f"{self.min_length} to {self.max_length}"
        return f"a list of {count} items, each {self.item.expectation}"

    def check(self, value):
        if not isinstance(value, list) or not (
                self.min_length <= len(value) <= self.max_length):
            raise self.refuse(value)
        checked = []
        for index, item in enumerate(value):
            try:
                checked.append(self.item.check(item))
            except ArgumentError as error:
                raise error.within(f"[{index}]") from None
        return checked

    def to_keras(self, value):
        items = [self.item.to_keras(v) for v in value]
        return tuple(items) if self.as_tuple else items

    def describe(self):
        return {"type": "array", "items": self.item.describe(),
                "minItems": self.min_length, "maxItems": self.max_length}


@dataclasses.dataclass(frozen=True)
class AnyOf(Descriptor):
    options: tuple

    @property
    def expectation(self) -> str:
        return " or ".join(option.expectation for option in self.options)

    def _matching(self, value) -> Descriptor:
        for option in self.options:
            try:
                option.check(value)
                return option
            except ArgumentError:
                continue
        raise self.refuse(value)

    def check(self, value):
        return self._matching(value).check(value)

    def to_keras(self, value):
        return self._matching(value).to_keras(value)

    def describe(self):
        return {"anyOf": [option.describe() for option in self.options]}


@dataclasses.dataclass(frozen=True)
class Spatial(Descriptor):
    """An int, or one int per spatial dimension (kernel_size, strides, pool_size, ...).

    `rank` is the layer's number of spatial dimensions, set per layer with `for_rank`; with
    `pairs`, each dimension may also take a (before, after) pair (cropping, padding).
    """

    minimum: int
    maximum: int
    rank: int = 1
    pairs: bool = False

    def for_rank(self, rank: int) -> Spatial:
        return dataclasses.replace(self, rank=rank)

    def _forms(self) -> AnyOf:
        number = Integer(self.minimum, self.maximum)
        forms = [number, ListOf(number, self.rank, self.rank)]
        if self.pairs:
            pair = ListOf(number, 2, 2)
            forms.append(pair if self.rank == 1 else ListOf(pair, self.rank, self.rank))
        return AnyOf(tuple(forms))

    @property
    def expectation(self) -> str:
        return self._forms().expectation

    def check(self, value):
        return self._forms().check(value)

    def to_keras(self, value):
        return self._forms().to_keras(value)

    def describe(self):
        return self._forms().describe()


def check_arguments(given: Mapping, accepted: Mapping[str, Descriptor]) -> tuple[dict, list]:
    """Check every argument in `given` against `accepted`.

    Args:
        given: argument name to client value.
        accepted: argument name to descriptor.

    Returns:
        `(normalized, problems)`: the checked values, and `(argument, subpath, message)`
        for each refused one (unknown names included, with a did-you-mean hint).
    """
    normalized, problems = {}, []
    for name, value in given.items():
        descriptor = accepted.get(name)
        if descriptor is None:
            hint = did_you_mean(name, sorted(accepted))
            problems.append((name, "", f"is not an accepted argument{hint}"))
            continue
        try:
            normalized[name] = descriptor.check(value)
        except ArgumentError as error:
            problems.append((name, error.subpath, error.message))
    return normalized, problems


def json_default(value: Any) -> Any:
    """A Keras signature default as JSON (tuples become lists), or raise TypeError."""
    if isinstance(value, tuple):
        return [json_default(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise TypeError(f"not a JSON default: {value!r}")


# Keys that would make Keras import or look up arbitrary code: never accepted anywhere.
FORBIDDEN_KEYS = frozenset(
    {"module", "class_name", "registered_name", "config", "function", "fn", "build_config",
     "compile_config", "__class__", "__passive_serialization__"})
FORBIDDEN_MESSAGE = ("is never accepted: a spec names only allow-listed built-ins, by 'type', "
                     "with plain JSON arguments")

SEED = Nullable(Integer(0, 2**31 - 1))
AXIS = AnyOf((Integer(-8, 8), ListOf(Integer(-8, 8), 1, 8)))


def signature_defaults(function) -> dict[str, Any]:
    """Parameter name to default (`inspect.Parameter.empty` when required) of `function`."""
    import inspect

    return {name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if name != "self" and parameter.kind not in (
                inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


def describe_arguments(accepted: Mapping[str, Descriptor], defaults: Mapping[str, Any]) -> dict:
    """Catalogue entries for `accepted` arguments, with the defaults Keras declares.

    Args:
        accepted: argument name to descriptor.
        defaults: argument name to the Keras default, as from `signature_defaults`; an
            argument missing here is optional with an unknown (Keras-internal) default.
    """
    import inspect

    described = {}
    for name, descriptor in accepted.items():
        entry = descriptor.describe()
        default = defaults.get(name, None)
        required = name in defaults and default is inspect.Parameter.empty
        entry["required"] = required
        if not required:
            try:
                entry["default"] = json_default(default)
            except TypeError:
                pass
        described[name] = entry
    return described
