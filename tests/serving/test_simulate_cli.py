"""`riskgate simulate` end to end on a small simulated data set with a surge in the test period."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from data.simulate import SimulationConfig, simulate
from serving import simulate_cli

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
    md = (out / "report.md").read_text()
    for title in simulate_cli.POLICY_TITLES.values():
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
