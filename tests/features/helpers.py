"""Small random payment histories for feature tests (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.schema import validate


def with_demographics(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """`frame` plus the optional customer columns the simulator does not make (customer age at
    the payment, home city population), fixed per customer, so every feature can run."""
    rng = np.random.default_rng(seed)
    customers, codes = np.unique(frame["customer_id"].to_numpy(dtype=str), return_inverse=True)
    born = rng.uniform(18, 90, len(customers))[codes]  # age at the first day
    days = (frame["timestamp"] - frame["timestamp"].min()).dt.total_seconds() / 86_400
    population = np.round(10 ** rng.uniform(2, 7, len(customers)))[codes]
    out = frame.copy()
    out["customer_age"] = born + days.to_numpy() / 365.25
    out["city_population"] = np.where(rng.random(len(customers)) < 0.05, np.nan, 1.0)[codes] * (
        population
    )
    return validate(out, source="with_demographics")


def random_frame(
    seed: int,
    n: int = 300,
    *,
    n_cards: int = 6,
    n_merchants: int = 4,
    span_days: float = 60.0,
    tie_share: float = 0.2,
    minimal: bool = False,
) -> pd.DataFrame:
    """Payments with many shared entities, exact timestamp ties, and labels early and late."""
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2024-01-01", tz="UTC").value
    secs = np.sort(rng.uniform(0, span_days * 86_400, n)).astype(np.int64)
    ties = rng.random(n) < tie_share
    secs[1:][ties[1:]] = secs[:-1][ties[1:]]  # copy the previous timestamp: exact ties
    ts = base + secs * 1_000_000_000
    card = rng.integers(0, n_cards, n)
    order = rng.permutation(n)  # ids not in time order, so the tie-break matters
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{order[i]:05d}" for i in range(n)],
            "timestamp": pd.to_datetime(ts, utc=True),
            "card_id": [f"c{c}" for c in card],
            "customer_id": [f"u{c // 2}" for c in card],
            "merchant_id": [f"m{m}" for m in rng.integers(0, n_merchants, n)],
            "amount": np.round(
                rng.choice([0.5, 1.0, 10.0, 10.0, 99.99, 1234.56], n) * rng.choice([1, 1, 1, 2], n),
                2,
            ),
            "currency": "EUR",
        }
    )
    fraud = rng.random(n) < 0.15
    delay = rng.choice([0, 3_600, 6 * 86_400, 7 * 86_400, 8 * 86_400, 20 * 86_400], n)
    frame["is_fraud"] = fraud.astype(int)
    lt = pd.to_datetime(ts + delay * 1_000_000_000, utc=True)
    frame["label_time"] = pd.Series(lt).where(fraud)
    if not minimal:
        countries = np.array(["DE", "FR", "PL", None], dtype=object)
        frame["billing_country"] = countries[rng.integers(0, 3, n)]
        frame["ip_country"] = countries[rng.integers(0, 4, n)]
        frame["shipping_country"] = countries[rng.integers(0, 4, n)]
        frame["merchant_country"] = countries[rng.integers(0, 3, n)]
        frame["customer_lat"] = 50 + rng.normal(0, 1, n)
        frame["customer_lon"] = 10 + rng.normal(0, 1, n)
        frame["merchant_lat"] = np.where(rng.random(n) < 0.1, np.nan, 48 + rng.normal(0, 5, n))
        frame["merchant_lon"] = 8 + rng.normal(0, 5, n)
        devices = np.array(["d1", "d2", "d3", None], dtype=object)
        frame["device_id"] = devices[rng.integers(0, 4, n)]
        ips = np.array(["i1", "i2", None], dtype=object)
        frame["ip_hash"] = ips[rng.integers(0, 3, n)]
        frame["email_domain"] = np.array(["a.com", "b.org", None], dtype=object)[
            rng.integers(0, 3, n)
        ]
        created = ts - rng.integers(1, 1000, n) * 86_400 * 1_000_000_000
        frame["account_created_at"] = pd.Series(pd.to_datetime(created, utc=True)).where(
            rng.random(n) < 0.9
        )
        frame["credential_changed_at"] = pd.Series(
            pd.to_datetime(ts - rng.integers(0, 10**6, n) * 1_000_000_000, utc=True)
        ).where(rng.random(n) < 0.3)
        frame["auth_result"] = np.array(["passed", "failed", "not_attempted", None], dtype=object)[
            rng.integers(0, 4, n)
        ]
        frame["channel"] = np.array(["online", "card_present"], dtype=object)[rng.integers(0, 2, n)]
        # merchant categories: mostly one per merchant, sometimes missing
        mcc = np.array(["5411", "5812", "7995", None], dtype=object)
        m = frame["merchant_id"].str[1:].astype(int).to_numpy()
        frame["mcc"] = np.where(rng.random(n) < 0.1, None, mcc[m % 3])
        frame["customer_age"] = np.where(
            rng.random(n) < 0.1, np.nan, 18 + card // 2 + rng.random(n) / 10
        )
        frame["city_population"] = np.where(
            rng.random(n) < 0.1, np.nan, (1_000 * (1 + card // 2)) ** 1.5
        )
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return validate(shuffled, source="random")
