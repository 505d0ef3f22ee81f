"""The transaction contract: every way into riskgate (files, the simulator, the HTTP API) meets it.

`validate()` coerces a raw frame to the contract's dtypes and reports every problem with the
source, row and column, so a team can fix its export instead of guessing. It never writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from data import pan

Kind = Literal["str", "float", "timestamp", "label", "category"]


@dataclass(frozen=True)
class Column:
    """One column of the contract."""

    name: str
    kind: Kind
    required: bool
    doc: str
    allowed: tuple[str, ...] = ()
    low: float | None = None  # inclusive bounds for a float column, checked on finite values
    high: float | None = None


CHANNELS = ("card_present", "online")
AUTH_RESULTS = ("passed", "failed", "not_attempted")

COLUMNS: tuple[Column, ...] = (
    Column("transaction_id", "str", True, "Unique payment id from the backend."),
    Column("timestamp", "timestamp", True, "When the payment was authorised (UTC)."),
    Column("card_id", "str", True, "Card token or keyed hash; never a card number."),
    Column("customer_id", "str", True, "Customer (account holder) id."),
    Column("merchant_id", "str", True, "Merchant id."),
    Column("amount", "float", True, "Amount in the currency's major unit; finite, >= 0."),
    Column("currency", "str", True, "ISO 4217 code, e.g. EUR."),
    Column("billing_country", "str", False, "Card billing country (ISO 3166 alpha-2)."),
    Column("ip_country", "str", False, "Country of the payer's IP address."),
    Column("shipping_country", "str", False, "Shipping country, for goods shipped."),
    Column("merchant_country", "str", False, "Merchant's country."),
    Column(
        "mcc",
        "str",
        False,
        "Merchant category: an ISO 18245 code (4 digits, e.g. 5411) or a category name "
        "(e.g. grocery_pos).",
    ),
    Column("channel", "category", False, "card_present or online.", CHANNELS),
    Column("customer_lat", "float", False, "Customer home latitude."),
    Column("customer_lon", "float", False, "Customer home longitude."),
    Column("merchant_lat", "float", False, "Merchant latitude."),
    Column("merchant_lon", "float", False, "Merchant longitude."),
    Column("device_id", "str", False, "Device fingerprint (hashed)."),
    Column("ip_hash", "str", False, "Keyed hash of the payer's IP address."),
    Column("email_domain", "str", False, "Domain of the customer's e-mail address."),
    Column("account_created_at", "timestamp", False, "When the customer's account was opened."),
    Column("credential_changed_at", "timestamp", False, "Last password / phone / e-mail change."),
    Column("auth_result", "category", False, "Two-factor / 3-D Secure result.", AUTH_RESULTS),
    Column(
        "customer_age",
        "float",
        False,
        "Customer's age in years at the payment's timestamp (0..130).",
        low=0.0,
        high=130.0,
    ),
    Column(
        "city_population",
        "float",
        False,
        "Population of the customer's home city (>= 0).",
        low=0.0,
    ),
    Column("is_fraud", "label", False, "1 fraud, 0 genuine; empty when unknown."),
    Column("label_time", "timestamp", False, "When the label became known (>= timestamp)."),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
REQUIRED: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)
OPTIONAL: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.required)
LABEL_COLUMNS: tuple[str, ...] = ("is_fraud", "label_time")

# Active ISO 4217 codes (2024). An unknown code is refused rather than guessed.
CURRENCIES: frozenset[str] = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)

MAX_ERRORS = 20


def card_number_refused(column: str) -> str:
    """The refusal names the mapping option that fixes it, so a team need not search the docs."""
    return (
        "looks like a raw card number (refused: send a token or keyed hash, or tokenize it at "
        f'load with {column} = {{tokenize = "<column>"}} in the mapping\'s [columns])'
    )


@dataclass(frozen=True)
class Problem:
    """One precise complaint about the input."""

    source: str
    row: int | None  # 1-based data row (the header is not counted); None for whole-file problems
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = [self.source]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.reason}"


class ValidationError(ValueError):
    """Raised when input breaks the contract; carries every problem found (up to a cap)."""

    def __init__(self, problems: list[Problem], hidden: int = 0) -> None:
        self.problems = problems
        lines = [str(p) for p in problems[:MAX_ERRORS]]
        more = max(0, len(problems) - MAX_ERRORS) + hidden
        if more:
            lines.append(f"... and {more} more problems")
        super().__init__("\n".join(lines))


def luhn_valid(digits: str) -> bool:
    """The card-number checksum: a 13-19 digit string passing it is treated as a real PAN."""
    return pan.luhn_valid(digits)


def looks_like_card_number(value: object) -> bool:
    """True for a string holding a card number anywhere, in any of its written forms (the one
    detector, data/pan.py: 13-19 digits, any separators, Luhn-valid, also inside text)."""
    return pan.contains(value)


def _rows(mask: np.ndarray | pd.Series) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask, dtype=bool))


def to_utc(series: pd.Series) -> pd.Series:
    """Parse timestamps as UTC; naive values are taken as UTC, offsets are converted."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    return pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601").astype(
        "datetime64[ns, UTC]"
    )


