"""A tiny file in the Sparkov layout (same 26 columns and types), so the mapping is always tested.

The card numbers are Luhn-valid, one starts with 0, as in the real file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from data.schema import luhn_valid

ROOT = Path(__file__).resolve().parents[2]
SPARKOV_MAPPING = ROOT / "data" / "mappings" / "sparkov.toml"
SPARKOV_FILE = ROOT / ".." / "shared" / "datasets" / "sparkov" / "transactions.parquet"
SPARKOV_COLUMNS = (
    "ssn cc_num first last gender street city state zip lat long city_pop job dob acct_num "
    "profile trans_num trans_date trans_time unix_time category amt is_fraud merchant merch_lat "
    "merch_long"
).split()


def with_check_digit(body: str) -> str:
    """`body` + the digit that makes it pass the Luhn check."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


CARDS = (
    with_check_digit("411111111111111"),  # 16 digits
    with_check_digit("060111111111111"),  # leading zero: must stay text
    with_check_digit("378282246310005"),  # 16 digits, another issuer
)
ACCOUNTS = ("457717515381", "866523417782", "012345678901")
DOBS = ("1967-03-06", "1999-12-31", "2000-02-29")


def sparkov_frame() -> pd.DataFrame:
    """Six payments by three people over two days, one fraud, in the Sparkov layout."""
    who = [0, 1, 2, 0, 1, 0]
    stamps = pd.to_datetime(
        [
            "2023-01-01 00:00:28",
            "2023-01-01 00:00:36",
            "2023-01-01 10:15:00",
            "2023-03-06 12:00:00",
            "2023-06-30 23:59:56",
            "2024-03-06 00:00:00",
        ],
        utc=True,
    )
    frame = pd.DataFrame(
        {
            "ssn": [f"08{i}-03-419{i}" for i in who],
            "cc_num": [CARDS[i] for i in who],
            "first": [("Jason", "Joshua", "Ann")[i] for i in who],
            "last": [("Bauer", "Hutchinson", "Lee")[i] for i in who],
            "gender": [("M", "M", "F")[i] for i in who],
            "street": [f"{17980 + i} Jennifer Highway" for i in who],
            "city": [("Midlothian", "Bovey", "Ames")[i] for i in who],
            "state": [("TX", "MN", "IA")[i] for i in who],
            "zip": [("76065", "55709", "05001")[i] for i in who],
            "lat": [(32.4757, 47.2868, 42.03)[i] for i in who],
            "long": [(-96.9936, -93.3723, -93.62)[i] for i in who],
            "city_pop": [(28986, 4075, 66000)[i] for i in who],
            "job": ["Financial adviser"] * len(who),
            "dob": [DOBS[i] for i in who],
            "acct_num": [ACCOUNTS[i] for i in who],
            "profile": ["adults_50up_male_urban.json"] * len(who),
            "trans_num": [f"9d7b4a9ac80a0b50aa81c54ac81b6c{n:02x}" for n in range(len(who))],
            "trans_date": stamps.strftime("%Y-%m-%d"),
            "trans_time": stamps.strftime("%H:%M:%S"),
            "unix_time": (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1),
            "category": [
                "food_dining",
                "kids_pets",
                "grocery_pos",
                "shopping_net",
                "travel",
                "home",
            ],
            "amt": [107.86, 92.51, 4.2, 981.0, 12.5, 60.0],
            "is_fraud": [0, 0, 0, 1, 0, 0],
            "merchant": [f"fraud_Merchant {i}" for i in (1, 2, 1, 3, 2, 1)],
            "merch_lat": [32.6, 47.5, 32.7, 33.0, 47.0, 32.4],
            "merch_long": [-97.0, -93.0, -97.1, -96.5, -93.5, -97.2],
        }
    )
    assert frame.columns.tolist() == SPARKOV_COLUMNS
    return frame


def write_sparkov(path: Path, frame: pd.DataFrame | None = None) -> Path:
    frame = sparkov_frame() if frame is None else frame
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


_RUN = re.compile(r"\d{13,}")


def luhn_runs(frame: pd.DataFrame) -> list[tuple[str, int, str]]:
    """(column, row, text) of every text cell holding a 13-19 digit Luhn-valid run.

    A scanner's view of the text columns; numbers (amounts, ages, features) and timestamps are
    left out, as the decimals of a number are long digit runs that are no card number.
    """
    found = []
    for column in frame.columns:
        if not pd.api.types.is_string_dtype(frame[column].dtype):
            continue
        text = frame[column].astype("str")
        candidates = text.str.contains(_RUN.pattern, regex=True).fillna(False).to_numpy(dtype=bool)
        for row in candidates.nonzero()[0]:
            value = text.iloc[row]
            for match in _RUN.finditer(value):
                run = match.group()
                if any(
                    luhn_valid(run[i : i + n])
                    for n in range(13, min(19, len(run)) + 1)
                    for i in range(len(run) - n + 1)
                ):
                    found.append((column, int(row) + 1, value))
                    break
    return found
