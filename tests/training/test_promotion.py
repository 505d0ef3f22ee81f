"""The promotion gate: `decide` on its own, then train -> promote end to end through MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.training.helpers import WEAK_CONFIG, CliRun, riskgate, tracking_store
from training.promotion import decide

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def challenger_metrics(ap: float, amount: float, champ_ap: float, champ_amount: float) -> dict:
    return {
        "riskgate_average_precision": ap,
        "challenger_amount_caught_at_k": amount,
        "champion_average_precision": champ_ap,
        "champion_amount_caught": champ_amount,
    }


# --- decide -----------------------------------------------------------------------------------


def test_the_first_challenger_becomes_champion():
    verdict = decide({}, champion_version=None, compared_with=None, comparable=False)
    assert verdict.promote
    assert "first champion" in verdict.reason


def test_a_better_challenger_is_accepted():
    verdict = decide(challenger_metrics(0.6, 900.0, 0.5, 800.0), "3", "3", comparable=True)
    assert verdict.promote
    assert verdict.reason.startswith("better: challenger AP 0.6000 vs champion 0.5000")


@pytest.mark.parametrize(
    ("ap", "amount"),
    [
        pytest.param(0.4, 900.0, id="lower-average-precision"),
        pytest.param(0.5, 900.0, id="equal-average-precision-is-not-better"),
        pytest.param(0.6, 799.0, id="higher-AP-but-less-fraud-amount-caught"),
    ],
)
def test_a_challenger_that_is_not_better_is_refused(ap, amount):
    verdict = decide(challenger_metrics(ap, amount, 0.5, 800.0), "3", "3", comparable=True)
    assert not verdict.promote
    assert verdict.reason.startswith("not better:")


def test_equal_fraud_amount_with_higher_average_precision_is_accepted():
    assert decide(challenger_metrics(0.51, 800.0, 0.5, 800.0), "3", "3", comparable=True).promote


def test_a_challenger_compared_with_a_former_champion_is_refused():
    verdict = decide(challenger_metrics(0.9, 1e6, 0.1, 1.0), "4", "3", comparable=True)
    assert not verdict.promote
    assert "compared with v3" in verdict.reason
    assert "champion is now v4" in verdict.reason


def test_a_challenger_never_compared_is_refused_once_a_champion_exists():
    verdict = decide(challenger_metrics(0.9, 1e6, 0.1, 1.0), "1", None, comparable=False)
    assert not verdict.promote
    assert "champion is now v1" in verdict.reason


def test_a_champion_on_other_features_is_not_comparable():
    verdict = decide(challenger_metrics(0.9, 1e6, 0.1, 1.0), "2", "2", comparable=False)
    assert not verdict.promote
    assert "other features" in verdict.reason


@pytest.mark.parametrize(
    "missing",
    [
        "riskgate_average_precision",
        "challenger_amount_caught_at_k",
        "champion_average_precision",
        "champion_amount_caught",
    ],
)
def test_missing_comparison_metrics_are_refused(missing):
    metrics = challenger_metrics(0.9, 1e6, 0.1, 1.0)
    del metrics[missing]
    verdict = decide(metrics, "2", "2", comparable=True)
    assert not verdict.promote
    assert "missing" in verdict.reason


# --- end to end: train -> promote -> worse refused -> forced -> better accepted -----------------


@dataclass
class Story:
    runs: dict[str, CliRun]
    champion: dict[str, str | None]  # step -> champion version after the step
    tags: dict[str, dict[str, str]]  # version -> model version tags at the end
    metrics: dict[str, dict[str, float]]  # version -> run metrics


@pytest.fixture(scope="module")
def story(data_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Story:
    """One registry's life, each step through `riskgate` in-process; one store for the module."""
    tmp = tmp_path_factory.mktemp("promotion")
    weak = tmp / "weak.toml"
    weak.write_text(WEAK_CONFIG)
    with tracking_store(tmp / "store"):
        from training import tracking

        def champion() -> str | None:
            mv = tracking.alias_version("champion")
            return None if mv is None else str(mv.version)

        runs: dict[str, CliRun] = {}
        after: dict[str, str | None] = {}
        steps: list[tuple[str, tuple[object, ...]]] = [
            ("promote_without_challenger", ("promote",)),
            ("train_good", ("train", "--data", data_path)),  # v1
            ("promote_first", ("promote",)),
            ("promote_again", ("promote",)),
            ("train_weak", ("train", "--data", data_path, "--config", weak)),  # v2
            ("promote_weak", ("promote",)),
            ("force_weak", ("promote", "--force", "--reason", "x", "--by", "oncall")),
            ("train_better", ("train", "--data", data_path)),  # v3, vs the weak champion
            ("promote_better", ("promote",)),
        ]
        for name, argv in steps:
            runs[name] = riskgate(*argv)
            after[name] = champion()
        client = tracking.connect()
        versions = [mv.version for mv in client.search_model_versions("name = 'riskgate'")]
        tags = {str(v): tracking.version_tags(str(v)) for v in versions}
        metrics = {v: tracking.run_metrics(t["run_id"]) for v, t in tags.items()}
    return Story(runs, after, tags, metrics)


