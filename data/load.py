"""Read a team's CSV or Parquet file, map its columns onto the contract, and validate.

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

A `[columns]` value may instead be an inline table that derives the column at load:

    card_id = {tokenize = "cc_num"}          # keyed hash (HMAC-SHA256): the raw value is dropped
    timestamp = {unix_seconds = "unix_time"} # seconds since 1970-01-01 UTC
    customer_age = {age_from = "dob"}        # years from a date of birth to each payment
    mcc = {category = "category"}            # a category name as the merchant category
    customer_location = {lat = "lat", lon = "long"}   # customer_lat and customer_lon at once

    [tokenize]
    key = "..."   # used when RISKGATE_TOKEN_KEY is unset; without either a public default key

After mapping, the frame holds contract columns only: the file's other columns (names,
addresses, the raw card number) are not carried any further.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from data.schema import (
    BY_NAME,
    COLUMNS,
    MAX_ERRORS,
    Problem,
    ValidationError,
    as_text,
    to_utc,
    validate,
)

TEXT_COLUMNS = tuple(c.name for c in COLUMNS if c.kind in ("str", "category"))
_DEFAULT_KEYS = ("transaction_id", "card_id", "customer_id", "currency", "label_delay")

How = Literal["copy", "tokenize", "unix_seconds", "age_from", "category"]
TRANSFORMS: tuple[How, ...] = ("tokenize", "unix_seconds", "age_from", "category")
# Which contract columns each transform may fill (a token is text; an age is customer_age only).
_TARGETS: dict[str, tuple[str, ...]] = {
    "tokenize": tuple(c.name for c in COLUMNS if c.kind == "str"),
    "unix_seconds": tuple(c.name for c in COLUMNS if c.kind == "timestamp"),
    "age_from": ("customer_age",),
    "category": ("mcc",),
}
# A coordinate pair from two columns: `customer_location = {lat = "lat", lon = "long"}`.
PAIRS: dict[str, tuple[str, str]] = {
    "customer_location": ("customer_lat", "customer_lon"),
    "merchant_location": ("merchant_lat", "merchant_lon"),
}

TOKEN_KEY_ENV = "RISKGATE_TOKEN_KEY"
# Public, so tokens made with it are stable but NOT secret: anyone can hash every card number.
DEFAULT_TOKEN_KEY = b"riskgate-default-token-key-not-secret"
DEFAULT_KEY_WARNING = (
    "warning: tokenizing with riskgate's built-in default key, so the tokens are not secret "
    f"(anyone can recompute them); set {TOKEN_KEY_ENV} or [tokenize] key in the mapping"
)
# Hex digits written as letters: a token never holds a digit run a card-number scanner flags.
_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


@dataclass(frozen=True)
class Source:
    """Where one contract column comes from: a file column, copied or derived by one transform."""

    column: str
    how: How = "copy"


@dataclass(frozen=True)
class Mapping:
    """Contract column -> its source in the file, plus how to fill what the file lacks."""

    columns: dict[str, Source] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    token_key: str | None = None

    def tokenizes(self) -> bool:
        """Whether loading needs a token key."""
        return any(s.how == "tokenize" for s in self.columns.values())


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|min|s)")
_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "min": 60, "s": 1}


def parse_duration(text: str) -> pd.Timedelta:
    """'7d', '12h', '30min', '2w', '90s' -> Timedelta; a precise error otherwise."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (use e.g. 7d, 12h, 30min, 2w)")
    number, unit = match.groups()
    return pd.to_timedelta(float(number) * _SECONDS[unit], unit="s")


