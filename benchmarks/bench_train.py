"""How long the training job takes, stage by stage, and how much memory it needs.

    python benchmarks/bench_train.py [--rows 1000000] [--days 90] [--seed 7]

Simulates a data set, writes it to Parquet, then runs what `riskgate train --data FILE` runs:
load + validate, `training.pipeline.train` (features, LightGBM, calibration and thresholds,
baselines, metrics, a SHAP sample) and the MLflow logging (figures, params, metrics, the model,
registration) into a temporary tracking store. The target is the whole job on 1,000,000
payments, features included, in under 2 minutes.

Stages are timed inside the real job, not a re-implementation of it: the functions the pipeline
calls are wrapped for the duration of the run and only the outermost wrapped call is counted,
so nothing is counted twice. Whatever no wrapper covers (split, label masks, feature matrices,
raw validation scores, the dataset digest) is reported as "other". Peak memory is the process's
resident-set high-water mark (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), reported after
simulating and after training so the training job's own share can be read off. Not a test:
nothing here asserts.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.load import load
from data.simulator import SimulationConfig, simulate
from training import baselines, pipeline, thresholds
from training.config import TrainConfig
from training.model import RiskModel

TARGET_SECONDS = 120.0

# Stage names, in the order the job runs them (and the table prints them).
LOAD = "load + validate"
FEATURES = "features"
LIGHTGBM = "lightgbm fit"
CALIBRATION = "calibration + thresholds"
BASELINES = "baselines (rules, logistic)"
METRICS = "metrics"
SHAP = "shap sample"
OTHER = "other (split, matrices, digest)"
MLFLOW_SETUP = "mlflow store setup"
FIGURES = "figures"
MLFLOW_LOG = "mlflow logging + registration"
STAGES = (
    LOAD,
    FEATURES,
    LIGHTGBM,
    CALIBRATION,
    BASELINES,
    METRICS,
    SHAP,
    OTHER,
    MLFLOW_SETUP,
    FIGURES,
    MLFLOW_LOG,
)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024


class StageClock:
    """Adds up wall time per stage; nested timed calls count for the outermost stage only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth = 0
        self._patches: list[tuple[object, str, object]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        outermost = self._depth == 0
        self._depth += 1
        began = time.perf_counter()
        try:
            yield
        finally:
            self._depth -= 1
            if outermost:
                self.seconds[name] += time.perf_counter() - began

    def wrap(self, owner: object, attr: str, stage: str | Callable[[int], str]) -> None:
        """Time every call of owner.attr (a module function or a class's method) as `stage`;
        a callable stage gets the call's index (0, 1, ...) and returns the stage name."""
        original = vars(owner)[attr] if isinstance(owner, type) else getattr(owner, attr)
        calls = itertools.count()

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            name = stage(next(calls)) if callable(stage) else stage
            with self.stage(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)
        self._patches.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._patches):
            setattr(owner, attr, original)
        self._patches.clear()


def instrument(clock: StageClock) -> None:
    """Wrap what training.pipeline.train calls, by the names it calls them through."""
    clock.wrap(pipeline, "compute", FEATURES)
    clock.wrap(pipeline, "fit_booster", LIGHTGBM)
    # the first calibration is the model's; the second calibrates the logistic baseline
    clock.wrap(pipeline, "fit_calibration", lambda i: CALIBRATION if i == 0 else BASELINES)
    for name in ("choose", "apply", "tradeoff_table"):
        clock.wrap(thresholds, name, CALIBRATION)
    clock.wrap(RiskModel, "predict_proba", CALIBRATION)  # calibrated valid / test scores
    for name in ("rule_policy", "fit_logistic", "predict_logistic"):
        clock.wrap(baselines, name, BASELINES)
    clock.wrap(pipeline, "evaluate", METRICS)
    clock.wrap(RiskModel, "contributions", SHAP)