def test_promote_without_a_challenger_says_to_train_first(story: Story):
    run = story.runs["promote_without_challenger"]
    assert run.code == 2
    assert "no challenger" in run.err
    assert story.champion["promote_without_challenger"] is None


def test_training_registers_challengers_with_increasing_versions(story: Story):
    for step in ("train_good", "train_weak", "train_better"):
        assert story.runs[step].code == 0, story.runs[step].err
    assert "registered riskgate v1 (alias challenger)" in story.runs["train_good"].out
    assert "registered riskgate v2 (alias challenger)" in story.runs["train_weak"].out
    assert "registered riskgate v3 (alias challenger)" in story.runs["train_better"].out
    assert sorted(story.tags) == ["1", "2", "3"]


def test_the_first_trained_model_becomes_champion(story: Story):
    run = story.runs["promote_first"]
    assert run.code == 0, run.err
    assert "riskgate v1 is now the champion" in run.out
    assert story.champion["promote_first"] == "1"
    assert story.tags["1"]["promotion_forced"] == "false"
    assert "first champion" in story.tags["1"]["promotion_reason"]


def test_promoting_the_champion_again_changes_nothing(story: Story):
    run = story.runs["promote_again"]
    assert run.code == 0
    assert "already the champion" in run.out
    assert story.champion["promote_again"] == "1"


def test_a_clearly_worse_challenger_is_refused_and_the_champion_stays(story: Story):
    assert story.tags["2"]["compared_with_champion"] == "1"
    assert story.tags["2"]["champion_comparable"] == "true"
    weak, good = story.metrics["2"], story.metrics["1"]
    assert weak["riskgate_average_precision"] < good["riskgate_average_precision"]
    # the comparison is logged with the challenger: the champion re-scored on the same period
    assert weak["champion_average_precision"] == pytest.approx(good["riskgate_average_precision"])
    run = story.runs["promote_weak"]
    assert run.code == 1
    assert "not better" in run.out
    assert "use --force" in run.err
    assert story.champion["promote_weak"] == "1"


def test_forced_promotion_moves_the_champion_and_is_recorded(story: Story):
    run = story.runs["force_weak"]
    assert run.code == 0, run.err
    assert "riskgate v2 is now the champion (forced)" in run.out
    assert story.champion["force_weak"] == "2"
    tags = story.tags["2"]
    assert tags["promotion_forced"] == "true"
    assert tags["promotion_reason"] == "x"
    assert tags["promoted_by"] == "oncall"
    assert tags["replaced_champion"] == "1"
    assert tags["promoted_at"]


def test_a_better_challenger_is_accepted_over_the_champion(story: Story):
    assert story.tags["3"]["compared_with_champion"] == "2"
    better = story.metrics["3"]
    assert better["riskgate_average_precision"] > better["champion_average_precision"]
    run = story.runs["promote_better"]
    assert run.code == 0, run.err
    assert run.out.startswith("better:")
    assert "riskgate v3 is now the champion" in run.out
    assert "(forced)" not in run.out
    assert story.champion["promote_better"] == "3"
    assert story.tags["3"]["promotion_forced"] == "false"
    assert story.tags["3"]["replaced_champion"] == "2"
