"""The HTTP contract: pydantic models for requests and responses.

A payment carries the transaction contract's fields at the top level of the JSON body, as a
payment backend sends them. Unknown fields are refused (a stray `pan` field must never be stored),
and every text field is checked for something that looks like a raw card number.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from data import pan
from data.schema import CURRENCIES, looks_like_card_number

MAX_BATCH = 1_000
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # timestamps are nanoseconds since the epoch...
LATEST = datetime(2262, 4, 11, tzinfo=UTC)  # ...in 64 bits
MAX_NOTE = 2_000

Decision = Literal["approve", "review", "decline"]
Source = Literal["model", "rules", "fallback"]
Id = Field(min_length=1, max_length=128)
Country = Field(default=None, min_length=2, max_length=3)
ShortText = Field(default=None, min_length=1, max_length=256)

_TEXT_FIELDS = (
    "transaction_id",
    "card_id",
    "customer_id",
    "merchant_id",
    "billing_country",
    "ip_country",
    "shipping_country",
    "merchant_country",
    "mcc",
    "device_id",
    "ip_hash",
    "email_domain",
)


def utc_in_range(v: datetime | None) -> datetime | None:
    """UTC, and a time the online features can hold (nanoseconds since 1970, 64 bits)."""
    if v is None:
        return None
    v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    if not EARLIEST <= v <= LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return v


class PaymentIn(BaseModel):
    """One payment, as the backend sends it (see the transaction contract in data/schema.py)."""

    # hide_input_in_errors: a refused card number must not reach the logs via the error text.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, hide_input_in_errors=True)

    transaction_id: str = Id
    timestamp: datetime
    card_id: str = Id
    customer_id: str = Id
    merchant_id: str = Id
    amount: float = Field(ge=0, le=1e9, allow_inf_nan=False)
    currency: str = Field(min_length=3, max_length=3)
    billing_country: str | None = Country
    ip_country: str | None = Country
    shipping_country: str | None = Country
    merchant_country: str | None = Country
    # a 4-digit merchant category code or a category name (as a mapping's `category` form)
    mcc: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_ &/.-]{0,63}$")
    channel: Literal["card_present", "online"] | None = None
    customer_lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    customer_lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    merchant_lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    merchant_lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    customer_age: float | None = Field(default=None, ge=0, le=130, allow_inf_nan=False)
    city_population: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    device_id: str | None = ShortText
    ip_hash: str | None = ShortText
    email_domain: str | None = ShortText
    account_created_at: datetime | None = None
    credential_changed_at: datetime | None = None
    auth_result: Literal["passed", "failed", "not_attempted"] | None = None

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, v: str) -> str:
        code = v.upper()
        if code not in CURRENCIES:
            raise ValueError(f"unknown currency {v!r} (ISO 4217 code expected)")
        return code

    @field_validator("timestamp", "account_created_at", "credential_changed_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return utc_in_range(v)

    @field_validator(*_TEXT_FIELDS)
    @classmethod
    def _no_card_number(cls, v: str | None) -> str | None:
        # shorter than a card number's digits cannot hold one (most ids and codes): no scan
        if v is not None and len(v) >= pan.MIN_DIGITS and looks_like_card_number(v):
            raise ValueError("looks like a raw card number (refused: send a token or keyed hash)")
        return v

    def contract(self) -> dict[str, Any]:
        """The payment as a contract record (what features and storage read): a copy of the
        validated fields, which is what `model_dump()` gives for this flat model (no nested
        models, serializers, computed fields or extras; tests/serving/core/test_schemas.py
        holds the two equal), at a tenth of its cost on the scoring path."""
        return dict(self.__dict__)


class Reason(BaseModel):
    """One factor behind a score, in words the reviewer reads."""

    feature: str
    value: float | None
    contribution: float  # SHAP value in log-odds; > 0 pushes towards fraud
    text: str


def openapi30_nullable(schema: dict[str, Any]) -> None:
    """Write `X | None` fields as OpenAPI 3.0 `nullable` (BentoML keeps only the first branch of
    an anyOf, which would declare them non-null)."""
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
            other = next(o for o in options if o != {"type": "null"})
            del prop["anyOf"]
            prop.update(other)
            prop["nullable"] = True


class ScoreOut(BaseModel):
    model_config = ConfigDict(json_schema_extra=openapi30_nullable)

    transaction_id: str
    decision: Decision
    decision_source: Source
    probability: float | None
    score: int | None = Field(default=None, ge=0, le=99)
    reasons: list[Reason]
    rules: list[str] = []
    model_version: str | None
    case_id: int | None = None
    status: Literal["settled", "held_for_review", "declined"]
    replayed: bool = False
    review_threshold: float | None = None
    review_by: Literal["probability", "saving"] | None = None
    capacity_adjusted: bool = False
    elapsed_ms: float


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    payments: list[PaymentIn] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _unique_ids(self) -> BatchIn:
        seen: set[str] = set()
        for i, p in enumerate(self.payments):
            if p.transaction_id in seen:
                raise ValueError(f"payments[{i}].transaction_id {p.transaction_id!r} repeats")
            seen.add(p.transaction_id)
        return self


class BatchOut(BaseModel):
    results: list[ScoreOut]
    elapsed_ms: float


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(v: datetime) -> str:
    """The one way riskgate writes a time: RFC 3339 in UTC with `Z` (`2026-12-02T03:50:00Z`).

    A naive value is a stored UTC time (SQLite hands times back without their offset)."""
    v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    return v.isoformat().replace("+00:00", "Z")


def with_rfc3339(node: Any) -> Any:
    """A JSON-bound value with every datetime in it written by `rfc3339` (dicts, lists)."""
    if isinstance(node, datetime):
        return rfc3339(node)
    if isinstance(node, dict):
        return {k: with_rfc3339(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [with_rfc3339(v) for v in node]
    return node


class NonFiniteNumberError(ValueError):
    """A JSON body holds NaN, Infinity or a number that overflows to infinity (1e309)."""

    def __init__(self, loc: tuple[str | int, ...]) -> None:
        self.loc = loc
        where = ".".join(str(p) for p in loc) or "body"
        super().__init__(f"{where}: must be a finite number")


class _NonFinite:
    """Marks where a non-finite number was in a parsed body."""


_NON_FINITE = _NonFinite()


def _finite_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NON_FINITE


def finite_json(raw: bytes | str) -> Any:
    """json.loads that refuses NaN, Infinity and overflowing numbers (`NonFiniteNumberError`
    with the path of the first one, under "body"): they are not JSON, no column or response
    can hold them, and a bound such as `ge=0` lets infinity through."""
    doc = json.loads(raw, parse_constant=lambda _c: _NON_FINITE, parse_float=_finite_float)
    stack: list[tuple[tuple[str | int, ...], Any]] = [(("body",), doc)]
    while stack:
        loc, value = stack.pop()
        if value is _NON_FINITE:
            raise NonFiniteNumberError(loc)
        if isinstance(value, dict):
            stack.extend(((*loc, k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))
    return doc
