"""Rows to the contract's columns: time order, ids, currencies, point-in-time credential changes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.schema import AUTH_RESULTS, CHANNELS, COLUMNS
from data.simulator.arrays import _decimal_ids, _hex_ids, _labels, _utc
from data.simulator.config import NOT_SIMULATED, SCENARIOS
from data.simulator.population import _World
from data.simulator.rows import _Rows
from data.simulator.tables import _CATEGORIES, _COUNTRIES, _CURRENCY, _DAY, _cidx, _rates


def _credentials(w: _World, rows: _Rows) -> np.ndarray:
    """The latest credential change at or before each payment (point-in-time correct)."""
    out = w.c_cred_before[rows.cust].copy()
    if len(w.changes_cust) == 0:
        return out
    span = (w.end - w.start) + 60 * _DAY
    base = w.start - 30 * _DAY
    order = np.lexsort((w.changes_at, w.changes_cust))
    ccust, cat = w.changes_cust[order], w.changes_at[order]
    keys = ccust * span + np.clip(cat - base, 0, span - 1)
    row_keys = rows.cust * span + np.clip(rows.ts - base, 0, span - 1)
    idx = np.searchsorted(keys, row_keys, side="right") - 1
    ok = idx >= 0
    idx = np.maximum(idx, 0)
    ok &= (ccust[idx] == rows.cust) & (cat[idx] <= rows.ts)
    return np.where(ok, np.maximum(out, cat[idx]), out)


def _frame(w: _World, rows: _Rows, salt: np.uint64) -> pd.DataFrame:
    """Sort by time, number the payments and turn codes into the contract's columns."""
    rows = rows.take(np.argsort(rows.ts, kind="stable"))
    n = len(rows)
    cust, merch = rows.cust, rows.merch
    billing = w.c_country[cust]
    currency_of = np.zeros(len(_COUNTRIES), dtype=np.int64)
    currencies = ["EUR"] + [c for _, c, _ in _CURRENCY]
    for i, (country, _, _) in enumerate(_CURRENCY):
        currency_of[_cidx(country)] = i + 1
    amount = np.maximum(np.round(rows.eur * _rates()[billing], 2), 0.3)
    # customer numbers follow account opening, as a backend would assign them
    cust_no = np.empty(len(w.c_created), dtype=np.int64)
    cust_no[np.argsort(w.c_created, kind="stable")] = np.arange(1, len(w.c_created) + 1)

    def width(count: int, least: int) -> int:
        return max(least, len(str(count)))

    columns: dict[str, object] = {
        "transaction_id": pd.Series(
            _decimal_ids("tx_", np.arange(1, n + 1), width(n, 9)), dtype="str"
        ),
        "timestamp": _utc(rows.ts),
        "card_id": pd.Series(
            _decimal_ids("card_", rows.card + 1, width(len(w.card_owner), 7)), dtype="str"
        ),
        "customer_id": pd.Series(
            _decimal_ids("cust_", cust_no[cust], width(len(cust_no), 7)), dtype="str"
        ),
        "merchant_id": pd.Series(
            _decimal_ids("merch_", merch + 1, width(len(w.m_city), 6)), dtype="str"
        ),
        "amount": amount,
        "currency": _labels(currencies, currency_of[billing]),
        "billing_country": _labels(_COUNTRIES, billing),
        "ip_country": _labels(_COUNTRIES, rows.ip_country),
        "shipping_country": _labels(_COUNTRIES, rows.ship),
        "merchant_country": _labels(_COUNTRIES, w.m_country[merch]),
        "mcc": _labels([c[0] for c in _CATEGORIES], w.m_cat[merch]),
        "channel": _labels(CHANNELS, rows.online.astype(np.int64)),
        "customer_lat": w.c_lat[cust],
        "customer_lon": w.c_lon[cust],
        "merchant_lat": w.m_lat[merch],
        "merchant_lon": w.m_lon[merch],
        "device_id": pd.Series(_hex_ids("dev_", rows.device, salt), dtype="str"),
        "ip_hash": pd.Series(_hex_ids("ip_", rows.ip, salt ^ np.uint64(0x5BD1E995)), dtype="str"),
        "email_domain": _labels(w.domains, rows.email),
        "account_created_at": _utc(w.c_created[cust]),
        "credential_changed_at": _utc(_credentials(w, rows)),
        "auth_result": _labels(AUTH_RESULTS, rows.auth),
        "is_fraud": pd.array((rows.scenario > 0).astype(np.int8), dtype="Int8"),
        "label_time": _utc(rows.label),
        "scenario": _labels(SCENARIOS, rows.scenario.astype(np.int64)),
    }
    assert list(columns)[:-1] == [c.name for c in COLUMNS if c.name not in NOT_SIMULATED]
    return pd.DataFrame(columns)
