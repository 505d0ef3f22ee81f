"""The decision policy: lists, rules and thresholds over the model's probability (pure)."""

from __future__ import annotations

import pytest

from serving.scoring.policy import PolicyConfig, Rule, decide, parse_config, to_doc
from training.model import Thresholds

THRESHOLDS = Thresholds(review=0.3, decline=0.9)
PAYMENT = {"card_id": "card-1", "device_id": "dev-1", "ip_hash": "ip-1", "amount": 20.0}


def policy(**kwargs) -> PolicyConfig:
    return PolicyConfig(**kwargs)


@pytest.mark.parametrize(("probability", "expected"), [(0.1, "approve"), (0.5, "review")])
def test_thresholds_decide_without_lists_or_rules(probability, expected):
    out = decide(PAYMENT, {}, probability, THRESHOLDS, policy())

    assert (out.decision, out.source, out.rules) == (expected, "model", ())


def test_probability_at_the_decline_threshold_declines():
    assert decide(PAYMENT, {}, 0.9, THRESHOLDS, policy()).decision == "decline"


@pytest.mark.parametrize("probability", [0.01, 0.95, None])
def test_block_list_declines_whatever_the_model_says(probability):
    config = policy(block={"device_id": frozenset({"dev-1"})})

    out = decide(PAYMENT, {}, probability, THRESHOLDS, config)

    assert out.decision == "decline"
    assert out.source == "rules"
    assert out.rules == ("block list: device_id",)


@pytest.mark.parametrize("probability", [0.5, 0.95, None])
def test_allow_list_approves_whatever_the_model_says(probability):
    config = policy(allow={"card_id": frozenset({"card-1"})})

    out = decide({**PAYMENT, "amount": 5000.0}, {}, probability, THRESHOLDS, config)

    assert out.decision == "approve"
    assert out.source == "rules"
    assert out.rules == ("allow list: card_id",)


def test_block_list_wins_over_allow_list():
    config = policy(
        allow={"card_id": frozenset({"card-1"})}, block={"ip_hash": frozenset({"ip-1"})}
    )

    assert decide(PAYMENT, {}, 0.01, THRESHOLDS, config).decision == "decline"


def test_list_entries_of_another_payment_do_not_match():
    config = policy(block={"card_id": frozenset({"card-2"})})

    assert decide(PAYMENT, {}, 0.01, THRESHOLDS, config).decision == "approve"


def test_rule_makes_an_approval_stricter_and_is_named():
    rule = Rule("big amount", "amount", ">", 10.0, "review")

    out = decide(PAYMENT, {}, 0.01, THRESHOLDS, policy(rules=(rule,)))

    assert (out.decision, out.source, out.rules) == ("review", "rules", ("big amount",))


def test_rule_can_read_a_computed_feature():
    rule = Rule("card velocity", "card_count_1h", ">=", 5, "decline")

    out = decide(PAYMENT, {"card_count_1h": 7.0}, 0.01, THRESHOLDS, policy(rules=(rule,)))

    assert out.decision == "decline"


@pytest.mark.parametrize(
    ("probability", "model_says"), [(0.5, "review"), (0.95, "decline")], ids=["review", "decline"]
)
def test_rule_never_loosens_the_models_decision(probability, model_says):
    lenient = Rule("small amount", "amount", "<", 100.0, "review")

    out = decide(PAYMENT, {}, probability, THRESHOLDS, policy(rules=(lenient,)))

    assert out.decision == model_says
    assert out.source == "model"
    assert out.rules == ("small amount",)


def test_strictest_matching_rule_wins():
    rules = (
        Rule("r1", "amount", ">", 1.0, "review"),
        Rule("r2", "amount", ">", 2.0, "decline"),
        Rule("r3", "amount", ">", 3.0, "review"),
    )

    out = decide(PAYMENT, {}, 0.01, THRESHOLDS, policy(rules=rules))

    assert out.decision == "decline"
    assert out.rules == ("r1", "r2", "r3")


@pytest.mark.parametrize("value", [None, float("nan"), "not-a-number"])
def test_rule_on_a_missing_or_incomparable_value_does_not_match(value):
    rule = Rule("speed", "card_prev_speed_kmh", ">", 900, "decline")

    out = decide(PAYMENT, {"card_prev_speed_kmh": value}, 0.01, THRESHOLDS, policy(rules=(rule,)))

    assert out.decision == "approve"


@pytest.mark.parametrize("amount", [0.0, 12.5, 50.0])
def test_fallback_settles_small_amounts(amount):
    out = decide({**PAYMENT, "amount": amount}, {}, None, THRESHOLDS, policy())

    assert (out.decision, out.source) == ("approve", "fallback")


@pytest.mark.parametrize("amount", [50.01, 2500.0, 1e9])
def test_fallback_sends_larger_amounts_to_review(amount):
    out = decide({**PAYMENT, "amount": amount}, {}, None, None, policy())

    assert (out.decision, out.source) == ("review", "fallback")


def test_fallback_threshold_is_configurable():
    config = policy(fallback_max_amount=10.0)

    assert decide(PAYMENT, {}, None, None, config).decision == "review"


@pytest.mark.parametrize("amount", [5.0, 5000.0])
def test_fallback_never_declines_even_when_a_rule_says_decline(amount):
    rule = Rule("always", "amount", ">=", 0, "decline")

    out = decide({**PAYMENT, "amount": amount}, {}, None, None, policy(rules=(rule,)))

    assert out.decision == "review"
    assert out.source == "fallback"
    assert out.rules == ("always",)


def test_rule_with_an_unknown_operator_or_action_is_refused():
    with pytest.raises(ValueError, match="unknown op"):
        Rule("x", "amount", "~", 1, "review")
    with pytest.raises(ValueError, match="review or decline"):
        Rule("x", "amount", ">", 1, "approve")  # type: ignore[arg-type]


def test_policy_document_round_trips_and_refuses_unknown_lists():
    doc = {
        "allow": {"card_id": ["c2", "c1"]},
        "block": {"email_domain": ["bad.example"]},
        "rules": [{"name": "n", "field": "amount", "op": ">", "value": 5, "action": "review"}],
        "fallback_max_amount": 25.0,
    }

    config = parse_config(doc)

    assert to_doc(config) == {**doc, "allow": {"card_id": ["c1", "c2"]}}
    with pytest.raises(ValueError, match="unknown list 'customer_id'"):
        parse_config({"block": {"customer_id": ["x"]}})
