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
    for name in ("report.md", "report.json", "queue_hold.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "queue_hold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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
    assert len(report["targets"]) == 3
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


def test_rule_amount_calibration_counts_only_stoppable_fraud() -> None:
    train = np.arange(1.0, 1001.0)  # the percentile p is about 1000 p
    valid = np.array([990.0, 960.0, 10.0, 20.0])  # a stolen card, a friendly fraud, two good
    fraud = np.array([True, True, False, False])
    stoppable = np.array([True, False, True, True])
    riskgate = np.array([True, True, False, False])
    x, q = analysis.rule_amount_from_validation(train, valid, {}, fraud, riskgate, stoppable)
    assert q == pytest.approx(0.989)  # the largest X that still holds the stolen card
    assert 960 < x < 990
    # counting the friendly fraud would push X below 960
    x_all, _ = analysis.rule_amount_from_validation(train, valid, {}, fraud, riskgate)
    assert x_all < 960
