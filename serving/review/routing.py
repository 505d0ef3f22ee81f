"""Review queues and the rules that route a case to one (pure: data in, data out).

A queue has a name, its own SLA, the decisions it allows, a mode (`open`: free pick; `locked`:
a reviewer gets only the next case) and a match rule. Rules are tried in the configured order;
a case that matches none goes to the residual queue. A queue without a rule (`match: None`)
receives cases only by assignment: escalation (`supervisors`), a supervisor's reassignment, or
another feature that files cases there itself (e.g. merchant appeals): adding such a queue is one
`QueueConfig.with_queue(QueueSpec("appeals", ...))` or one `PUT /queues/appeals`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Mode = Literal["open", "locked"]
Source = Literal["model", "rules", "fallback"]
DECISIONS: tuple[str, ...] = ("approve", "decline", "decline_fraud")
RESIDUAL = "residual"  # what matches no rule (today's one queue)
SUPERVISORS = "supervisors"  # escalated cases: only supervisors claim and decide them
RESERVED = (RESIDUAL, SUPERVISORS)
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MAX_QUEUES = 50
MAX_LIST = 1_000  # merchants or countries in one rule


@dataclass(frozen=True)
class Match:
    """Every condition given must hold (an empty rule matches every case)."""

    min_amount: float | None = None
    max_amount: float | None = None
    merchants: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()  # the payment's billing country (ISO 3166 alpha-2)
    min_score: int | None = None
    max_score: int | None = None
    source: Source | None = None  # who decided to hold: the model, a rule, or the fallback

    def matches(self, facts: CaseFacts) -> bool:
        if self.min_amount is not None and facts.amount < self.min_amount:
            return False
        if self.max_amount is not None and facts.amount >= self.max_amount:
            return False
        if self.merchants and facts.merchant_id not in self.merchants:
            return False
        if self.countries and (facts.country or "").upper() not in self.countries:
            return False
        if self.min_score is not None and (facts.score is None or facts.score < self.min_score):
            return False
        if self.max_score is not None and (facts.score is None or facts.score > self.max_score):
            return False
        return self.source is None or facts.source == self.source


@dataclass(frozen=True)
class QueueSpec:
    name: str
    sla_minutes: float
    decisions: tuple[str, ...] = DECISIONS
    mode: Mode = "open"
    match: Match | None = None  # None: filled by assignment only


@dataclass(frozen=True)
class CaseFacts:
    """What routing may look at (no card data)."""

    amount: float
    merchant_id: str
    country: str | None
    score: int | None
    source: str | None


@dataclass(frozen=True)
class QueueConfig:
    """Queues in rule order; the residual and supervisors queues always exist."""

    queues: tuple[QueueSpec, ...] = field(default_factory=tuple)

    def get(self, name: str) -> QueueSpec | None:
        return next((q for q in self.queues if q.name == name), None)

    def names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.queues)

    def with_queue(self, spec: QueueSpec) -> QueueConfig:
        """Add (before the residual queue) or replace a queue of the same name."""
        if spec.name == RESIDUAL and spec.match is not None:
            raise ValueError("match: the residual queue takes what no rule matches (no rule)")
        if spec.name == SUPERVISORS and spec.match is not None:
            raise ValueError("match: the supervisors queue takes escalated cases only (no rule)")
        if self.get(spec.name) is not None:
            return QueueConfig(tuple(spec if q.name == spec.name else q for q in self.queues))
        if len(self.queues) >= MAX_QUEUES:
            raise ValueError(f"name: at most {MAX_QUEUES} queues")
        rest = tuple(q for q in self.queues if q.name not in RESERVED)
        fixed = tuple(q for q in self.queues if q.name in RESERVED)
        return QueueConfig((*rest, spec, *fixed))


def default_config(sla_minutes: float) -> QueueConfig:
    """Today's behaviour: every case in one open queue with every decision allowed."""
    return QueueConfig(
        (QueueSpec(RESIDUAL, sla_minutes), QueueSpec(SUPERVISORS, sla_minutes, mode="open"))
    )


