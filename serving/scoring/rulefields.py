"""What a rule may look at, and whether it can be evaluated at all. Pure.

A rule names a payment field of the contract, a computed feature, or a date function of a
date field: `hour(timestamp)`, `weekday(timestamp)` (Monday = 0), `days_since(account_created_at)`
(days from that date to the payment). Each field has a kind (number, text, date); a rule whose
field is unknown, whose function does not fit its argument, or whose value cannot be compared
with the field is refused when the policy is read (PUT, backtest, file), with the rule and the
reason, so that no rule can fail, or silently never match, at scoring time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

Kind = Literal["number", "text", "date"]
FUNCTIONS: tuple[str, ...] = ("hour", "weekday", "days_since")
ORDER_OPS = (">", ">=", "<", "<=")
_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
_DAY_S = 86_400.0


class RuleError(ValueError):
    """A rule that cannot be evaluated: `rule` is its name, `reason` what is wrong."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"rule {rule!r}: {reason}")
        self.rule = rule
        self.reason = reason


@functools.cache
def field_kinds() -> Mapping[str, Kind]:
    """Contract fields of a scored payment (serving.core.schemas.PaymentIn) and every declared
    feature (features.registry), with their kind."""
    import types
    import typing

    from features.registry import feature_names
    from serving.core.schemas import PaymentIn

    kinds: dict[str, Kind] = {}
    for name, info in PaymentIn.model_fields.items():
        ann = info.annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            ann = next(a for a in typing.get_args(ann) if a is not type(None))
        if ann is datetime:
            kinds[name] = "date"
        elif ann in (float, int):
            kinds[name] = "number"
        else:  # str, or a Literal of strings
            kinds[name] = "text"
    for name in feature_names():
        kinds.setdefault(name, "number")
    return kinds


@functools.cache
def payment_fields() -> frozenset[str]:
    """The contract's fields (a rule on one of these reads the payment, not a feature)."""
    from serving.core.schemas import PaymentIn

    return frozenset(PaymentIn.model_fields)


def parse_field(expr: str) -> tuple[str | None, str]:
    """(function or None, field) of a rule's `field`: `amount` or `hour(timestamp)`."""
    m = _CALL.match(expr)
    if m:
        return m.group(1), m.group(2)
    return None, expr.strip()


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check(
    name: str, expr: str, op: str, value: Any, kinds: Mapping[str, Kind] | None = None
) -> None:
    """Raise RuleError if `expr op value` cannot be evaluated on a scored payment."""
    kinds = field_kinds() if kinds is None else kinds
    func, field = parse_field(expr)
    if field not in kinds:
        raise RuleError(name, f"unknown field {field!r} (a contract field or a feature name)")
    kind = kinds[field]
    if func is not None:
        if func not in FUNCTIONS:
            raise RuleError(name, f"unknown function {func!r} (use {', '.join(FUNCTIONS)})")
        if kind != "date":
            raise RuleError(name, f"{func}() needs a date field; {field!r} is a {kind}")
        kind = "number"
    elif kind == "date":
        raise RuleError(
            name,
            f"{field!r} is a date: compare it through {', '.join(f + '()' for f in FUNCTIONS)}",
        )
    if op == "in":
        if not isinstance(value, list | tuple | set | frozenset) or not value:
            raise RuleError(name, "op 'in' needs a non-empty list as value")
        items = list(value)
    else:
        items = [value]
    for v in items:
        if kind == "number" and not _is_number(v):
            raise RuleError(name, f"{expr!r} is a number; the value {_what(v)} is not")
        if kind == "text":
            if not isinstance(v, str):
                raise RuleError(name, f"{expr!r} is text; the value {_what(v)} is not")
            if op in ORDER_OPS:
                raise RuleError(name, f"{expr!r} is text: use ==, != or in, not {op}")


def _what(v: Any) -> str:
    if isinstance(v, bool):
        return "(true/false)"
    if isinstance(v, str):
        return "(text)"
    if isinstance(v, int | float):
        return "(a number)"
    return f"({type(v).__name__})"


def value_of(facts: Mapping[str, Any], func: str | None, field: str) -> Any:
    """The value a rule compares: the field itself, or the date function of it (None when the
    payment lacks it)."""
    v = facts.get(field)
    if func is None or v is None:
        return v
    if not isinstance(v, datetime):
        return None
    if func == "hour":
        return v.hour
    if func == "weekday":
        return v.weekday()
    ts = facts.get("timestamp")
    if not isinstance(ts, datetime):
        return None
    return (ts - v).total_seconds() / _DAY_S