@contextmanager
def temporary_store() -> Iterator[str]:
    """A throw-away MLflow tracking store; the environment is restored afterwards."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory(prefix="riskgate-bench-mlflow-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before


def log_like_the_cli(
    result: pipeline.TrainResult, config: TrainConfig, data: Path, clock: StageClock
) -> str:
    """What `riskgate train` does after training on a fresh store: figures, params, the run."""
    from training import tracking
    from training.cli import _figures

    with clock.stage(MLFLOW_SETUP):
        tracking.connect()
        tracking.load_alias("champion")  # the CLI's champion look-up (none in a fresh store)
    k = int(result.metrics["riskgate"]["flagged"])
    extra = {
        "challenger_amount_caught_at_k": result.metrics["riskgate"]["amount_caught"],
        "review_count": float(k),
    }
    with tempfile.TemporaryDirectory() as tmp:
        with clock.stage(FIGURES):
            figs = _figures(result, Path(tmp))
        params = {
            "data": str(data),
            "rows": result.info["rows"],
            **{f"split_{k}": v for k, v in result.split.as_params().items()},
            **{f"lgb_{k}": v for k, v in asdict(config.lightgbm).items()},
            **{f"business_{k}": v for k, v in asdict(config.business).items()},
            "label_delay_days": config.label_delay_days,
            "seed": config.seed,
            "features": len(result.model.features),
            "feature_set_version": result.model.feature_set_version,
            "threshold_review": result.model.thresholds.review,
            "threshold_decline": result.model.thresholds.decline,
        }
        with clock.stage(MLFLOW_LOG):
            logged = tracking.log_training(result, params, figs, extra, {})
    return logged.version


def run(rows: int = 1_000_000, days: int = 90, seed: int = 7) -> dict[str, Any]:
    """Simulate, then time the training job stage by stage. Returns the measurements."""
    baseline_rss = peak_rss_mb()
    config = TrainConfig()
    began = time.perf_counter()
    frame = simulate(SimulationConfig(rows=rows, days=days, seed=seed))
    simulate_s = time.perf_counter() - began
    simulate_rss = peak_rss_mb()

    clock = StageClock()
    with tempfile.TemporaryDirectory(prefix="riskgate-bench-") as tmp:
        data = Path(tmp) / "payments.parquet"
        frame.to_parquet(data, index=False)
        del frame
        job_began = time.perf_counter()
        with clock.stage(LOAD):
            loaded = load(data)
        instrument(clock)
        try:
            pipeline_began = time.perf_counter()
            result = pipeline.train(loaded, config)
            pipeline_s = time.perf_counter() - pipeline_began
        finally:
            clock.restore()
        timed = sum(clock.seconds[s] for s in (FEATURES, LIGHTGBM, CALIBRATION, BASELINES))
        timed += clock.seconds[METRICS] + clock.seconds[SHAP]
        clock.seconds[OTHER] = max(pipeline_s - timed, 0.0)
        train_rss = peak_rss_mb()
        with temporary_store():
            version = log_like_the_cli(result, config, data, clock)
        total_s = time.perf_counter() - job_began
    return {
        "rows": rows,
        "days": days,
        "seed": seed,
        "simulate_seconds": simulate_s,
        "stages": {s: clock.seconds.get(s, 0.0) for s in STAGES},
        "pipeline_seconds": pipeline_s,
        "total_seconds": total_s,
        "target_seconds": TARGET_SECONDS,
        "within_target": total_s <= TARGET_SECONDS,
        "trees": int(result.model.metadata.get("best_iteration") or 0),
        "features": len(result.model.features),
        "split_rows": {k: result.info[k] for k in ("train_rows", "valid_rows", "test_rows")},
        "average_precision": {p: m["average_precision"] for p, m in result.metrics.items()},
        "registered_version": version,
        "baseline_rss_mb": baseline_rss,
        "simulate_rss_mb": simulate_rss,
        "train_rss_mb": train_rss,
        "peak_rss_mb": peak_rss_mb(),
        "memory_measure": "resource.getrusage(RUSAGE_SELF).ru_maxrss",
    }


def stage_table(result: dict[str, Any]) -> str:
    total = result["total_seconds"]
    lines = [f"{'stage':<34}{'seconds':>9}{'share':>8}"]
    for name, seconds in result["stages"].items():
        lines.append(f"{name:<34}{seconds:>9.2f}{seconds / total:>8.1%}")
    lines.append(f"{'total training job':<34}{total:>9.2f}{1:>8.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the stage table, the total against the target and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    r = run(args.rows, args.days, args.seed)
    split = r["split_rows"]
    print(f"rows          {r['rows']:,} over {r['days']} days (seed {r['seed']})")
    print(f"simulate      {r['simulate_seconds']:.2f} s (not part of the job)")
    print(
        f"split         train {split['train_rows']:,} | valid {split['valid_rows']:,} | "
        f"test {split['test_rows']:,}; {r['features']} features, {r['trees']} trees"
    )
    print("test AP       " + ", ".join(f"{p} {v:.3f}" for p, v in r["average_precision"].items()))
    print()
    print(stage_table(r))
    verdict = "within" if r["within_target"] else "OVER"
    print(f"\ntotal {r['total_seconds']:.1f} s: {verdict} the {r['target_seconds']:.0f} s target")
    print(
        f"peak memory   {r['peak_rss_mb']:,.0f} MiB ({r['memory_measure']}); "
        f"{r['baseline_rss_mb']:,.0f} MiB at start, {r['simulate_rss_mb']:,.0f} MiB after "
        f"simulating, {r['train_rss_mb']:,.0f} MiB after training"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
