"""SHAP contributions -> sentences a reviewer reads, from the feature registry's descriptions."""

from __future__ import annotations

import math

import pytest

from features.registry import BY_NAME
from serving.scoring.explain import all_factors, reasons, sentence

PAYMENT = {"amount": 812.0, "billing_country": "DE", "ip_country": "BR", "currency": "EUR"}


def test_amount_ratio_reads_as_a_multiple_of_the_cards_median():
    assert "8.2x this card's 30-day median" in sentence("amount_to_card_median_30d", 8.2, PAYMENT)
    assert "12.0x" in sentence("amount_to_card_median_30d", 12.04, PAYMENT)


def test_ip_country_mismatch_names_both_countries():
    text = sentence("billing_ip_mismatch", 1.0, PAYMENT)

    assert "IP country BR" in text
    assert "billing country DE" in text


def test_new_device_reads_as_the_registrys_sentence():
    text = sentence("device_new_for_customer", 1.0, PAYMENT)

    assert text == BY_NAME["device_new_for_customer"].description
    assert "device" in text
    assert "already used" not in text


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("device_new_for_customer", "device already used by this customer"),
        ("billing_ip_mismatch", "IP country matches the billing country"),
        ("auth_not_attempted", "3-D Secure / two-factor check was attempted"),
        ("is_night", "paid during the day"),
    ],
)
def test_zero_valued_binary_feature_gets_the_negated_wording(name, words):
    assert sentence(name, 0.0, PAYMENT) == words
    assert sentence(name, 1.0, PAYMENT) != words


def test_missing_value_reads_as_not_known():
    assert sentence("account_age_days", math.nan, PAYMENT) == (
        "account age days: not known for this payment"
    )


def test_missing_payment_field_in_a_template_reads_as_unknown():
    text = sentence("billing_shipping_mismatch", 1.0, {"billing_country": "DE"})

    assert "shipping country unknown" in text
    assert "billing country DE" in text


def test_feature_unknown_to_the_registry_falls_back_to_name_and_value():
    assert sentence("not_a_feature", 3.0, PAYMENT) == "not_a_feature = 3.0"


def test_reasons_keep_only_factors_towards_fraud_largest_first():
    names = ["billing_ip_mismatch", "log_amount", "device_new_for_customer", "is_night"]
    values = [1.0, math.log1p(812.0), 1.0, 0.0]
    contributions = [0.8, -1.5, 1.2, 0.01]  # log_amount lowers risk; is_night is too small

    out = reasons(names, values, contributions, PAYMENT)

    assert [r["feature"] for r in out] == ["device_new_for_customer", "billing_ip_mismatch"]
    assert out[1]["text"] == sentence("billing_ip_mismatch", 1.0, PAYMENT)
    assert out[0]["contribution"] == pytest.approx(1.2)


def test_reasons_are_capped_at_top_and_report_a_missing_value_as_none():
    names = [f"card_count_{w}" for w in ("1h", "24h", "7d", "30d")]
    values = [math.nan, 2.0, 3.0, 4.0]
    contributions = [0.9, 0.8, 0.7, 0.6]

    out = reasons(names, values, contributions, PAYMENT, top=2)

    assert [r["feature"] for r in out] == ["card_count_1h", "card_count_24h"]
    assert out[0]["value"] is None
    assert out[1]["text"].startswith("2 ")
    assert out[1]["text"] == sentence("card_count_24h", 2.0, PAYMENT)


def test_all_factors_lists_both_directions_by_absolute_effect():
    names = ["billing_ip_mismatch", "log_amount", "is_night"]
    out = all_factors(names, [1.0, 6.7, 0.0], [0.5, -2.0, 0.1], PAYMENT)

    assert [f["feature"] for f in out] == ["log_amount", "billing_ip_mismatch", "is_night"]
    assert out[2]["text"] == "paid during the day"
