"""Allowed values of a parameter, declared on its schema field and checked by one walker.

A schema field declared as ``epochs: Annotated[int, at_least(1)]`` carries its rule in its
type; :func:`violations` walks a parameter tree and names every value outside its rule,
with the dotted key and what is allowed, so the rules live next to the parameters they
constrain and every refusal says which key to fix.

Example:
    >>> from pipeline.config.scoring_schema import CalibrateParams, DomainParams
    >>> for problem in violations(CalibrateParams(voxel_fpr=0.0, scan_fpr=0.05,
    ...                           domain=DomainParams(0.0, 0.02, 0, 2.0)), "calibrate."):
    ...     print(problem)
    calibrate.voxel_fpr must be in (0, 1), got 0.0
    calibrate.domain.tolerance must be > 0, got 0.0
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def allows(self, value: Any) -> bool:
        return value in self.values

    def describe(self) -> str:
        return f"one of {sorted(self.values, key=str)}"


@dataclass(frozen=True)
class Range:
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: Any) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def describe(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low == -math.inf:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open else ']'}")


@dataclass(frozen=True)
class Each:
    """A rule for every element of a list, and optionally its length."""

    item: Choice | Range
    nonempty: bool = False
    length: int = 0  # 0: any

    def problem(self, value: list[Any]) -> str | None:
        if self.length and len(value) != self.length:
            return f"must have {self.length} entries"
        if self.nonempty and not value:
            return "must not be empty"
        bad = [v for v in value if not self.item.allows(v)]
        return f"entries must be {self.item.describe()}" if bad else None


Rule = Choice | Range | Each


def choice(*values: Any) -> Choice:
    return Choice(tuple(values))


def at_least(low: float) -> Range:
    return Range(low=low)


def above(low: float) -> Range:
    return Range(low=low, low_open=True)


def below(high: float) -> Range:
    return Range(high=high, high_open=True)


def between(low: float, high: float, low_open: bool = False) -> Range:
    return Range(low=low, high=high, low_open=low_open)


def inside(low: float, high: float) -> Range:
    """The open interval (low, high)."""
    return Range(low=low, high=high, low_open=True, high_open=True)


def each(item: Choice | Range, nonempty: bool = False, length: int = 0) -> Each:
    """A list whose entries follow the rule ``item``."""
    return Each(item, nonempty=nonempty, length=length)


def _rule(hint: Any) -> Rule | None:
    rules = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Choice | Range | Each)]
    return rules[0] if rules else None


def _problem(rule: Choice | Range | Each, value: Any) -> str | None:
    if isinstance(rule, Each):
        return rule.problem(value)
    return None if rule.allows(value) else f"must be {rule.describe()}"


def violations(section: Any, prefix: str = "") -> list[str]:
    """Every value of the dataclass tree ``section`` outside its declared rule."""
    hints = typing.get_type_hints(type(section), include_extras=True)
    out = []
    for f in dataclasses.fields(section):
        rule = _rule(hints[f.name])
        value = getattr(section, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out += violations(value, f"{key}.")
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                out += violations(item, f"{key}[{i}].")
        elif rule is not None:
            problem = _problem(rule, value)
            if problem:
                out.append(f"{key} {problem}, got {value!r}")
    return out
