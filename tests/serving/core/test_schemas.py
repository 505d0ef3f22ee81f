"""The HTTP payment contract accepts what a mapped file may hold (serving.core.schemas)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.core.schemas import PaymentIn

BASE = {
    "transaction_id": "t-1",
    "timestamp": "2024-03-01T10:00:00Z",
    "card_id": "card_1",
    "customer_id": "cust_1",
    "merchant_id": "m_1",
    "amount": 12.5,
    "currency": "USD",
}


@pytest.mark.parametrize("mcc", ["5411", "grocery_pos", "Food & Dining"])
def test_a_merchant_category_may_be_a_code_or_a_name(mcc):
    assert PaymentIn(**BASE, mcc=mcc).mcc == mcc


def test_age_and_city_size_reach_the_contract_record():
    record = PaymentIn(**BASE, customer_age=41.5, city_population=28_986).contract()
    assert (record["customer_age"], record["city_population"]) == (41.5, 28_986)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_age", -1),
        ("customer_age", 131),
        ("customer_age", float("nan")),
        ("city_population", -5),
        ("city_population", float("inf")),
        ("mcc", "4111 1111 1111 1111"),
        ("mcc", "<script>"),
    ],
)
def test_bad_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        PaymentIn(**{**BASE, field: value})
    assert err.value.errors()[0]["loc"] == (field,)