def _column_sources(name: str, value: object) -> tuple[dict[str, Source], str | None]:
    """One `[columns]` entry -> the sources it declares, or the reason it is wrong."""
    if isinstance(value, str) and name not in PAIRS:
        return {name: Source(value)}, None
    if not isinstance(value, dict):
        return {}, 'must be a column name or an inline table such as {tokenize = "column"}'
    if name in PAIRS:
        unknown = sorted(set(value) - {"lat", "lon"})
        if unknown:
            return {}, f"unknown key '{unknown[0]}' (use lat and lon)"
        if set(value) != {"lat", "lon"} or not all(isinstance(v, str) for v in value.values()):
            return {}, 'needs both lat and lon as column names, e.g. {lat = "lat", lon = "long"}'
        lat, lon = PAIRS[name]
        return {lat: Source(value["lat"]), lon: Source(value["lon"])}, None
    unknown = sorted(set(value) - set(TRANSFORMS))
    if unknown:
        return {}, f"unknown key '{unknown[0]}' (use one of {', '.join(TRANSFORMS)})"
    if len(value) != 1:
        return {}, f"one transform per column, not {len(value)} ({', '.join(value)})"
    ((how, column),) = value.items()
    if not isinstance(column, str):
        return {}, f"{how} needs a column name"
    if name not in _TARGETS[how]:
        return {}, f"{how} cannot fill {name} (it fills {', '.join(_TARGETS[how])})"
    return {name: Source(column, how)}, None


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
        if table not in ("columns", "defaults", "tokenize"):
            problems.append(Problem(src, None, None, f"unknown table [{table}]"))
    columns = doc.get("columns", {})
    defaults = doc.get("defaults", {})
    tokenize = doc.get("tokenize", {})
    sources: dict[str, Source] = {}
    for name, value in columns.items():
        if name not in BY_NAME and name not in PAIRS:
            problems.append(Problem(src, None, None, f"[columns] {name}: not a contract column"))
            continue
        found, reason = _column_sources(name, value)
        if reason is not None:
            problems.append(Problem(src, None, None, f"[columns] {name}: {reason}"))
        for ours in found:
            if ours in sources:
                problems.append(Problem(src, None, None, f"[columns] {name}: {ours} given twice"))
        sources.update(found)
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
    for name, value in tokenize.items():
        if name != "key":
            problems.append(Problem(src, None, None, f"[tokenize] {name}: unknown (use key)"))
        elif not isinstance(value, str) or not value:
            problems.append(Problem(src, None, None, "[tokenize] key: must be a non-empty string"))
    if problems:
        raise ValidationError(problems)
    return Mapping(columns=sources, defaults=dict(defaults), token_key=tokenize.get("key"))


def token_key(mapping: Mapping, environ: dict[str, str]) -> tuple[bytes, bool]:
    """The key tokens are made with, and whether it is the public default.

    The environment wins over the mapping file, so a committed mapping never needs the secret.
    """
    if environ.get(TOKEN_KEY_ENV):
        return environ[TOKEN_KEY_ENV].encode(), False
    if mapping.token_key:
        return mapping.token_key.encode(), False
    return DEFAULT_TOKEN_KEY, True


def tokenize(values: pd.Series, key: bytes) -> pd.Series:
    """Keyed hash of each value: 'tok_' + 24 letters (96 bits of HMAC-SHA256); missing stays so.

    Surrounding blanks, and spaces or dashes inside a number ('4111 1111-...'), are dropped
    first, so one card written two ways gets one token. Each distinct value is hashed once.
    """
    codes, uniques = pd.factorize(values)  # normalise and hash each distinct value once
    text = as_text(pd.Series(uniques)).str.strip()
    spaced = text.str.fullmatch(r"[\d -]+").fillna(False).to_numpy(dtype=bool)
    text = text.where(~spaced, text.str.replace(r"[ -]", "", regex=True))
    digests = [None if t is None or t != t else _token(key, str(t)) for t in text.astype(object)]
    tokens = np.array([*digests, None], dtype=object)  # code -1 (missing) picks the last
    return pd.Series(tokens[codes], index=values.index, dtype="str")


def _token(key: bytes, text: str) -> str:
    return "tok_" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:24].translate(
        _LETTERS
    )


def _unix_seconds(raw: pd.Series, source: str, column: str) -> pd.Series:
    """Seconds since 1970-01-01 UTC -> UTC timestamps; text or out-of-range values are named."""
    num = pd.to_numeric(raw, errors="coerce").astype("float64")
    arr = num.to_numpy()
    present = raw.notna().to_numpy()
    # pandas' nanosecond timestamps end in 2262; milliseconds read as seconds land far beyond.
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(arr) & (np.abs(arr) < 9.2e9)
    _raise_rows(
        source,
        column,
        raw,
        present & ~in_range,
        lambda v: f"{v!r} is not a time in seconds since 1970-01-01 (milliseconds?)",
    )
    seconds = np.where(in_range, arr, np.nan)
    stamps = pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ns, UTC]")
    return pd.Series(stamps, index=raw.index)


def _age(dob_raw: pd.Series, ts: pd.Series, source: str, column: str) -> pd.Series:
    """Age in years at each payment's own timestamp (point in time), from a date of birth."""
    codes, uniques = pd.factorize(dob_raw)  # a few thousand people, many payments each
    text = as_text(pd.Series(uniques))  # blank text is missing, not a bad date
    parsed = to_utc(text)
    present = (codes >= 0) & text.notna().to_numpy()[codes]
    dob = pd.Series(parsed.to_numpy()[codes], index=dob_raw.index).where(present)
    dob = dob.astype("datetime64[ns, UTC]")
    _raise_rows(
        source,
        column,
        dob_raw,
        present & dob.isna().to_numpy(),
        lambda v: f"{v!r} is not a date of birth (use YYYY-MM-DD)",
    )
    return ((ts - dob).dt.total_seconds() / (365.2425 * 86_400)).astype("float64")


