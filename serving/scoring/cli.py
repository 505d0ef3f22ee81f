"""`riskgate backtest`: what a policy file would have done to the stored payments of a period,
side by side with the policy in force (the database riskgate serves from: RISKGATE_DB_URL)."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

KINDS = ("approve", "review", "decline")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "backtest",
        help="replay stored payments through a proposed policy, beside the policy in force",
        description=(
            "Replay the stored payments of a period through the policy in FILE (TOML or JSON, "
            "as PUT /admin/policy takes) with their stored features and probabilities, and "
            "print it beside the policy in force and what actually happened. Recorded, so a "
            "PUT of the same policy cites it."
        ),
    )
    s.add_argument("--policy", required=True, help="proposed policy (TOML or JSON)")
    s.add_argument(
        "--since", help="first payment time (date or RFC 3339; default: 30 days before --until)"
    )
    s.add_argument(
        "--until",
        help="end of the period, exclusive; a date-only value includes "
        "that day (default: just after the latest stored payment)",
    )
    s.add_argument("--db", help="database URL (default: RISKGATE_DB_URL)")
    s.add_argument("--out", help="write the whole report as JSON here")
    s.set_defaults(func=_run)


def _when(text: str, *, end: bool) -> datetime:
    v = datetime.fromisoformat(text.replace("Z", "+00:00"))
    v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    date_only = len(text) == 10
    return v + timedelta(days=1) if end and date_only else v


def _read_policy(path: Path) -> dict[str, Any]:
    text = path.read_text()
    doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("the policy file must hold a table / object")
    return doc


def _in_force(engine: Any, policy_file: str | None) -> Any:
    from sqlalchemy import select

    from serving.scoring.policy import PolicyConfig, parse_config
    from serving.store import db

    with engine.connect() as conn:
        row = conn.execute(
            select(db.settings_table.c.value).where(db.settings_table.c.name == "policy")
        ).first()
    if row is not None:
        return parse_config(row.value)
    if policy_file:
        return parse_config(_read_policy(Path(policy_file)))
    return PolicyConfig()


def _run(args: argparse.Namespace) -> int:
    from serving.core.settings import Settings
    from serving.scoring import whatif
    from serving.scoring.policy import parse_config
    from serving.store import db

    try:
        proposed = parse_config(_read_policy(Path(args.policy)))
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {args.policy}: {exc}", file=sys.stderr)
        return 2
    try:
        since = _when(args.since, end=False) if args.since else None
        until = _when(args.until, end=True) if args.until else None
    except ValueError as exc:
        print(f"error: --since/--until: {exc}", file=sys.stderr)
        return 2
    settings = Settings()
    engine = db.make_engine(args.db or settings.db_url)
    db.create_schema(engine)
    try:
        period = whatif.period_of(engine, since, until)
    except ValueError as exc:
        print(f"error: period: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    report = whatif.run_backtest(
        engine, proposed, _in_force(engine, settings.policy_file), period, as_of=now
    )
    report["backtest_id"] = whatif.record(engine, report, proposed, "cli", now)
    print(render(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


def render(report: dict[str, Any]) -> str:
    """The report as a text table (the JSON holds every figure)."""
    cols = ("actual", "in_force", "proposed")

    def row(label: str, get: Any) -> str:
        cells = []
        for c in cols:
            v = get(report[c])
            cells.append("-" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")
        return f"  {label:<36}" + "".join(f"{x:>14}" for x in cells)

    p = report["period"]
    lines = [
        f"backtest {report.get('backtest_id', '')}: {report['payments']:,} payments from "
        f"{p['start']} to {p['end']} (labels as known at {report['as_of']})",
        f"  {'':<36}" + "".join(f"{c:>14}" for c in cols),
    ]
    for k in KINDS:
        lines.append(row(f"{k}", lambda c, k=k: c["decisions"][k]))
    lines += [
        row("peak reviews in one hour", lambda c: c["peak_reviews_in_one_hour"]),
        row("reviews per day (max)", lambda c: max(c["reviews_per_day"].values(), default=0)),
        row("fraud caught (count)", lambda c: c["mature"]["fraud_caught_count"]),
        row("fraud caught (amount)", lambda c: c["mature"]["fraud_caught_amount"]),
        row("fraud missed (amount)", lambda c: c["mature"]["fraud_missed_amount"]),
        row("good payments held", lambda c: c["mature"]["good_held"]),
        row("good payments declined", lambda c: c["mature"]["good_declined"]),
        row("team: good-payment hold p95 (min)", lambda c: c["team"].get("hold_p95_min")),
        row("team: SLA breaches", lambda c: c["team"].get("sla_breaches")),
        row("younger than the label delay", lambda c: c["label_immature"]["payments"]),
        row("  of them held", lambda c: c["label_immature"]["held"]),
        row("  of them declined", lambda c: c["label_immature"]["declined"]),
    ]
    ch = report["changes"]
    lines.append(f"  changed by the proposal: {ch['changed']:,} payments")
    for kind, cell in ch["by_kind"].items():
        lines.append(
            f"    {kind:<20} {cell['payments']:>8,}  amount {cell['amount']:>12,.2f}"
            f"  known fraud {cell['fraud_known']:,}"
        )
    return "\n".join(lines)
