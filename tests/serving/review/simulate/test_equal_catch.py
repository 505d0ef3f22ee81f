"""Equal catch, the rule X at capacity, the seeds' median and worst, the scenarios: pure parts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data.simulator import SimulationConfig
from serving.review.simulate import analysis, seeds
from serving.review.simulate.scenarios import Scenario, busiest_day, simulation_config
from training.baselines import rule_flags


def _world(n: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
    fraud = rng.random(n) < 0.1
    stoppable = rng.random(n) < 0.85
    signal = (rng.random(n) < 0.05).astype(float)
    score = np.where(fraud, rng.random(n) + 0.3, rng.random(n))
    return {
        "amount": amount,
        "fraud": fraud,
        "stoppable": stoppable,
        "signal": signal,
        "score": score,
    }


def test_rule_frontier_is_the_rule_policy_at_every_x() -> None:
    w = _world()
    stop = np.where(w["fraud"] & w["stoppable"], w["amount"], 0.0)
    train = np.random.default_rng(1).lognormal(3.5, 1.0, 1000)
    grid = (0.5, 0.9, 0.99)
    front = analysis.rule_frontier(w["amount"], {"sig": w["signal"]}, stop, train, grid)
    assert front["x"].iloc[0] == math.inf  # the signals alone first
    for _, row in front.iterrows():
        flags = rule_flags(w["amount"], {"sig": w["signal"]}, row["x"])
        assert row["reviews"] == flags.sum()
        assert row["stopped"] == pytest.approx(stop[flags].sum())
    assert front["reviews"].is_monotonic_increasing


def test_equal_catch_takes_the_best_x_with_hindsight_and_riskgate_top_k() -> None:
    amount = np.array([100.0, 90.0, 80.0, 10.0, 10.0, 10.0, 5.0, 5.0])
    fraud = np.array([True, False, True, False, True, False, False, True])
    stoppable = np.ones(8, dtype=bool)
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.05, 0.6])
    stop = np.where(fraud, amount, 0.0)  # 100 + 80 + 10 + 5 = 195
    front = analysis.rule_frontier(amount, {}, stop, amount, (0.0, 0.5, 0.8))
    rows, detail = analysis.equal_catch(front, score, fraud, stoppable, amount, (0.8, 0.9, 0.97))
    assert [r["catch"] for r in rows] == [0.8, 0.9, 0.97]
    assert set(rows[0]) == {"catch", "rule_reviews", "rule_amount", "riskgate_reviews", "ratio"}
    # 80% = 156: the rule needs amount > 10 (100, 90, 80 hold 180): 3 reviews; riskgate 2
    assert rows[0]["rule_reviews"] == 3
    assert rows[0]["riskgate_reviews"] == 2
    assert rows[0]["ratio"] == pytest.approx(2 / 3)
    # 97% = 189.2: the rule must review everything above the lowest X (6 payments)
    assert rows[2]["rule_reviews"] == 6
    assert rows[2]["rule_amount"] == pytest.approx(5.0)
    assert rows[2]["riskgate_reviews"] == 3
    assert detail[2]["target_amount"] == pytest.approx(0.97 * 195)
    assert detail[2]["rule_stopped_amount"] >= detail[2]["target_amount"]


def test_rule_amount_for_capacity_reviews_the_most_that_fits() -> None:
    amount = np.arange(1.0, 1001.0)
    signal = np.zeros(1000)
    signal[:50] = 1  # 50 signal hits a day over 1 day
    x, q = analysis.rule_amount_for_capacity(
        amount, {"s": signal}, 1.0, 150.0, (0.5, 0.8, 0.9, 0.95)
    )
    flags = rule_flags(amount, {"s": signal}, x)
    assert flags.sum() <= 150
    assert q == 0.9  # p90 reviews 50 + 100; p80 would need 250
    x_inf, q_inf = analysis.rule_amount_for_capacity(amount, {"s": signal}, 1.0, 10.0, (0.5,))
    assert (x_inf, q_inf) == (math.inf, None)


def test_low_ranked_names_the_frauds_between_the_target_and_the_need() -> None:
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    fraud = np.array([True, False, True, False, True, True])
    stoppable = np.array([True, True, True, True, True, False])
    amount = np.array([50.0, 5.0, 30.0, 5.0, 300.0, 80.0])
    scenario = np.array(
        ["stolen_card", "legit", "card_testing", "legit", "compromised_merchant", "friendly_fraud"]
    )
    out = analysis.low_ranked(score, score, fraud, stoppable, amount, scenario, 2, 6)
    assert out["frauds"] == 2  # rank 3 and 5; the friendly fraud at rank 6 cannot be stopped
    assert out["amount"] == 330.0
    assert list(out["by_scenario"]) == ["compromised_merchant", "card_testing"]
    assert [f["rank"] for f in out["largest"]] == [3, 5]


def test_seeds_report_median_worst_and_per_seed_in_the_right_direction() -> None:
    runs = [
        {"ratio": 0.1, "good_settled_instantly_share": 0.99, "catch": 0.8, "name": "a"},
        {"ratio": 0.3, "good_settled_instantly_share": 0.97, "catch": 0.8, "name": "a"},
        {"ratio": 0.2, "good_settled_instantly_share": 0.98, "catch": 0.8, "name": "b"},
    ]
    out = seeds._agg(runs, "row")
    assert out["ratio"] == {"median": 0.2, "worst": 0.3, "per_seed": [0.1, 0.3, 0.2]}
    assert out["good_settled_instantly_share"]["worst"] == 0.97  # lower is worse here
    assert out["catch"] == 0.8  # a level, not a figure
    assert out["name"] == {"per_seed": ["a", "a", "b"]}
    assert seeds.median(out["ratio"]) == 0.2
    assert seeds.median(0.5) == 0.5
    assert seeds.worst(out["ratio"]) == 0.3


def test_scenarios() -> None:
    base = SimulationConfig()
    five = simulation_config(base, Scenario("surge5"))
    assert five.surges == (base.surges[0],)
    assert five.surge_multiplier == 5.0
    assert simulation_config(base, Scenario("maintenance")) == base
    assert Scenario("both").surge5
    assert Scenario("both").maintenance
    with pytest.raises(ValueError, match="use one of"):
        Scenario("flood")
    ts = pd.Series(
        pd.to_datetime(["2024-01-01 10:00", "2024-01-02 01:00", "2024-01-02 03:00"], utc=True)
    )
    assert busiest_day(ts) == pd.Timestamp("2024-01-02", tz="UTC")