def route(config: QueueConfig, facts: CaseFacts) -> str:
    """The first queue whose rule matches, else the residual queue."""
    for q in config.queues:
        if q.match is not None and q.name not in RESERVED and q.match.matches(facts):
            return q.name
    return RESIDUAL


def facts_of(
    amount: float, merchant_id: str, payment: Mapping[str, Any] | None, score: Any, source: Any
) -> CaseFacts:
    country = (payment or {}).get("billing_country")
    return CaseFacts(
        amount=float(amount),
        merchant_id=str(merchant_id),
        country=str(country).upper() if country else None,
        score=int(score) if score is not None else None,
        source=str(source) if source is not None else None,
    )


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError("name: lower-case letters, digits, '-' or '_', starting with a letter")
    return name


def spec_to_doc(q: QueueSpec) -> dict[str, Any]:
    match = None
    if q.match is not None:
        m = q.match
        match = {
            "min_amount": m.min_amount,
            "max_amount": m.max_amount,
            "merchants": list(m.merchants),
            "countries": list(m.countries),
            "min_score": m.min_score,
            "max_score": m.max_score,
            "source": m.source,
        }
    return {
        "name": q.name,
        "sla_minutes": q.sla_minutes,
        "decisions": list(q.decisions),
        "mode": q.mode,
        "match": match,
    }


def to_doc(config: QueueConfig) -> dict[str, Any]:
    return {"queues": [spec_to_doc(q) for q in config.queues]}


def spec_from_doc(doc: Mapping[str, Any]) -> QueueSpec:
    """One queue from its stored or submitted form; ValueError names the field."""
    name = check_name(str(doc.get("name", "")))
    sla = doc.get("sla_minutes")
    if not isinstance(sla, int | float) or isinstance(sla, bool) or not 0 < float(sla) <= 10080:
        raise ValueError("sla_minutes: a number of minutes above 0, at most 10080 (a week)")
    decisions = tuple(doc.get("decisions") or DECISIONS)
    unknown = [d for d in decisions if d not in DECISIONS]
    if unknown or len(set(decisions)) != len(decisions):
        raise ValueError(f"decisions: each one of {', '.join(DECISIONS)}, once")
    mode = doc.get("mode", "open")
    if mode not in ("open", "locked"):
        raise ValueError("mode: open or locked")
    raw = doc.get("match")
    match = None if raw is None else _match_from_doc(raw)
    return QueueSpec(name, float(sla), decisions, mode, match)


def _match_from_doc(raw: Mapping[str, Any]) -> Match:
    m = Match(
        min_amount=raw.get("min_amount"),
        max_amount=raw.get("max_amount"),
        merchants=tuple(str(x) for x in raw.get("merchants") or ()),
        countries=tuple(str(x).upper() for x in raw.get("countries") or ()),
        min_score=raw.get("min_score"),
        max_score=raw.get("max_score"),
        source=raw.get("source"),
    )
    if len(m.merchants) > MAX_LIST or len(m.countries) > MAX_LIST:
        raise ValueError(f"match: at most {MAX_LIST} merchants and {MAX_LIST} countries")
    if m.min_amount is not None and m.max_amount is not None and m.min_amount >= m.max_amount:
        raise ValueError("match.max_amount: must be above match.min_amount")
    if m.min_score is not None and m.max_score is not None and m.min_score > m.max_score:
        raise ValueError("match.max_score: must not be below match.min_score")
    return m


def from_doc(doc: Mapping[str, Any], sla_minutes: float) -> QueueConfig:
    """The stored configuration; the reserved queues are added when missing."""
    config = QueueConfig(tuple(spec_from_doc(q) for q in doc.get("queues", ())))
    for name in RESERVED:
        if config.get(name) is None:
            config = QueueConfig((*config.queues, QueueSpec(name, sla_minutes)))
    return config


def replace_spec(q: QueueSpec, **changes: Any) -> QueueSpec:
    return replace(q, **changes)