def as_text(series: pd.Series) -> pd.Series:
    """Text as pandas strings; ids read from CSV as numbers keep their text (123 -> '123')."""
    if pd.api.types.is_float_dtype(series.dtype):
        arr = series.to_numpy("float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(arr) & (np.floor(arr) == arr) & (np.abs(arr) < 2.0**63)
        text = series.astype("str")
        text[whole] = arr[whole].astype(np.int64).astype(str)
        series = text
    out = series.astype("str")
    return out.where(out.str.strip() != "", None).astype("str")


def _show(value: object) -> object:
    """numpy scalars print as plain Python values in messages."""
    return value.item() if isinstance(value, np.generic) else value


def _present(raw: pd.Series) -> np.ndarray:
    """Non-missing and, for text, non-blank."""
    mask = raw.notna().to_numpy().copy()
    if not (
        pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_datetime64_any_dtype(raw.dtype)
    ):
        blank = raw.astype("str").str.strip() == ""
        mask &= ~blank.fillna(False).to_numpy(dtype=bool)
    return mask


# A file with one identifier for the payer (a card or an account, not both) is common: say how
# a mapping makes one stand for the other instead of leaving the user to find it.
_MISSING_HINT = {
    "customer_id": ' (a mapping can let the card stand for it: [defaults] customer_id = "card_id")',
    "card_id": ' (a mapping can let the customer stand for it: [defaults] card_id = "customer_id")',
}


def validate(frame: pd.DataFrame, source: str = "<input>") -> pd.DataFrame:
    """Check `frame` against the contract and return a typed copy; raise ValidationError if not.

    Extra columns are kept untouched (the simulator's `scenario`, a team's own fields).
    """
    problems: list[Problem] = []
    for name in REQUIRED:
        if name not in frame.columns:
            reason = "required column is missing" + _MISSING_HINT.get(name, "")
            problems.append(Problem(source, None, name, reason))
    if "label_time" in frame.columns and "is_fraud" not in frame.columns:
        problems.append(Problem(source, None, "is_fraud", "label_time given without is_fraud"))
    if problems:
        raise ValidationError(problems)

    frame = frame.reset_index(drop=True)
    out = frame.copy()

    hidden = 0

    def bad(mask: np.ndarray, column: str, reason: str | Callable[[object], str]) -> None:
        nonlocal hidden
        rows = _rows(mask)
        hidden += max(0, len(rows) - MAX_ERRORS)
        for i in rows[:MAX_ERRORS]:
            text = reason(_show(frame[column].iloc[i])) if callable(reason) else reason
            problems.append(Problem(source, int(i) + 1, column, text))

    for col in COLUMNS:
        if col.name not in out.columns:
            continue
        raw = frame[col.name]
        present = _present(raw)
        if col.required:
            bad(~present, col.name, "value is empty")
        if col.kind in ("str", "category"):
            values = as_text(raw)
            if col.kind == "category":
                ok = (values.isna() | values.isin(col.allowed)).to_numpy()
                allowed = ", ".join(col.allowed)

                def not_allowed(v: object, a: str = allowed) -> str:
                    return f"{v!r} is not one of {a}"

                bad(~ok, col.name, not_allowed)
            out[col.name] = values
        elif col.kind == "float":
            num = pd.to_numeric(raw, errors="coerce").astype("float64")
            arr = num.to_numpy()
            bad(
                present & np.isnan(arr) & ~_is_nan_text(raw),
                col.name,
                lambda v: f"{v!r} is not a number",
            )
            bad(
                present & (np.isinf(arr) | (np.isnan(arr) & _is_nan_text(raw))),
                col.name,
                lambda v: f"non-finite value {v!r}",
            )
            if col.low is not None or col.high is not None:
                low = -np.inf if col.low is None else col.low
                high = np.inf if col.high is None else col.high
                span = f"{col.low:g}..{col.high:g}" if col.high is not None else f">= {low:g}"

                def outside(v: object, s: str = span) -> str:
                    return f"{v!r} is out of range (expected {s})"

                with np.errstate(invalid="ignore"):
                    off = np.isfinite(arr) & ((arr < low) | (arr > high))
                bad(off, col.name, outside)
            out[col.name] = num
        elif col.kind == "timestamp":
            ts = to_utc(raw)
            bad(present & ts.isna().to_numpy(), col.name, lambda v: f"{v!r} is not a timestamp")
            out[col.name] = ts
        elif col.kind == "label":
            num = pd.to_numeric(raw, errors="coerce")
            bad(present & ~num.isin([0, 1]).to_numpy(), col.name, lambda v: f"{v!r} is not 0 or 1")
            out[col.name] = num.where(num.isin([0, 1])).astype("Int8")

    amount = out["amount"].to_numpy()
    bad(np.isfinite(amount) & (amount < 0), "amount", lambda v: f"negative amount {v}")

    cur = out["currency"].str.upper()
    bad(
        (cur.notna() & ~cur.isin(CURRENCIES)).to_numpy(),
        "currency",
        lambda v: f"unknown currency {v!r} (ISO 4217 code expected)",
    )
    out["currency"] = cur

    ids = out["transaction_id"]
    dup = (ids.duplicated(keep="first") & ids.notna()).to_numpy()
    if dup.any():
        first = ids.drop_duplicates(keep="first")
        first_row = dict(zip(first.to_numpy(), first.index + 1, strict=True))
        rows = _rows(dup)
        hidden += max(0, len(rows) - MAX_ERRORS)
        for i in rows[:MAX_ERRORS]:
            v = ids.iloc[i]
            text = f"duplicate transaction_id {v!r} (first seen at row {first_row[v]})"
            problems.append(Problem(source, int(i) + 1, "transaction_id", text))

    if "label_time" in out.columns:
        lt, ts = out["label_time"], out["timestamp"]
        bad(
            (lt.notna() & ts.notna() & (lt < ts)).to_numpy(),
            "label_time",
            "label_time is before the payment's timestamp",
        )
        bad(
            (lt.notna() & out["is_fraud"].isna()).to_numpy(),
            "label_time",
            "label_time given but is_fraud is empty",
        )

    for col in COLUMNS:
        if col.kind != "str" or col.name not in out.columns:
            continue
        values = out[col.name]
        # 13 digits or more joined by separators only (vectorised) before the detector looks
        candidate = values.str.contains(pan.CANDIDATE).fillna(False).to_numpy(dtype=bool)
        if candidate.any():
            hit = candidate.copy()
            hit[candidate] = [looks_like_card_number(v) for v in values[candidate]]
            bad(hit, col.name, card_number_refused(col.name))

    if problems:
        problems.sort(key=lambda p: (p.row or 0, p.column or ""))
        raise ValidationError(problems, hidden)
    return out


def _is_nan_text(raw: pd.Series) -> np.ndarray:
    """Values literally written as NaN/inf are non-finite numbers, not unparsable text."""
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return np.zeros(len(raw), dtype=bool)
    text = raw.astype("str").str.strip().str.lower()
    return (
        text.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"])
        .fillna(False)
        .to_numpy(dtype=bool)
    )


def present_optional(frame: pd.DataFrame) -> list[str]:
    """Optional contract columns present with at least one value."""
    return [c for c in OPTIONAL if c in frame.columns and frame[c].notna().any()]
