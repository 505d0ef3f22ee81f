"""SHAP contributions -> sentences a reviewer reads, from the feature registry's descriptions."""

from __future__ import annotations

import math

import pytest

from features.registry import BY_NAME
from serving.scoring.explain import all_factors, reasons, sentence, towards_fraud

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


# --- words a reviewer reads: counts, durations, no sentence twice ------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0.0, "first payment from this IP address in the last hour"),
        (1.0, "second payment from this IP address in the last hour"),
        (3.0, "3 earlier payments from this IP address in the last hour"),
    ],
)
def test_a_count_reads_as_what_it_is_in_singular_or_plural(value, words):
    assert sentence("ip_count_1h", value, PAYMENT) == words


@pytest.mark.parametrize("value", [0.0, 1.0, 2.0, 12.0])
def test_no_sentence_says_payment_s_or_one_in_the_plural(value):
    for name in BY_NAME:
        text = sentence(name, value, PAYMENT)
        assert "(s)" not in text, (name, text)
        assert " 1 earlier payments" not in text, text
        assert " 1 different cards" not in text, text


def test_counts_of_cards_and_fraud_labels_are_plural_aware():
    assert sentence("distinct_cards_per_ip_24h", 1.0, PAYMENT) == (
        "only this card used from this IP address in the last 24 hours"
    )
    assert sentence("distinct_cards_per_device_24h", 4.0, PAYMENT).startswith("4 different cards")
    assert sentence("card_fraud_count_30d", 1.0, PAYMENT).startswith(
        "this card had 1 confirmed fraud payment in"
    )
    assert sentence("card_fraud_count_30d", 0.0, PAYMENT).startswith(
        "this card had no confirmed fraud payment in"
    )
    assert sentence("email_domain_count_30d", 0.0, {"email_domain": "example.com"}) == (
        "first payment with the e-mail domain example.com in the last 30 days"
    )


def test_durations_and_amounts_read_in_their_units():
    assert sentence("seconds_since_card_prev", 3000.0, PAYMENT) == (
        "previous payment on this card 50 min earlier"
    )
    assert "45 s earlier" in sentence("seconds_since_card_prev", 45.0, PAYMENT)
    assert "4.5 days earlier" in sentence("seconds_since_card_prev", 4.5 * 86_400, PAYMENT)
    assert sentence("log_amount", math.log1p(1840.0), {**PAYMENT, "amount": 1840.0}) == (
        "amount is 1,840.00 EUR"
    )


def test_no_history_reads_as_the_first_payment_in_the_window():
    for name in ("amount_to_card_median_30d", "seconds_since_card_prev", "card_prev_speed_kmh"):
        assert sentence(name, math.nan, PAYMENT) == "first payment on this card in the last 30 days"
    assert sentence("card_count_30d", 0.0, PAYMENT) == (
        "first payment on this card in the last 30 days"
    )


# A card with no history: five features say one fact (and a sixth implies it).
NEW_CARD = [
    ("amount_to_card_median_30d", math.nan, 0.4),
    ("amount_to_card_mean_30d", math.nan, 0.3),
    ("seconds_since_card_prev", math.nan, 0.2),
    ("card_count_30d", 0.0, -0.1),
    ("amount_zscore_card_30d", math.nan, 0.1),
    ("billing_ip_mismatch", 1.0, 0.6),
]


def test_features_saying_the_same_thing_are_one_reason_with_their_contributions_added():
    names, values, contributions = (list(x) for x in zip(*NEW_CARD, strict=True))

    out = reasons(names, values, contributions, PAYMENT)

    texts = [r["text"] for r in out]
    assert len(texts) == len(set(texts))
    assert texts == [
        "first payment on this card in the last 30 days",
        "IP country BR differs from billing country DE",
    ]
    assert out[0]["contribution"] == pytest.approx(0.4 + 0.3 + 0.2 - 0.1 + 0.1)
    assert out[0]["feature"] == "amount_to_card_median_30d"  # the strongest member names it
    factors = all_factors(names, values, contributions, PAYMENT)
    assert len(factors) == 2
    assert sorted(factors[0]["features"]) == sorted(n for n, *_ in NEW_CARD[:5])


def test_reasons_are_the_charts_factors_towards_fraud_in_the_same_words_and_order():
    names, values, contributions = (list(x) for x in zip(*NEW_CARD, strict=True))
    names += ["log_amount", "is_night"]
    values += [math.log1p(812.0), 0.0]
    contributions += [-0.9, 0.02]

    out = reasons(names, values, contributions, PAYMENT)
    chart = all_factors(names, values, contributions, PAYMENT)

    towards = sorted(
        (f for f in chart if f["contribution"] >= 0.05), key=lambda f: -f["contribution"]
    )
    assert [(r["text"], r["contribution"]) for r in out] == [
        (f["text"], f["contribution"]) for f in towards
    ]
    assert all(r["contribution"] > 0 for r in out)
    assert towards_fraud(chart) == out  # what the scorer calls, from the chart's own list
    assert "amount is" not in " ".join(r["text"] for r in out)  # it lowered the risk


def test_no_history_in_a_long_window_covers_the_shorter_windows():
    names = ["days_since_merchant_first_seen_30d", "merchant_count_24h", "merchant_count_1h"]
    values = [math.nan, 0.0, 0.0]

    out = reasons(names, values, [0.9, 0.3, 0.2], PAYMENT)

    assert [r["text"] for r in out] == ["first payment at this merchant in the last 30 days"]
    assert out[0]["contribution"] == pytest.approx(1.4)
    # with history over 30 days, an empty last hour is its own fact
    out = reasons(["merchant_count_24h", "merchant_count_1h"], [4.0, 0.0], [0.3, 0.2], PAYMENT)
    assert [r["text"] for r in out] == [
        "4 earlier payments at this merchant in the last 24 hours",
        "first payment at this merchant in the last hour",
    ]


def test_a_first_payment_keeps_its_own_words_when_they_say_more():
    payment = {**PAYMENT, "email_domain": "example.com"}
    out = reasons(["email_domain_count_30d"], [0.0], [0.5], payment)

    assert out[0]["text"] == "first payment with the e-mail domain example.com in the last 30 days"