def _raise_rows(source: str, column: str, raw: pd.Series, mask: np.ndarray, reason: object) -> None:
    """A ValidationError naming each bad row (1-based) and the file's column, if any."""
    rows = np.flatnonzero(mask)
    if not len(rows):
        return
    say = reason if callable(reason) else (lambda v: str(reason))
    problems = [
        Problem(source, int(i) + 1, column, say(_plain(raw.iloc[i]))) for i in rows[:MAX_ERRORS]
    ]
    raise ValidationError(problems, max(0, len(rows) - MAX_ERRORS))


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


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


def apply_mapping(
    frame: pd.DataFrame, mapping: Mapping, source: str, key: bytes | None = None
) -> pd.DataFrame:
    """The contract's columns from the file's: mapped, derived, defaulted; nothing else is kept.

    `key` is the token key (see `token_key`); it is needed only when the mapping tokenizes.
    """
    problems = [
        Problem(source, None, src.column, f"mapped to '{ours}' but not in the file")
        for ours, src in mapping.columns.items()
        if src.column not in frame.columns
    ]
    if problems:
        raise ValidationError(problems)
    if mapping.tokenizes() and key is None:
        raise ValueError("apply_mapping: the mapping tokenizes, so a token key is required")
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    for col in COLUMNS:  # file columns already named as the contract, unless mapped over
        if col.name in frame.columns and col.name not in mapping.columns:
            out[col.name] = frame[col.name]
    ordered = sorted(mapping.columns.items(), key=lambda kv: kv[1].how == "age_from")
    for ours, src in ordered:  # ages last: they need the payment's timestamp
        raw = frame[src.column]
        if src.how == "tokenize":
            assert key is not None
            out[ours] = tokenize(raw, key)
        elif src.how == "unix_seconds" or (
            src.how == "copy"
            and BY_NAME[ours].kind == "timestamp"
            and pd.api.types.is_integer_dtype(raw.dtype)
        ):
            out[ours] = _unix_seconds(raw, source, src.column)
        elif src.how == "age_from":
            if "timestamp" in out.columns:
                ts = to_utc(out["timestamp"])
            else:  # the contract's "required column is missing" follows
                ts = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
            out[ours] = _age(raw, ts, source, src.column)
        elif src.how == "category":
            out[ours] = as_text(raw).str.strip()
        else:
            out[ours] = raw
    d = mapping.defaults
    if "transaction_id" not in out.columns and d.get("transaction_id") == "row_number":
        out["transaction_id"] = [f"{Path(source).stem}-{i + 1}" for i in range(len(out))]
    for name in ("card_id", "customer_id"):
        other = d.get(name)
        if name not in out.columns and other:
            if other not in out.columns:
                raise ValidationError(
                    [Problem(source, None, other, f"default for {name}: no such column")]
                )
            out[name] = out[other]
    if "currency" not in out.columns and d.get("currency"):
        out["currency"] = d["currency"]
    if (
        "label_delay" in d
        and "label_time" not in out.columns
        and "is_fraud" in out.columns
        and "timestamp" in out.columns
    ):
        delay = parse_duration(d["label_delay"])
        ts = to_utc(out["timestamp"])
        out["label_time"] = (ts + delay).where(out["is_fraud"].notna())
    order = [c.name for c in COLUMNS if c.name in out.columns]
    return out[order]


def load(
    path: str | Path,
    mapping_path: str | Path | None = None,
    environ: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The one way a file enters riskgate: read, map, validate (raises ValidationError).

    Prints one warning to stderr when tokens are made with the public default key.
    """
    mapping = read_mapping(mapping_path) if mapping_path is not None else Mapping()
    text = [
        s.column
        for name, s in mapping.columns.items()
        if s.how in ("tokenize", "category") or (s.how == "copy" and name in TEXT_COLUMNS)
    ]
    text += [c for c in TEXT_COLUMNS if c not in mapping.columns]
    frame = read_table(path, text_columns=text)
    if mapping_path is None:
        return validate(frame, source=str(path))
    key = None
    if mapping.tokenizes():
        key, is_default = token_key(mapping, dict(os.environ) if environ is None else environ)
        if is_default:
            print(DEFAULT_KEY_WARNING, file=sys.stderr)
    return validate(apply_mapping(frame, mapping, str(path), key), source=str(path))


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
