"""Lists and rules over the model's thresholds -> approve | review | decline. Pure.

Order of authority: a block list declines; an allow list approves; hard rules can only make a
decision stricter; the model's thresholds decide the rest. When the model is unavailable the
fallback settles only small amounts and sends the rest to review: it never declines on its own.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from data import pan
from serving.scoring import rulefields
from training.model import Thresholds

Action = Literal["approve", "review", "decline"]
LIST_FIELDS = ("card_id", "device_id", "ip_hash", "email_domain")
SEVERITY: dict[str, int] = {"approve": 0, "review": 1, "decline": 2}
# The fallback settles payments up to this amount unseen by any model: a small-amount rule,
# never "everything" (an admin who set 1e309 had the fallback approve a 5,000 payment).
MAX_FALLBACK_AMOUNT = 1_000.0
MAX_LIST_ENTRIES = 100_000  # per allow/block list
MAX_RULES = 200
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda a, b: a in b,
}


@dataclass(frozen=True)
class Rule:
    """`field op value -> action`, on a payment field, a computed feature or a date function of
    a date field (`hour(timestamp)`; see rulefields). One that cannot be evaluated is refused
    here, when the policy is read, never at scoring time."""

    name: str
    field: str
    op: str
    value: Any
    action: Literal["review", "decline"]

    def __post_init__(self) -> None:
        if pan.contains(self.name) or _holds_card_number(self.value):
            raise ValueError("rule: a name or value looks like a raw card number (refused)")
        if not _finite(self.value):
            raise ValueError(f"rule {self.name!r}: value must be finite (no NaN or Infinity)")
        if self.op not in _OPS:
            raise ValueError(f"rule {self.name!r}: unknown op {self.op!r} (use {', '.join(_OPS)})")
        if self.action not in ("review", "decline"):
            raise ValueError(f"rule {self.name!r}: action must be review or decline")
        rulefields.check(self.name, self.field, self.op, self.value)
        object.__setattr__(self, "_parsed", rulefields.parse_field(self.field))

    def matches(self, facts: Mapping[str, Any]) -> bool:
        func, name = self._parsed  # type: ignore[attr-defined]
        v = facts.get(name) if func is None else rulefields.value_of(facts, func, name)
        if v is None or (isinstance(v, float) and v != v):
            return False
        try:
            return bool(_OPS[self.op](v, self.value))
        except TypeError:
            return False


@dataclass(frozen=True)
class PolicyConfig:
    allow: Mapping[str, frozenset[str]] = field(default_factory=dict)
    block: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    fallback_max_amount: float = 50.0  # the fallback settles only payments up to this amount


@dataclass(frozen=True)
class Outcome:
    decision: Action
    source: Literal["model", "rules", "fallback"]
    rules: tuple[str, ...] = ()


def _list_hit(lists: Mapping[str, frozenset[str]], payment: Mapping[str, Any]) -> str | None:
    if not lists:  # no list at all (the usual allow list): nothing to look up
        return None
    for name in LIST_FIELDS:
        v = payment.get(name)
        if v is not None and v in lists.get(name, frozenset()):
            return name
    return None


def decide(
    payment: Mapping[str, Any],
    features: Mapping[str, float],
    probability: float | None,
    thresholds: Thresholds | None,
    config: PolicyConfig,
) -> Outcome:
    """The decision for one payment. `probability is None` means the model failed: fallback."""
    blocked = _list_hit(config.block, payment)
    if blocked:
        return Outcome("decline", "rules", (f"block list: {blocked}",))
    allowed = _list_hit(config.allow, payment)
    if allowed:
        return Outcome("approve", "rules", (f"allow list: {allowed}",))

    if probability is None or thresholds is None:
        amount = float(payment.get("amount") or 0.0)
        base: Action = "approve" if amount <= config.fallback_max_amount else "review"
        source: Literal["model", "rules", "fallback"] = "fallback"
    else:
        amount = float(payment.get("amount") or 0.0)
        base = thresholds.decide(probability, amount)  # type: ignore[assignment]
        source = "model"

    if not config.rules:  # the usual case: nothing to evaluate, no facts to gather
        return Outcome(base, source)
    facts = {**features, **payment}
    hits = [r for r in config.rules if r.matches(facts)]
    if not hits:
        return Outcome(base, source)
    strictest = max(hits, key=lambda r: SEVERITY[r.action])
    names = tuple(r.name for r in hits)
    if SEVERITY[strictest.action] > SEVERITY[base]:
        action: Action = strictest.action
        if source == "fallback" and action == "decline":
            action = "review"  # the fallback never declines on its own
        return Outcome(action, "rules" if source == "model" else source, names)
    return Outcome(base, source, names)


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a rule value (a number, or a list of them for `in`)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_finite(v) for v in value)
    return True


def _holds_card_number(value: Any) -> bool:
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_card_number(v) for v in value)
    return pan.contains(value)


def fallback_amount(value: Any) -> float:
    """`fallback_max_amount` checked: a finite number from 0 to MAX_FALLBACK_AMOUNT."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise ValueError("fallback_max_amount: must be a number") from None
    if not math.isfinite(amount) or not 0 <= amount <= MAX_FALLBACK_AMOUNT:
        raise ValueError(
            f"fallback_max_amount: must be a finite amount from 0 to {MAX_FALLBACK_AMOUNT:g}"
        )
    return amount


def parse_config(doc: Mapping[str, Any]) -> PolicyConfig:
    """From JSON/TOML: {"allow": {"card_id": [...]}, "block": {...}, "rules": [...], ...}."""

    def lists(key: str) -> dict[str, frozenset[str]]:
        raw = doc.get(key, {}) or {}
        unknown = [k for k in raw if k not in LIST_FIELDS]
        if unknown:
            raise ValueError(f"{key}: unknown list {unknown[0]!r} (use {', '.join(LIST_FIELDS)})")
        too_long = [k for k, v in raw.items() if len(v) > MAX_LIST_ENTRIES]
        if too_long:
            raise ValueError(f"{key}.{too_long[0]}: at most {MAX_LIST_ENTRIES} entries")
        for k, v in raw.items():
            if any(pan.contains(str(x)) for x in v):
                raise ValueError(f"{key}.{k}: an entry looks like a raw card number (refused)")
        return {k: frozenset(str(x) for x in v) for k, v in raw.items()}

    rules = tuple(
        Rule(
            name=str(r["name"]),
            field=str(r["field"]),
            op=str(r["op"]),
            value=r["value"],
            action=r["action"],
        )
        for r in doc.get("rules", []) or []
    )
    if len(rules) > MAX_RULES:
        raise ValueError(f"rules: at most {MAX_RULES}")
    return PolicyConfig(
        allow=lists("allow"),
        block=lists("block"),
        rules=rules,
        fallback_max_amount=fallback_amount(doc.get("fallback_max_amount", 50.0)),
    )


def to_doc(config: PolicyConfig) -> dict[str, Any]:
    return {
        "allow": {k: sorted(v) for k, v in config.allow.items()},
        "block": {k: sorted(v) for k, v in config.block.items()},
        "rules": [
            {"name": r.name, "field": r.field, "op": r.op, "value": r.value, "action": r.action}
            for r in config.rules
        ],
        "fallback_max_amount": config.fallback_max_amount,
    }
