"""The one place a feature is declared.

Each `Feature` says what it reads, over which entity and window, and how it aggregates. The batch
executor (training) and the online executor (serving) both dispatch on these declarations, so a
feature cannot be defined twice; `tests/features/test_parity.py` proves the two agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Entity = Literal[
    "payment", "card", "customer", "merchant", "category", "device", "ip", "email_domain"
]
Aggregation = Literal[
    "row",  # computed from the payment alone (see features.transforms)
    "count",  # prior payments of the entity in the window
    "sum",  # sum of prior amounts in the window
    "mean",  # mean of prior amounts in the window (NaN when there is none)
    "mean_ratio",  # amount / mean of prior amounts in the window
    "median_ratio",  # amount / median of prior amounts in the window
    "zscore",  # (amount - mean) / std of prior amounts in the window
    "since_prev",  # seconds since the entity's previous payment within the window
    "since_first",  # days since the entity's first payment within the window (NaN: none)
    "prev_distance",  # km from the previous payment's merchant location within the window
    "prev_speed",  # implied km/h from the previous payment within the window
    "distinct_cards",  # distinct cards on the entity in the window, this payment included
    "pair_new",  # 1 if (customer, device) has no prior payment in the window
    "label_rate",  # known fraud labels / payments in a window ending a label delay before
    "label_count",  # known fraud labels in a window ending a label delay before
]
Group = Literal["amount", "time", "location", "identity", "velocity", "labels"]

HOUR = 3_600
DAY = 86_400

# Entities and the contract column that keys them.
ENTITY_COLUMN: dict[str, str] = {
    "card": "card_id",
    "customer": "customer_id",
    "merchant": "merchant_id",
    "category": "mcc",
    "device": "device_id",
    "ip": "ip_hash",
    "email_domain": "email_domain",
}


@dataclass(frozen=True)
class Feature:
    """One feature's declaration.

    `window` is in seconds. A prior payment belongs to the window when its timestamp is greater
    than (payment time - window) and it comes strictly before the payment in (timestamp,
    transaction_id) order. `label_delay` (seconds) shifts a label window back: labels count only
    if known (label_time <= payment time).
    `description` is a sentence template for explanations; `{value}` is the feature's value and
    other fields name the payment's columns. Besides Python's format specs, serving.scoring.explain
    reads `{value:none|one|many}` (a count in words, `#` standing for the number: "first payment",
    "second payment", "3 earlier payments") and `{value:duration}` ("45 s", "3.2 h").
    """

    name: str
    group: Group
    entity: Entity
    aggregation: Aggregation
    columns: tuple[str, ...]
    description: str
    window: int = 0
    reads_labels: bool = False
    label_delay: int = 0


# Windows of the entity x window grids: (seconds, label in the feature name).
WINDOWS: tuple[tuple[int, str], ...] = (
    (HOUR, "1h"),
    (DAY, "24h"),
    (7 * DAY, "7d"),
    (30 * DAY, "30d"),
)
# Label windows end one label delay before the payment (chargebacks take weeks to arrive).
LABEL_WINDOWS: tuple[tuple[int, str], ...] = ((DAY, "1d"), (7 * DAY, "7d"), (30 * DAY, "30d"))
LABEL_DELAY = 7 * DAY

# How descriptions name an entity: where its payments happen, and whose they are.
_WHERE = {
    "card": "on this card",
    "customer": "by this customer",
    "merchant": "at this merchant",
    "category": "in this merchant category",
    "device": "from this device",
    "ip": "from this IP address",
}
_SUBJECT = {
    "card": "this card",
    "customer": "this customer",
    "merchant": "this merchant",
    "category": "this merchant category",
}
_SPAN = {
    HOUR: "the last hour",
    DAY: "the last 24 hours",
    7 * DAY: "the last 7 days",
    30 * DAY: "the last 30 days",
}
_LABEL_SPAN = {DAY: "the 24 hours", 7 * DAY: "the 7 days", 30 * DAY: "the 30 days"}


def _ago(seconds: int) -> str:
    return "a week ago" if seconds == 7 * DAY else f"{seconds // DAY} days ago"


def _windowed(entity: Entity, agg: Aggregation, window: int, label: str) -> Feature:
    """One cell of an entity x window grid, named and worded after the grid's pattern."""
    col = ENTITY_COLUMN[entity]
    where = _WHERE.get(entity, "")
    if agg in ("count", "sum", "mean"):
        span = _SPAN[window]
        text = {
            "count": f"{{value:first payment|second payment|# earlier payments}} {where} in {span}",
            "sum": f"{{value:,.2f}} {{currency}} spent {where} in {span} before this payment",
            "mean": f"earlier payments {where} in {span} averaged {{value:,.2f}} {{currency}}",
        }[agg]
        cols = (col,) if agg == "count" else (col, "amount")
        return Feature(f"{entity}_{agg}_{label}", "velocity", entity, agg, cols, text, window)
    if agg in ("label_rate", "label_count"):
        subject = _SUBJECT[entity]
        span = f"{_LABEL_SPAN[window]} ending {_ago(LABEL_DELAY)}"
        if agg == "label_rate":
            name = f"{entity}_fraud_rate_{label}"
            text = f"{{value:.1%}} of {subject}'s payments in {span} turned out fraudulent"
        else:
            name = f"{entity}_fraud_count_{label}"
            text = (
                f"{subject} had {{value:no confirmed fraud payment|1 confirmed fraud payment|"
                f"# confirmed fraud payments}} in {span}"
            )
        return Feature(
            name,
            "labels",
            entity,
            agg,
            (col, "is_fraud", "label_time"),
            text,
            window,
            reads_labels=True,
            label_delay=LABEL_DELAY,
        )
    if agg == "mean_ratio":
        days = window // DAY
        text = f"amount is {{value:.1f}}x {_SUBJECT[entity]}'s {days}-day average ticket"
        name = f"amount_to_{entity}_mean_{label}"
        return Feature(name, "amount", entity, agg, (col, "amount"), text, window)
    if agg == "since_first":
        days = window // DAY
        text = (
            f"{_SUBJECT[entity]} was first seen {{value:.1f}} days ago "
            f"(looking back {days} days at most)"
        )
        name = f"days_since_{entity}_first_seen_{label}"
        return Feature(name, "time", entity, agg, (col,), text, window)
    raise ValueError(f"no grid naming for aggregation {agg}")


