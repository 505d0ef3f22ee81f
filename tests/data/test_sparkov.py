"""data/mappings/sparkov.toml: on a small sample in the Sparkov layout, and on the real shared file.

The real file (863,506 rows, see ../shared/datasets/sparkov/README.md) is a regression benchmark;
it is never copied into the repository, so those tests skip when it is absent.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from data.load import TOKEN_KEY_ENV, load
from features.registry import available, feature_names
from serving.cli import main
from tests.data.sparkov_sample import (
    SPARKOV_FILE,
    SPARKOV_MAPPING,
    luhn_runs,
    sparkov_frame,
    write_sparkov,
)

EXPECTED_COLUMNS = [
    "transaction_id",
    "timestamp",
    "card_id",
    "customer_id",
    "merchant_id",
    "amount",
    "currency",
    "mcc",
    "customer_lat",
    "customer_lon",
    "merchant_lat",
    "merchant_lon",
    "customer_age",
    "city_population",
    "is_fraud",
    "label_time",
]
DROPPED = ("ssn", "cc_num", "first", "last", "street", "acct_num", "job", "dob", "zip", "profile")
real_file = pytest.mark.skipif(
    not SPARKOV_FILE.exists(),
    reason=f"the shared Sparkov file is absent ({SPARKOV_FILE.resolve()}); see its README.md",
)


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def raw_values_left(out: pd.DataFrame, raw: pd.DataFrame) -> list[tuple[str, str]]:
    """(column of `out`, raw column) where a dropped personal value still shows in a cell.

    Card, account and social security numbers are looked for inside any digit run (written
    with or without separators), street addresses as whole cells; text columns only, as the
    decimals of numbers (ages, coordinates) hold every short digit string by chance.
    """
    numbers = {
        c: set(pd.Series(raw[c].unique()).astype("str").str.replace(r"\D", "", regex=True))
        for c in ("cc_num", "acct_num", "ssn")
    }
    streets = set(raw["street"].unique())
    left = []
    for column in out.columns:
        if not pd.api.types.is_string_dtype(out[column].dtype):
            continue
        text = pd.Series(out[column].unique()).astype("str")
        if text.isin(streets).any():
            left.append((column, "street"))
        runs = set(text.str.replace(r"[ -]", "", regex=True).str.findall(r"\d{9,}").explode())
        runs.discard(float("nan"))
        for name, values in numbers.items():
            if any(v in r for r in runs if isinstance(r, str) for v in values):
                left.append((column, name))
    return left


@pytest.fixture(scope="module")
def sample_loaded(tmp_path_factory) -> pd.DataFrame:
    path = write_sparkov(tmp_path_factory.mktemp("sparkov") / "sample.parquet")
    return load(path, SPARKOV_MAPPING, environ={TOKEN_KEY_ENV: "test-key"})


def test_sparkov_sample_loads_to_contract_columns_only(sample_loaded):
    assert sample_loaded.columns.tolist() == EXPECTED_COLUMNS
    raw = sparkov_frame()
    assert sample_loaded["transaction_id"].tolist() == raw["trans_num"].tolist()
    assert sample_loaded["amount"].tolist() == raw["amt"].tolist()
    assert (sample_loaded["currency"] == "USD").all()
    assert sample_loaded["mcc"].tolist() == raw["category"].tolist()
    assert sample_loaded["merchant_lon"].tolist() == raw["merch_long"].tolist()
    assert sample_loaded["city_population"].tolist() == raw["city_pop"].astype(float).tolist()
    assert sample_loaded["timestamp"].iloc[0] == pd.Timestamp("2023-01-01 00:00:28", tz="UTC")
    delay = sample_loaded["label_time"] - sample_loaded["timestamp"]
    assert (delay == pd.Timedelta(days=7)).all()


def test_sparkov_sample_keeps_no_card_number_or_personal_value(sample_loaded):
    raw = sparkov_frame()  # the checks do find what they look for
    assert {c for c, _, _ in luhn_runs(raw)} == {"cc_num"}
    assert ("cc_num", "cc_num") in raw_values_left(raw, raw)
    assert raw_values_left(sample_loaded, sparkov_frame()) == []
    assert luhn_runs(sample_loaded) == []
    assert sample_loaded["card_id"].nunique() == sample_loaded["customer_id"].nunique() == 3


def test_sparkov_sample_runs_the_location_and_velocity_groups(sample_loaded):
    kept = {f.group for f in available(sample_loaded.columns).features}
    assert {"amount", "time", "location", "velocity", "labels"} <= kept


def test_validate_and_features_cli_on_the_sparkov_sample(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_KEY_ENV, "cli-key")
    data = write_sparkov(tmp_path / "sample.parquet")
    code, out, err = run(capsys, "validate", "--data", data, "--mapping", SPARKOV_MAPPING)
    assert code == 0, err
    assert "rows           6" in out
    assert "customer_age, city_population" in out
    assert "features will run" in out
    target = tmp_path / "features.parquet"
    code, out, err = run(
        capsys, "features", "--data", data, "--mapping", SPARKOV_MAPPING, "--out", target
    )
    assert code == 0, err
    table = pd.read_parquet(target)
    assert table["transaction_id"].tolist() == sparkov_frame()["trans_num"].tolist()
    assert luhn_runs(table) == []


def test_sparkov_sample_as_csv_gives_the_same_frame(tmp_path, sample_loaded):
    csv = write_sparkov(tmp_path / "sample.csv")
    from_csv = load(csv, SPARKOV_MAPPING, environ={TOKEN_KEY_ENV: "test-key"})
    pd.testing.assert_frame_equal(from_csv, sample_loaded)


# --- the real shared file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> tuple[pd.DataFrame, pd.DataFrame, float]:
    start = time.perf_counter()
    loaded = load(SPARKOV_FILE, SPARKOV_MAPPING, environ={TOKEN_KEY_ENV: "benchmark-key"})
    seconds = time.perf_counter() - start
    return loaded, pd.read_parquet(SPARKOV_FILE), seconds


@real_file
def test_real_sparkov_file_loads_with_its_documented_counts(real):
    loaded, _, seconds = real
    assert loaded.columns.tolist() == EXPECTED_COLUMNS
    assert len(loaded) == 863_506
    assert int(loaded["is_fraud"].sum()) == 18_914
    assert loaded["card_id"].nunique() == 1_996
    assert loaded["merchant_id"].nunique() == 693
    assert loaded["mcc"].nunique() == 14
    assert loaded["timestamp"].min() == pd.Timestamp("2023-01-01 00:00:28", tz="UTC")
    assert loaded["timestamp"].max() == pd.Timestamp("2023-06-30 23:59:56", tz="UTC")
    # README: ages on 2023-01-01 range from 11 to 92
    assert 10 < loaded["customer_age"].min() < loaded["customer_age"].max() < 93
    assert seconds < 60, f"loading took {seconds:.1f}s"


@real_file
def test_real_sparkov_file_keeps_no_card_number(real):
    loaded, raw, _ = real
    assert loaded["card_id"].str.fullmatch(r"tok_[a-p]{24}").all()
    assert raw_values_left(loaded.drop(columns="transaction_id"), raw) == []
    # trans_num is the file's own 32-hex id: by chance some hold digit runs, so it is checked for
    # the raw card numbers (above, via every other cell, and here) rather than by the Luhn scan.
    assert not loaded["transaction_id"].isin(raw["cc_num"]).any()
    runs = loaded["transaction_id"].str.findall(r"\d{12,}").explode().dropna().unique()
    pieces = {r[i : i + n] for r in runs for n in range(12, 20) for i in range(len(r) - n + 1)}
    assert not pieces & set(raw["cc_num"])
    assert luhn_runs(loaded.drop(columns="transaction_id")) == []


@real_file
def test_real_sparkov_file_validates_through_the_cli(capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_KEY_ENV, "benchmark-key")
    code, out, err = run(capsys, "validate", "--data", SPARKOV_FILE, "--mapping", SPARKOV_MAPPING)
    assert code == 0, err
    assert "rows           863,506" in out
    assert "features will run" in out


def test_feature_names_exist_for_the_sparkov_columns(sample_loaded):
    assert feature_names(available(sample_loaded.columns).features)
