"""`riskgate simulate` end to end on a small simulated data set with a surge in the test period."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.simulator import SimulationConfig, simulate
from serving.review.simulate import analysis
from serving.review.simulate import cli as simulate_cli
from serving.review.simulate import report as simulate_report

# 40 days: surge days 30 and 33; the last 30% (12 days, from day 28) is held out
CONFIG = SimulationConfig(rows=40_000, days=40, seed=3)
FIGURES = (
    "good_settled_instantly_share",
    "review_volume",
    "fraud_caught_count",
    "fraud_caught_amount",
    "fraud_loss",
    "hold_p50_min",
    "hold_p95_min",
    "hold_p99_min",
    "hold_p95_surge_min",
    "peak_queue_depth",
    "sla_breaches",
    "reviewer_utilisation",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskgate")
    sub = parser.add_subparsers(dest="command", required=True)
    simulate_cli.add_commands(sub)
    return parser


def _run(*argv: str) -> int:
    """One search trial unless a test asks for more: the search is tested in tests/training."""
    if "--search-trials" not in argv:
        argv = (*argv, "--search-trials", "1")
    args = _parser().parse_args(["simulate", *argv])
    return int(args.func(args))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "payments.parquet"
    simulate(CONFIG).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def two_runs(data_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(name) / "report"
        assert _run("--data", str(data_file), "--out", str(out), "--seed", "5") == 0
        outs.append(out)
    return outs[0], outs[1]


def test_writes_every_figure_for_all_three_policies(two_runs: tuple[Path, Path]) -> None:
    out, _ = two_runs
    for name in ("report.md", "report.json", "queue_hold.png", "equal_catch.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("queue_hold.png", "equal_catch.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert set(report["policies"]) == {"rules", "riskgate_fixed", "riskgate_capacity"}
    for policy, figures in report["policies"].items():
        for key in FIGURES:
            assert figures.get(key) is not None, (policy, key)
        assert 0.0 <= figures["reviewer_utilisation"] <= 1.0
        assert 0.0 <= figures["good_settled_instantly_share"] <= 1.0
        assert figures["fraud_caught_amount"] + figures["fraud_loss"] == pytest.approx(
            figures["fraud_amount_total"]
        )
    # the surge is in the held-out period and was found
    day = pd.Timestamp(CONFIG.start_utc) + pd.Timedelta(days=CONFIG.surges[0])
    assert f"{day:%Y-%m-%d}" in report["setup"]["surge_days"]
    assert len(report["targets"]) == 6  # 4 catch levels, instant settlement, hold
    for target in report["targets"]:
        assert set(target["met"]) == {"riskgate_fixed", "riskgate_capacity"}
    eq = report["equal_amount"]
    assert eq["rule_reviews"] == report["policies"]["rules"]["review_volume"]
    assert eq["riskgate_reviews"] >= 0
    assert eq["riskgate_reviews_all_fraud"] >= 0
    # the simulated data says which fraud is friendly fraud
    setup = report["setup"]
    assert setup["scenario_known"] is True
    assert setup["test_fraud_not_stoppable"] > 0
    assert "friendly fraud" in setup["stoppable_note"]
    for row in report["rule_amount_sweep"]:
        assert row["rule_stoppable_fraud_amount"] + row["rule_not_stoppable_fraud_amount"] == (
            pytest.approx(row["rule_fraud_amount_all_fraud"])
        )
    md = (out / "report.md").read_text()
    for title in simulate_report.POLICY_TITLES.values():
        assert title in md
    assert "met" in md
    assert "queue_hold.png" in md
    assert "equal_catch.png" in md
    # the five-line summary opens the report
    summary = simulate_report.summary_lines(report)
    assert len(summary) == 5
    assert md.splitlines()[2:7] == summary


def test_equal_catch_compares_the_best_rule_x_with_riskgate_top_k(
    two_runs: tuple[Path, Path],
) -> None:
    out, _ = two_runs
    report = json.loads((out / "report.json").read_text())
    rows = report["equal_catch"]
    assert [r["catch"] for r in rows] == [0.8, 0.9, 0.95, 0.975]
    for row, detail in zip(rows, report["equal_catch_detail"], strict=True):
        assert set(row) == {"catch", "rule_reviews", "rule_amount", "riskgate_reviews", "ratio"}
        assert row["ratio"] == pytest.approx(row["riskgate_reviews"] / row["rule_reviews"])
        stoppable = report["setup"]["test_stoppable_fraud_amount"]
        assert detail["rule_stopped_amount"] >= row["catch"] * stoppable - 1e-6
    # more catch never takes fewer reviews, for either policy
    for key in ("rule_reviews", "riskgate_reviews"):
        values = [r[key] for r in rows]
        assert values == sorted(values), key
    op = report["operating_points"]
    rules = report["policies"]["rules"]
    assert op["rules"]["reviews"] == rules["review_volume"]
    assert op["rules"]["rule_amount"] == report["setup"]["rule_amount"]
    assert op["riskgate"]["reviews"] == report["policies"]["riskgate_fixed"]["review_volume"]
    # the rule's X at capacity: its reviews per day on the training period fit the capacity
    assert report["setup"]["capacity_reviews_per_day"] > 0
    assert "within capacity" in report["setup"]["rule_amount_text"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """Two seeds under maintenance, on a smaller sample (30 days: surges on days 22 and 25, the
    last 9 days held out) to keep the two trainings cheap."""
    data = tmp_path_factory.mktemp("small") / "payments.parquet"
    simulate(SimulationConfig(rows=16_000, days=30, seed=3)).to_parquet(data, index=False)
    out = tmp_path_factory.mktemp("seeds") / "report"
    argv = (
        "--data",
        str(data),
        "--out",
        str(out),
        "--seeds",
        "2",
        "--scenario",
        "maintenance",
    )
    assert _run(*argv) == 0
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_seeds_report_each_figure_as_median_worst_and_per_seed(seeded: tuple[dict, str]) -> None:
    report, md = seeded
    setup = report["setup"]
    assert setup["seeds"] == 2
    # --data: the data cannot move, the model seed does
    assert [s["model_seed"] for s in setup["per_seed"]] == [42, 43]
    assert [s["data_seed"] for s in setup["per_seed"]] == [None, None]
    for row in report["equal_catch"]:
        assert isinstance(row["catch"], float)
        for key in ("rule_reviews", "rule_amount", "riskgate_reviews", "ratio"):
            assert set(row[key]) == {"median", "worst", "per_seed"}, key
            assert len(row[key]["per_seed"]) == 2
        ratio = row["ratio"]
        assert ratio["worst"] == max(ratio["per_seed"])
        assert ratio["median"] == pytest.approx(sum(ratio["per_seed"]) / 2)
    share = report["policies"]["riskgate_fixed"]["good_settled_instantly_share"]
    assert share["worst"] == min(share["per_seed"])
    assert "2 seeds" in md


def test_maintenance_takes_reviewers_away_on_the_busiest_day(seeded: tuple[dict, str]) -> None:
    report, md = seeded
    setup = report["setup"]
    assert setup["scenario"] == "maintenance"
    assert setup["sla_minutes"] == 15.0
    assert setup["scenario_day"] in setup["surge_days"]  # the busiest day is a surge day
    assert "1 of 2 day-shift reviewers away" in setup["maintenance"]
    assert setup["team_config"]["absences"][0]["reviewers"] == 1
    cap = report["policies"]["riskgate_capacity"]
    for key in ("reviews_shed", "extra_fraud_count", "extra_fraud_amount", "hold_p99_min"):
        assert key in cap, key
    # what the capacity-aware policy sheds is what it approves that the fixed policy reviews
    fixed = report["policies"]["riskgate_fixed"]["review_volume"]["per_seed"]
    capacity = cap["review_volume"]["per_seed"]
    shed = cap["reviews_shed"]["per_seed"]
    assert all(c == f - s for c, f, s in zip(capacity, fixed, shed, strict=True))
    assert report["targets"][-1]["kind"] == "scenario"
    assert "Scenario maintenance" in md
    assert "configured maximum" in md


def test_surge5_needs_the_simulated_sample(
    data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _run("--data", str(data_file), "--out", str(out), "--scenario", "surge5") == 2
    assert "cannot be used with --data" in capsys.readouterr().err
    assert not out.exists()


def test_same_seed_same_report(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    assert (a / "report.json").read_text() == (b / "report.json").read_text()
    assert (a / "report.md").read_text() == (b / "report.md").read_text()


def test_a_missing_file_is_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _run("--data", str(tmp_path / "nope.parquet"), "--out", str(out)) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_data_without_labels_is_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = simulate(SimulationConfig(rows=2_000, days=14, seed=1))
    path = tmp_path / "unlabelled.parquet"
    frame.drop(columns=["is_fraud", "label_time"]).to_parquet(path, index=False)
    out = tmp_path / "out"
    assert _run("--data", str(path), "--out", str(out)) == 2
    assert "is_fraud" in capsys.readouterr().err
    assert not out.exists()


def test_unlabelled_held_out_payments_are_exit_2(
    data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_parquet(data_file)
    last = frame["timestamp"] >= frame["timestamp"].max() - pd.Timedelta(days=1)
    frame.loc[last, "is_fraud"] = None
    frame.loc[last, "label_time"] = pd.NaT
    path = tmp_path / "partly.parquet"
    frame.to_parquet(path, index=False)
    out = tmp_path / "out"
    assert _run("--data", str(path), "--out", str(out)) == 2
    assert "no is_fraud label" in capsys.readouterr().err
    assert not out.exists()


def test_bad_team_options_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _run("--out", str(out), "--reviewers", "0", "--night-reviewers", "0") == 2
    assert "at least one reviewer" in capsys.readouterr().err
    assert _run("--out", str(out), "--day-shift", "morning") == 2
    assert not out.exists()


@pytest.fixture(scope="module")
def low_x_reports(
    data_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict, dict, str]:
    """A rule amount low enough for the rules to hold friendly fraud: with the scenario column,
    and the same data without it. Returns (report, report without scenario, its report.md)."""
    without = tmp_path_factory.mktemp("noscenario") / "payments.parquet"
    pd.read_parquet(data_file).drop(columns=["scenario"]).to_parquet(without, index=False)
    reports = []
    for name, path in (("with", data_file), ("without", without)):
        out = tmp_path_factory.mktemp(name) / "report"
        assert _run("--data", str(path), "--out", str(out), "--rule-amount", "20") == 0
        reports.append(json.loads((out / "report.json").read_text()))
    return reports[0], reports[1], (out / "report.md").read_text()


def test_friendly_fraud_held_by_the_rules_is_not_caught(
    low_x_reports: tuple[dict, dict, str],
) -> None:
    report, _, _ = low_x_reports
    rules = report["policies"]["rules"]
    eq = report["equal_amount"]
    assert rules["fraud_reviewed_not_stoppable_amount"] > 0
    assert eq["rule_not_stoppable_fraud_amount"] == pytest.approx(
        rules["fraud_reviewed_not_stoppable_amount"]
    )
    # the reviewers stop all the other fraud they see (accuracy 1) and none of the friendly fraud
    assert rules["fraud_caught_amount"] == pytest.approx(
        rules["fraud_reviewed_amount"] - rules["fraud_reviewed_not_stoppable_amount"]
    )
    assert rules["fraud_caught_amount"] == pytest.approx(eq["rule_stoppable_fraud_amount"])
    assert rules["fraud_loss"] >= rules["fraud_reviewed_not_stoppable_amount"]
    assert eq["rule_fraud_amount_all_fraud"] > eq["rule_stoppable_fraud_amount"]


def test_data_without_scenario_counts_every_fraud_as_stoppable(
    low_x_reports: tuple[dict, dict, str],
) -> None:
    with_scenario, report, md = low_x_reports
    assert report["setup"]["scenario_known"] is False
    assert report["setup"]["test_fraud_not_stoppable"] == 0
    assert "no scenario column" in report["setup"]["stoppable_note"]
    assert "no scenario column" in md
    rules = report["policies"]["rules"]
    assert rules["fraud_reviewed_not_stoppable_amount"] == 0
    # the same reviews as with the scenario column, but every reviewed fraud counts as caught
    assert (
        rules["fraud_reviewed_amount"]
        == with_scenario["policies"]["rules"]["fraud_reviewed_amount"]
    )
    assert rules["fraud_caught_amount"] == pytest.approx(rules["fraud_reviewed_amount"])
    assert rules["fraud_caught_amount"] > with_scenario["policies"]["rules"]["fraud_caught_amount"]
    eq = report["equal_amount"]
    assert eq["ratio"] == eq["ratio_all_fraud"]
    assert eq["rule_not_stoppable_fraud_amount"] == 0


def test_stoppable_from_scenario() -> None:
    text = pd.DataFrame({"scenario": ["legit", "friendly_fraud", "stolen_card", None]})
    stoppable, known = analysis.stoppable_from_scenario(text)
    assert known is True
    assert stoppable.tolist() == [True, False, True, True]
    category = text.astype({"scenario": "category"})
    assert analysis.stoppable_from_scenario(category)[0].tolist() == [True, False, True, True]
    stoppable, known = analysis.stoppable_from_scenario(pd.DataFrame({"amount": [1.0, 2.0]}))
    assert known is False
    assert stoppable.tolist() == [True, True]


def test_equal_at_ignores_fraud_a_review_cannot_stop() -> None:
    # the rules hold a large friendly-fraud payment (0) and a stolen card (2); riskgate scores
    # the friendly fraud lowest, as it looks like the cardholder's own purchase
    flags = np.array([True, True, True, True, False, False])
    fraud = np.array([True, False, True, False, False, False])
    stoppable = np.array([False, True, True, True, True, True])
    amount = np.array([500.0, 10.0, 80.0, 10.0, 10.0, 10.0])
    score = np.array([0.0, 0.1, 0.9, 0.2, 0.3, 0.4])
    eq = analysis.equal_at(flags, fraud, stoppable, amount, score, score)
    assert eq["rule_reviews"] == 4
    assert eq["rule_stoppable_fraud_amount"] == 80.0
    assert eq["rule_not_stoppable_fraud_amount"] == 500.0
    assert eq["riskgate_reviews"] == 1  # the stolen card, scored highest
    assert eq["ratio"] == pytest.approx(0.25)
    # counting the friendly fraud, riskgate would have to review everything to hold 580
    assert eq["rule_fraud_amount_all_fraud"] == 580.0
    assert eq["riskgate_reviews_all_fraud"] == 6
    assert eq["ratio_all_fraud"] == pytest.approx(1.5)
