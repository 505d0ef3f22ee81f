"""FeatureRow: scoring's by-name view of a payment's feature vector. Read by name it is the
dict the policy used to get; stored, it is the very bytes the dict gave."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import numpy as np
import pytest

from features.online import FeatureRow
from serving.core.schemas import PaymentIn
from serving.scoring import facts

NAMES = ("card_count_1h", "amount_zscore_card_30d", "merchant_fraud_rate_30d")


def _row() -> FeatureRow:
    return FeatureRow(NAMES, np.array([3.0, np.nan, 0.125]))


def test_a_feature_row_reads_as_the_dict_of_python_floats() -> None:
    row = _row()
    as_dict = dict(zip(NAMES, [3.0, float("nan"), 0.125], strict=True))
    assert list(row) == list(NAMES)
    assert len(row) == 3
    assert row["card_count_1h"] == 3.0
    assert type(row["card_count_1h"]) is float
    assert np.isnan(row["amount_zscore_card_30d"])
    assert [k for k, _ in row.items()] == list(NAMES)
    assert list(row.keys()) == list(NAMES)
    assert len(list(row.values())) == 3
    merged = {**row, "amount": 10.0}  # how the policy gathers a rule's facts
    assert merged["merchant_fraud_rate_30d"] == as_dict["merchant_fraud_rate_30d"]
    assert "amount" in merged
    assert "card_count_1h" in row
    assert "nope" not in row
    with pytest.raises(KeyError):
        row["nope"]


def test_a_feature_row_refuses_a_vector_of_another_length() -> None:
    with pytest.raises(ValueError, match="3 names for a vector of shape"):
        FeatureRow(NAMES, np.zeros(2))


def _record() -> dict:
    return {
        "transaction_id": "t-1",
        "timestamp": datetime(2024, 3, 1, 12, 30, 5, 120000, tzinfo=UTC),
        "amount": 12.5,
        "currency": "EUR",
        "card_id": "tok_card_1",
        "merchant_id": "m-1",
        "account_created_at": datetime(2023, 1, 2, tzinfo=UTC),
        "credential_changed_at": None,
    }


def test_a_stored_fact_row_is_the_same_from_the_vector_as_from_the_dict() -> None:
    """Same feature bytes, same feature set, the same payment document (dates as ISO text,
    no card id): what a backtest reads back does not depend on which form scoring passed."""
    row = _row()
    from_dict = facts.FactsWriter().row(_record(), {"_thresholds": None}, dict(row.items()))
    from_vector = facts.FactsWriter().row(_record(), {"_thresholds": None}, row)
    assert from_vector == from_dict
    assert from_vector["features"] == np.array([3.0, np.nan, 0.125]).tobytes()
    assert from_vector["payment"]["timestamp"] == "2024-03-01T12:30:05.120000+00:00"
    assert from_vector["payment"]["account_created_at"] == "2023-01-02T00:00:00+00:00"
    assert "card_id" not in from_vector["payment"]


def test_every_date_field_of_the_contract_is_written_as_text() -> None:
    """The facts row converts only the fields in DATE_FIELDS: a date field added to the
    contract must be added there too."""
    dated = set()
    for name, info in PaymentIn.model_fields.items():
        args = typing.get_args(info.annotation) or (info.annotation,)
        if datetime in args:
            dated.add(name)
    assert dated == set(facts.DATE_FIELDS)
