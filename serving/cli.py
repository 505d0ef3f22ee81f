"""The `riskgate` command: one entry point, each subcommand defined beside the code it drives."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import Any

# Package modules that register subcommands; imported only when the CLI runs.
_COMMAND_MODULES = (
    "data.cli",
    "features.cli",
    "training.cli",
    "serving.http.commands",
    "serving.http.bento",
    "serving.review.simulate.cli",
    "serving.scoring.cli",
)


def _columns_summary(columns: Iterable[str]) -> str:
    from features.registry import available

    return available(columns).summary()


# What one package's commands need from another, handed over here (data/ imports nothing of
# riskgate but itself, yet `riskgate validate` names the feature groups the columns allow).
_WIRING: dict[str, dict[str, Any]] = {"data.cli": {"columns_summary": _columns_summary}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riskgate", description="Fraud scoring and review for payment platforms."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a package whose commands are not built yet
            raise
        module.add_commands(sub, **_WIRING.get(name, {}))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from data.schema import ValidationError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:
        print(f"error: invalid input\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
