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


def test_the_contract_record_is_what_model_dump_gives() -> None:
    """contract() copies the validated fields: equal to model_dump() (same keys in the same
    order, same values and types) for a bare payment, a full one and one with optional fields
    left out; and the model has nothing that would make the two differ."""
    from pydantic import BaseModel

    full = {
        **BASE,
        "mcc": "5411",
        "customer_age": 41.5,
        "city_population": 28_986,
        "account_created_at": "2020-05-01T00:00:00+02:00",
        "merchant_lat": 48.85,
        "merchant_lon": 2.35,
    }
    payments = [PaymentIn(**BASE), PaymentIn(**full)]
    for p in payments:
        record, dumped = p.contract(), p.model_dump()
        assert list(record) == list(dumped)
        assert record == dumped
        assert [type(v) for v in record.values()] == [type(v) for v in dumped.values()]
        record["amount"] = -1.0  # a copy: the payment is not changed through it
        assert p.amount == 12.5
    decorators = PaymentIn.__pydantic_decorators__
    assert not decorators.field_serializers
    assert not decorators.model_serializers
    assert not PaymentIn.model_computed_fields
    assert PaymentIn.model_config.get("extra") == "forbid"
    nested = [
        name
        for name, f in PaymentIn.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    ]
    assert not nested
