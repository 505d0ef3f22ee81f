"""Read a team's CSV or Parquet file, map its column names onto the contract, and validate.

The mapping is a small TOML file, so a data set with its own names (for example the public
`TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD` layout) loads without code:

    [columns]                 # contract name = the file's column
    timestamp = "TX_DATETIME"
    customer_id = "CUSTOMER_ID"
    merchant_id = "TERMINAL_ID"
    amount = "TX_AMOUNT"
    is_fraud = "TX_FRAUD"

    [defaults]
    transaction_id = "row_number"   # number the rows when the file has no id
    card_id = "customer_id"         # a missing card_id defaults to another contract column
    currency = "EUR"                # a constant for a missing column
    label_delay = "7d"              # label_time = timestamp + delay for labelled rows
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data.schema import BY_NAME, COLUMNS, Problem, ValidationError, validate

TEXT_COLUMNS = tuple(c.name for c in COLUMNS if c.kind in ("str", "category"))
_DEFAULT_KEYS = ("transaction_id", "card_id", "customer_id", "currency", "label_delay")


@dataclass(frozen=True)
class Mapping:
    """Contract column -> the file's column, plus how to fill what the file lacks."""

    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|min|s)")
_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "min": 60, "s": 1}


def parse_duration(text: str) -> pd.Timedelta:
    """'7d', '12h', '30min', '2w', '90s' -> Timedelta; a precise error otherwise."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (use e.g. 7d, 12h, 30min, 2w)")
    number, unit = match.groups()
    return pd.to_timedelta(float(number) * _SECONDS[unit], unit="s")


def read_mapping(path: str | Path) -> Mapping:
    """Parse and check a mapping file; errors name the file, the table and the key."""
    src = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValidationError([Problem(src, None, None, "mapping file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError([Problem(src, None, None, f"not valid TOML: {exc}")]) from None
    problems: list[Problem] = []
    for table in doc:
        if table not in ("columns", "defaults"):
            problems.append(Problem(src, None, None, f"unknown table [{table}]"))
    columns = doc.get("columns", {})
    defaults = doc.get("defaults", {})
    for name, value in columns.items():
        if name not in BY_NAME:
            problems.append(Problem(src, None, None, f"[columns] {name}: not a contract column"))
        elif not isinstance(value, str):
            problems.append(Problem(src, None, None, f"[columns] {name}: must be a column name"))
    for name, value in defaults.items():
        if name not in _DEFAULT_KEYS:
            keys = ", ".join(_DEFAULT_KEYS)
            problems.append(Problem(src, None, None, f"[defaults] {name}: unknown (use {keys})"))
        elif not isinstance(value, str):
            problems.append(Problem(src, None, None, f"[defaults] {name}: must be a string"))
    if "label_delay" in defaults and isinstance(defaults["label_delay"], str):
        try:
            parse_duration(defaults["label_delay"])
        except ValueError as exc:
            problems.append(Problem(src, None, None, f"[defaults] label_delay: {exc}"))
    if problems:
        raise ValidationError(problems)
    return Mapping(columns=dict(columns), defaults=dict(defaults))


def read_table(path: str | Path, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """CSV or Parquet by extension; a precise error for anything else.

    `text_columns` are read from CSV as text, so ids keep their leading zeros ('0742').
    """
    p = Path(path)
    if not p.exists():
        raise ValidationError([Problem(str(p), None, None, "file not found")])
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt") or p.name.endswith(".csv.gz"):
            header = pd.read_csv(p, nrows=0).columns
            dtype = {c: "str" for c in text_columns if c in header}
            return pd.read_csv(p, low_memory=False, dtype=dtype)
    except (ValueError, OSError) as exc:
        raise ValidationError([Problem(str(p), None, None, f"cannot be read: {exc}")]) from None
    raise ValidationError([Problem(str(p), None, None, "unknown format (use .csv or .parquet)")])


def apply_mapping(frame: pd.DataFrame, mapping: Mapping, source: str) -> pd.DataFrame:
    """Rename the file's columns to the contract and fill the declared defaults."""
    problems = [
        Problem(source, None, theirs, f"mapped to '{ours}' but not in the file")
        for ours, theirs in mapping.columns.items()
        if theirs not in frame.columns
    ]
    if problems:
        raise ValidationError(problems)
    renamed = frame.rename(columns={v: k for k, v in mapping.columns.items()})
    d = mapping.defaults
    if "transaction_id" not in renamed.columns and d.get("transaction_id") == "row_number":
        renamed["transaction_id"] = [f"{Path(source).stem}-{i + 1}" for i in range(len(renamed))]
    for key in ("card_id", "customer_id"):
        other = d.get(key)
        if key not in renamed.columns and other:
            if other not in renamed.columns:
                raise ValidationError(
                    [Problem(source, None, other, f"default for {key}: no such column")]
                )
            renamed[key] = renamed[other]
    if "currency" not in renamed.columns and d.get("currency"):
        renamed["currency"] = d["currency"]
    if (
        "label_delay" in d
        and "label_time" not in renamed.columns
        and "is_fraud" in renamed
        and "timestamp" in renamed.columns
    ):
        delay = parse_duration(d["label_delay"])
        ts = pd.to_datetime(renamed["timestamp"], utc=True, errors="coerce", format="ISO8601")
        renamed["label_time"] = (ts + delay).where(renamed["is_fraud"].notna())
    return renamed


def load(path: str | Path, mapping_path: str | Path | None = None) -> pd.DataFrame:
    """The one way a file enters riskgate: read, map, validate (raises ValidationError)."""
    mapping = read_mapping(mapping_path) if mapping_path is not None else Mapping()
    text = [mapping.columns.get(c, c) for c in TEXT_COLUMNS]
    frame = read_table(path, text_columns=text)
    if mapping_path is not None:
        frame = apply_mapping(frame, mapping, str(path))
    return validate(frame, source=str(path))


def write_parquet_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if target.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
