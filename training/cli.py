"""`riskgate train`, `riskgate promote`: orchestration of the pure training code and MLflow."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from data.load import load, parse_duration, write_parquet_atomic

if TYPE_CHECKING:
    from training.dask_fit import DaskSettings


LOG_EVERY_S = 10.0  # progress lines when stderr is not a terminal


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", help="train, evaluate and register a challenger model")
    t.add_argument("--data", required=True, help="CSV or Parquet with labels")
    t.add_argument("--mapping", help="TOML column mapping")
    t.add_argument("--config", help="TOML training config ([lightgbm], [business])")
    t.add_argument(
        "--labels",
        help="label events to merge: GET /labels/export saved as .json or .csv, or Parquet",
    )
    for name in ("train-start", "train-end", "test-start", "test-end", "valid-start", "valid-end"):
        kind = "end" if name.endswith("end") else "start"
        t.add_argument(
            f"--{name}",
            metavar="DATE",
            help=f"period {kind} (UTC; "
            + (
                "a date-only end is inclusive: the whole day belongs to the period)"
                if kind == "end"
                else "date or date and time)"
            ),
        )
    t.add_argument(
        "--labels-as-of",
        metavar="DATE",
        help="labels as known at this moment (default: the test start; never later)",
    )
    t.add_argument("--label-delay", default=None, help="gap for label delay, e.g. 7d (default 7d)")
    t.add_argument(
        "--search-trials",
        type=_worker_count,
        default=None,
        metavar="N",
        help="hyperparameter trials on validation, the defaults first (default 8; 1 = defaults)",
    )
    t.add_argument(
        "--search-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="no new search trial starts after this many seconds (default 60)",
    )
    t.add_argument("--metrics-out", help="write the metrics as JSON")
    t.add_argument("--scores-out", help="write transaction_id, score, label of the test period")
    t.add_argument("--no-mlflow", action="store_true", help="skip tracking (quick experiments)")
    t.add_argument("--dask", action="store_true", help="fit LightGBM on a Dask cluster")
    t.add_argument(
        "--dask-workers",
        type=_worker_count,
        default=None,
        metavar="N",
        help="worker processes of the local Dask cluster (default 2)",
    )
    t.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="use a running Dask scheduler (e.g. tcp://127.0.0.1:8786) instead of a local cluster",
    )
    t.set_defaults(func=train)

    d = sub.add_parser("drift", help="population stability of features and score vs training")
    d.add_argument("--data", required=True, help="CSV or Parquet of recent payments")
    d.add_argument("--mapping", help="TOML column mapping")
    d.add_argument("--model-dir", help="a local model artifact (default: the registry alias)")
    d.add_argument("--alias", default="champion", help="registry alias (default champion)")
    d.add_argument("--top", type=int, default=15, help="rows to print")
    d.add_argument("--out", help="write the full report as JSON")
    d.set_defaults(func=drift_report)

    p = sub.add_parser("promote", help="make the challenger the champion if it is better")
    p.add_argument("--force", action="store_true", help="promote even if not better (recorded)")
    p.add_argument("--reason", default="", help="why (recorded with --force)")
    p.add_argument("--by", default="cli", help="who promotes (recorded)")
    p.set_defaults(func=promote)


def _worker_count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"at least 1 worker is needed, got {n}")
    return n


def _dask_settings(args: argparse.Namespace) -> DaskSettings | None:
    """`DaskSettings` for `--dask`, None without it; ValueError for inconsistent options."""
    if not args.dask:
        if args.dask_workers is not None or args.dask_scheduler:
            raise ValueError("--dask-workers and --dask-scheduler need --dask")
        return None
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("dask", "distributed")):
        raise ValueError("--dask needs the dask extra: pip install 'riskgate[dask]'")
    if args.dask_workers is not None and args.dask_scheduler:
        raise ValueError("--dask-workers starts a local cluster: not with --dask-scheduler")
    from training.dask_fit import DaskSettings

    return DaskSettings(n_workers=args.dask_workers or 2, scheduler=args.dask_scheduler)


def _ts(value: str | None, *, end: bool = False) -> pd.Timestamp | None:
    """A boundary from the command line; a date-only end date is inclusive (whole day)."""
    if value is None:
        return None
    from training.split import bound

    return bound(value, end=end)


def _print_table(metrics: dict[str, dict[str, float]]) -> None:
    rows = [
        ("average precision (PR-AUC)", "average_precision", "{:.3f}"),
        ("ROC-AUC", "roc_auc", "{:.3f}"),
        ("recall at 1% reviewed", "recall_at_1pct", "{:.1%}"),
        ("recall at 2% reviewed", "recall_at_2pct", "{:.1%}"),
        ("review rate", "review_rate", "{:.2%}"),
        ("recall at budget", "recall", "{:.1%}"),
        ("precision at budget", "precision", "{:.1%}"),
        ("fraud amount caught", "amount_caught_share", "{:.1%}"),
        ("good payments held", "good_held", "{:,.0f}"),
        ("card precision@k", "card_precision_at_k", "{:.3f}"),
        ("calibration error", "calibration_error", "{:.4f}"),
    ]
    policies = list(metrics)
    heads = {"plain_lightgbm": "plain LGBM"}
    print(f"\n{'metric (test period)':<28}" + "".join(f"{heads.get(p, p):>14}" for p in policies))
    for label, key, fmt in rows:
        cells = []
        for p in policies:
            v = metrics[p].get(key)
            cells.append(f"{fmt.format(v) if v is not None else '-':>14}")
        print(f"{label:<28}" + "".join(cells))


def _print_tradeoff(rows: list[dict[str, float]]) -> None:
    head = ("capacity", "review", "decline", "fraud #", "fraud $", "good held")
    print("\n" + " ".join(f"{h:>{w}}" for h, w in zip(head, (9, 8, 8, 8, 8, 10), strict=True)))
    for r in rows:
        print(
            f"{r['capacity_share']:>9.2%} {r['review_rate']:>8.2%} {r['decline_rate']:>8.2%} "
            f"{r['fraud_caught']:>8.1%} {r['fraud_amount_caught']:>8.1%} {r['good_held']:>10,.0f}"
        )


def train(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from tqdm import tqdm

    from training.config import load_config
    from training.feedback import merge_labels, merge_report, read_labels, validate_labels
    from training.pipeline import score_table
    from training.pipeline import train as run_training

    started = time.perf_counter()
    try:
        dask = _dask_settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    if args.label_delay:
        try:
            delay = parse_duration(args.label_delay)
        except ValueError as exc:
            print(f"error: --label-delay: {exc}", file=sys.stderr)
            return 2
        config = replace(config, label_delay_days=delay / pd.Timedelta(days=1))
    try:
        search = replace(
            config.search,
            **({"trials": args.search_trials} if args.search_trials else {}),
            **({"budget_seconds": args.search_budget} if args.search_budget is not None else {}),
        )
    except ValueError as exc:
        print(f"error: --search-budget: {exc}", file=sys.stderr)
        return 2
    config = replace(config, search=search)
    frame = load(args.data, args.mapping)
    report = None
    if args.labels:
        labels = validate_labels(read_labels(args.labels), args.labels)
        merged = merge_labels(frame, labels, args.labels)
        report = merge_report(frame, merged, labels)
        print(report, file=sys.stderr)
        frame = merged
    try:
        periods = {
            "train_start": _ts(args.train_start),
            "train_end": _ts(args.train_end, end=True),
            "test_start": _ts(args.test_start),
            "test_end": _ts(args.test_end, end=True),
            "valid_start": _ts(args.valid_start),
            "valid_end": _ts(args.valid_end, end=True),
            "labels_as_of": _ts(args.labels_as_of),
        }
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    interactive = sys.stderr.isatty()
    bar = tqdm(
        total=config.lightgbm.n_estimators,
        desc="boosting",
        unit="tree",
        file=sys.stderr,
        leave=False,
        disable=not interactive,  # a log gets a line every few seconds instead (below)
    )
    last_line = [time.perf_counter()]

    def rounds(i: int, best_ap: float) -> None:
        if interactive:
            if i < bar.n:  # the next search trial or fold starts from round 1
                bar.reset()
            bar.update(i - bar.n)
            bar.set_postfix_str(f"best valid AP {best_ap:.4f}", refresh=False)
        elif time.perf_counter() - last_line[0] >= LOG_EVERY_S:
            last_line[0] = time.perf_counter()
            say(f"boosting: round {i}, best validation AP so far {best_ap:.4f}")

    def say(msg: str) -> None:
        tqdm.write(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr)

    try:
        result = run_training(
            frame, config, periods=periods, progress=say, round_progress=rounds, dask=dask
        )
    except ValueError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    _print_table(result.metrics)
    _print_tradeoff(result.tradeoff)
    print(f"\nrule policy amount threshold X = {result.rule_threshold:,.2f}")

    extra: dict[str, float] = {}
    tags: dict[str, str] = {}
    if report is not None:  # the run records what the label file did (the feedback loop's evidence)
        extra.update(report.as_metrics())
        tags["labels_changed_ids_digest"] = report.changed_ids_digest
    if not args.no_mlflow:
        from training import tracking

        champ = tracking.load_alias("champion")
        if champ is not None:
            model, version = champ
            tags["compared_with_champion"] = version
            if model.feature_set_version != result.model.feature_set_version or any(
                f not in result.features.columns for f in model.features
            ):
                tags["champion_comparable"] = "false"
                say(f"champion v{version} uses other features: not comparable on this data")
            else:
                from sklearn.metrics import average_precision_score

                from training.metrics import at_flagged, top_k_mask

                te = result.parts == "test"
                p = score_table(model, result.features.loc[te])
                y = result.test_scores["label"].to_numpy()
                amount = frame.loc[te, "amount"].to_numpy()
                k = int(result.metrics["riskgate"]["flagged"])
                extra["champion_average_precision"] = float(average_precision_score(y, p))
                extra["champion_amount_caught"] = at_flagged(top_k_mask(p, k), y, amount)[
                    "amount_caught"
                ]
                tags["champion_comparable"] = "true"
                print(
                    f"\nchampion v{version} on the same test period: AP "
                    f"{extra['champion_average_precision']:.3f}, amount caught "
                    f"{extra['champion_amount_caught']:,.2f} at the same review count"
                )
        k = int(result.metrics["riskgate"]["flagged"])
        extra["challenger_amount_caught_at_k"] = result.metrics["riskgate"]["amount_caught"]
        extra["review_count"] = float(k)
        say("logging to MLflow")
        sel = result.selection
        assert sel is not None
        with tempfile.TemporaryDirectory() as tmp:
            figs = _figures(result, Path(tmp))
            params = {
                "data": args.data,
                "labels": args.labels or "",
                "rows": len(frame),
                **{f"split_{k}": v for k, v in result.split.as_params().items()},
                **{f"lgb_{k}": v for k, v in asdict(config.lightgbm).items()},
                **{f"business_{k}": v for k, v in asdict(config.business).items()},
                "label_delay_days": config.label_delay_days,
                "labels_as_of": str(result.split.known_by),
                "model_selection": result.split.selection,
                **{f"chosen_{k}": v for k, v in asdict(sel.params).items()},
                "kept_iteration": sel.rounds,
                "search_trials": len(sel.trials),
                "search_cut_by_budget": sel.cut_by_budget,
                **{
                    f"period_{p.name}_{i}_{k}": v
                    for i, p in enumerate(result.periods)
                    for k, v in (("rows", p.rows), ("used", p.used), ("fraud_used", p.fraud_known))
                },
                "seed": config.seed,
                "features": len(result.model.features),
                "feature_set_version": result.model.feature_set_version,
                "threshold_review": result.model.thresholds.review,
                "review_by": result.model.thresholds.review_by,
                "fit_backend": "dask" if args.dask else "local",
                "threshold_decline": result.model.thresholds.decline,
            }
            logged = tracking.log_training(result, params, figs, extra, tags)
        print(f"\nregistered riskgate v{logged.version} (alias challenger), run {logged.run_id}")
        print(
            f"tracking: {tracking.tracking_uri()}  (mlflow ui --backend-store-uri ... --workers 1)"
        )
    if args.metrics_out:
        payload: dict[str, Any] = {
            "metrics": result.metrics,
            "tradeoff": result.tradeoff,
            "split": result.split.as_params(),
            "thresholds": asdict(result.model.thresholds),
            "rule_amount_threshold": result.rule_threshold,
            **extra,
        }
        Path(args.metrics_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics_out).write_text(json.dumps(payload, indent=2, default=str))
    if args.scores_out:
        write_parquet_atomic(result.test_scores, args.scores_out)
    say("done")
    return 0


def _figures(result: Any, out: Path) -> dict[str, Path]:
    from training import plots

    c = result.curves
    figs = {
        "pr_curve": plots.pr_curves(
            c["y_test"],
            {"riskgate": c["p_test"], "logistic": c["p_logistic"], "rules": c["rule_score"]},
            out / "pr_curve.png",
        ),
        "calibration": plots.calibration(c["y_test"], c["p_test"], out / "calibration.png"),
        "tradeoff": plots.tradeoff(result.tradeoff, out / "threshold_tradeoff.png"),
    }
    if result.shap_sample is not None:
        contrib, X = result.shap_sample
        figs["shap"] = plots.shap_summary(
            contrib, X, list(result.model.features), out / "shap_summary.png"
        )
    return figs


def promote(args: argparse.Namespace) -> int:
    from training import tracking
    from training.promotion import decide

    challenger = tracking.alias_version("challenger")
    if challenger is None:
        print("error: no challenger: run `riskgate train` first", file=sys.stderr)
        return 2
    champion = tracking.alias_version("champion")
    version = str(challenger.version)
    if champion is not None and str(champion.version) == version:
        print(f"riskgate v{version} is already the champion")
        return 0
    metrics = tracking.run_metrics(challenger.tags.get("run_id", challenger.run_id))
    verdict = decide(
        metrics,
        champion_version=None if champion is None else str(champion.version),
        compared_with=challenger.tags.get("compared_with_champion"),
        comparable=challenger.tags.get("champion_comparable") == "true",
    )
    print(verdict.reason)
    if not verdict.promote and not args.force:
        print("not promoted (use --force to override; it is recorded)", file=sys.stderr)
        return 1
    tags = {
        "promoted_by": args.by,
        "promoted_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "promotion_forced": str(bool(args.force and not verdict.promote)).lower(),
        "promotion_reason": args.reason or verdict.reason,
    }
    if champion is not None:
        tags["replaced_champion"] = str(champion.version)
    tracking.set_alias("champion", version, tags)
    print(
        f"riskgate v{version} is now the champion"
        + (" (forced)" if tags["promotion_forced"] == "true" else "")
    )
    return 0


def drift_report(args: argparse.Namespace) -> int:
    """PSI per feature and for the score against the model's training profile, worst first."""
    from features.batch import compute
    from features.registry import select as select_features
    from training.drift import level, psi_report
    from training.model import RiskModel
    from training.pipeline import score_table

    if args.model_dir:
        model, version = RiskModel.load(args.model_dir), f"local:{args.model_dir}"
    else:
        from training import tracking

        found = tracking.load_alias(args.alias)
        if found is None:
            print(f"error: no model under alias {args.alias!r}", file=sys.stderr)
            return 2
        model, version = found
    if model.profile is None:
        print(f"error: model {version} has no reference profile (retrain it)", file=sys.stderr)
        return 2
    frame = load(args.data, args.mapping)
    table = compute(frame, select_features(model.features))
    rows = psi_report(model.profile, table, score_table(model, table))
    print(f"drift of {args.data} ({len(frame):,} payments) against model {version}'s training data")
    print(f"{'feature':<34} {'PSI':>8}  level")
    for name, value in rows[: args.top]:
        print(f"{name:<34} {value:>8.3f}  {level(value)}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps([{"name": n, "psi": v} for n, v in rows], indent=2))
    return 0