def grid(
    entity: Entity, aggs: Sequence[Aggregation], windows: Sequence[tuple[int, str]]
) -> tuple[Feature, ...]:
    """Every (aggregation, window) pair for one entity, aggregation-major."""
    return tuple(_windowed(entity, agg, w, label) for agg in aggs for w, label in windows)


FEATURES: tuple[Feature, ...] = (
    # amount
    Feature(
        "log_amount", "amount", "payment", "row", ("amount",), "amount is {amount:,.2f} {currency}"
    ),
    Feature(
        "amount_to_card_median_30d",
        "amount",
        "card",
        "median_ratio",
        ("card_id", "amount"),
        "amount is {value:.1f}x this card's 30-day median",
        window=30 * DAY,
    ),
    Feature(
        "amount_to_card_mean_30d",
        "amount",
        "card",
        "mean_ratio",
        ("card_id", "amount"),
        "amount is {value:.1f}x this card's 30-day average",
        window=30 * DAY,
    ),
    Feature(
        "amount_zscore_card_30d",
        "amount",
        "card",
        "zscore",
        ("card_id", "amount"),
        "amount is {value:.1f} standard deviations from this card's usual spend",
        window=30 * DAY,
    ),
    *grid("merchant", ("mean_ratio",), WINDOWS[3:]),
    *grid("category", ("mean_ratio",), WINDOWS[3:]),
    Feature(
        "mcc_code",
        "amount",
        "payment",
        "row",
        ("mcc",),
        "merchant category {mcc}",
    ),
    # time
    Feature(
        "hour_of_day",
        "time",
        "payment",
        "row",
        ("timestamp",),
        "paid in the {value:02.0f}:00 hour (UTC)",
    ),
    Feature("is_night", "time", "payment", "row", ("timestamp",), "paid at night (00-06h UTC)"),
    Feature("is_weekend", "time", "payment", "row", ("timestamp",), "paid at the weekend"),
    Feature(
        "seconds_since_card_prev",
        "time",
        "card",
        "since_prev",
        ("card_id",),
        "previous payment on this card {value:duration} earlier",
        window=30 * DAY,
    ),
    *grid("card", ("since_first",), WINDOWS[3:]),
    *grid("merchant", ("since_first",), WINDOWS[3:]),
    # location
    Feature(
        "billing_ip_mismatch",
        "location",
        "payment",
        "row",
        ("billing_country", "ip_country"),
        "IP country {ip_country} differs from billing country {billing_country}",
    ),
    Feature(
        "billing_shipping_mismatch",
        "location",
        "payment",
        "row",
        ("billing_country", "shipping_country"),
        "shipping country {shipping_country} differs from billing country {billing_country}",
    ),
    Feature(
        "billing_merchant_mismatch",
        "location",
        "payment",
        "row",
        ("billing_country", "merchant_country"),
        "merchant country {merchant_country} differs from billing country {billing_country}",
    ),
    Feature(
        "home_merchant_distance_km",
        "location",
        "payment",
        "row",
        ("customer_lat", "customer_lon", "merchant_lat", "merchant_lon"),
        "merchant is {value:.0f} km from the customer's home",
    ),
    Feature(
        "card_prev_distance_km",
        "location",
        "card",
        "prev_distance",
        ("card_id", "merchant_lat", "merchant_lon"),
        "{value:.0f} km from this card's previous payment",
        window=30 * DAY,
    ),
    Feature(
        "card_prev_speed_kmh",
        "location",
        "card",
        "prev_speed",
        ("card_id", "merchant_lat", "merchant_lon"),
        "implied travel speed {value:.0f} km/h since this card's previous payment",
        window=30 * DAY,
    ),
    Feature(
        "log_city_population",
        "location",
        "payment",
        "row",
        ("city_population",),
        "the customer's home city has {city_population:,.0f} inhabitants",
    ),
    # identity
    Feature(
        "account_age_days",
        "identity",
        "payment",
        "row",
        ("account_created_at",),
        "account opened {value:.0f} days ago",
    ),
    Feature(
        "credential_change_age_hours",
        "identity",
        "payment",
        "row",
        ("credential_changed_at",),
        "password or phone changed {value:.1f} h before the payment",
    ),
    Feature(
        "device_new_for_customer",
        "identity",
        "customer",
        "pair_new",
        ("customer_id", "device_id"),
        "first payment from this device for this customer in the last 30 days",
        window=30 * DAY,
    ),
    Feature(
        "distinct_cards_per_device_24h",
        "identity",
        "device",
        "distinct_cards",
        ("device_id", "card_id"),
        "{value:no card|only this card|# different cards} used on this device in the last 24 hours",
        window=DAY,
    ),
    Feature(
        "distinct_cards_per_ip_24h",
        "identity",
        "ip",
        "distinct_cards",
        ("ip_hash", "card_id"),
        "{value:no card|only this card|# different cards} used from this IP address "
        "in the last 24 hours",
        window=DAY,
    ),
    Feature(
        "email_domain_count_30d",
        "identity",
        "email_domain",
        "count",
        ("email_domain",),
        "{value:first payment with the e-mail domain {email_domain}|"
        "e-mail domain {email_domain} seen once before|"
        "e-mail domain {email_domain} seen # times before} in the last 30 days",
        window=30 * DAY,
    ),
    Feature(
        "auth_failed",
        "identity",
        "payment",
        "row",
        ("auth_result",),
        "3-D Secure / two-factor check failed",
    ),
    Feature(
        "auth_not_attempted",
        "identity",
        "payment",
        "row",
        ("auth_result",),
        "no 3-D Secure / two-factor check",
    ),
    Feature(
        "customer_age",
        "identity",
        "payment",
        "row",
        ("customer_age",),
        "the customer is {value:.0f} years old",
    ),
    # velocity
    *grid("card", ("count", "sum", "mean"), WINDOWS),
    *grid("customer", ("count", "sum", "mean"), WINDOWS),
    *grid("merchant", ("count",), WINDOWS[:2]),
    *grid("device", ("count",), WINDOWS[:2]),
    *grid("ip", ("count",), WINDOWS[:2]),
    # labels
    *grid("merchant", ("label_rate", "label_count"), LABEL_WINDOWS),
    *grid("card", ("label_rate", "label_count"), LABEL_WINDOWS),
    *grid("customer", ("label_rate", "label_count"), LABEL_WINDOWS),
    *grid("category", ("label_rate", "label_count"), LABEL_WINDOWS),
)

BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
GROUPS: tuple[Group, ...] = ("amount", "time", "location", "identity", "velocity", "labels")
# The longest span any feature looks back: the online state keeps exactly this much history.
MAX_LOOKBACK: int = max(f.window + f.label_delay for f in FEATURES)


def feature_names(features: Iterable[Feature] = FEATURES) -> list[str]:
    return [f.name for f in features]


def feature_set_version(features: Sequence[Feature] = FEATURES) -> str:
    """A digest of the declarations (not their wording): a model trained on another definition
    is refused, while rewording a description does not invalidate models."""
    payload = json.dumps(
        [{k: v for k, v in asdict(f).items() if k != "description"} for f in features],
        sort_keys=True,
    )
    return "fs-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Availability:
    """Which features a data set supports, and why the others are skipped."""

    features: tuple[Feature, ...]
    skipped: dict[str, list[str]]  # feature name -> missing columns

    def skipped_groups(self) -> dict[str, str]:
        """Group -> reason, for groups that lost at least one feature."""
        out: dict[str, set[str]] = {}
        for name, missing in self.skipped.items():
            out.setdefault(BY_NAME[name].group, set()).update(missing)
        return {g: "missing " + ", ".join(sorted(cols)) for g, cols in sorted(out.items())}

    def summary(self) -> str:
        kept = {f.group for f in self.features}
        lines = [f"{len(self.features)} of {len(FEATURES)} features will run."]
        for group in GROUPS:
            n_all = sum(1 for f in FEATURES if f.group == group)
            n_kept = sum(1 for f in self.features if f.group == group)
            state = "all" if n_kept == n_all else (f"{n_kept}/{n_all}" if group in kept else "none")
            lines.append(f"  {group:<9} {state}")
        for name, reason in self.skipped_groups().items():
            lines.append(f"  skipped in {name}: {reason}")
        return "\n".join(lines)


def available(columns: Iterable[str], features: Sequence[Feature] = FEATURES) -> Availability:
    """Features whose columns are all present; the rest with the columns they miss."""
    have = set(columns)
    kept: list[Feature] = []
    skipped: dict[str, list[str]] = {}
    for f in features:
        missing = [c for c in f.columns if c not in have]
        if missing:
            skipped[f.name] = missing
        else:
            kept.append(f)
    return Availability(tuple(kept), skipped)


def select(names: Sequence[str]) -> tuple[Feature, ...]:
    """Declarations for a model's feature list, in its order; unknown names are an error."""
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise KeyError(f"features not defined in this code: {', '.join(unknown)}")
    return tuple(BY_NAME[n] for n in names)
