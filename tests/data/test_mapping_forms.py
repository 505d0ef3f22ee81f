"""Mapping values that derive a column at load: tokenize, epoch seconds, age, category, pairs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data.load import (
    DEFAULT_KEY_WARNING,
    TOKEN_KEY_ENV,
    Source,
    load,
    read_mapping,
    token_key,
    tokenize,
)
from data.schema import COLUMNS, Problem, ValidationError
from tests.data.sparkov_sample import CARDS, luhn_runs, sparkov_frame, write_sparkov

CONTRACT = {c.name for c in COLUMNS}
BASE = """\
[columns]
transaction_id = "trans_num"
timestamp = {unix_seconds = "unix_time"}
customer_id = "merchant"
merchant_id = "merchant"
amount = "amt"
"""
CARD = 'card_id = {tokenize = "cc_num"}\n'
USD = '[defaults]\ncurrency = "USD"\n'


def mapping(tmp_path: Path, text: str, name: str = "layout.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(call, *args, **kwargs) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        call(*args, **kwargs)
    return info.value.problems


@pytest.fixture
def sample(tmp_path) -> Path:
    return write_sparkov(tmp_path / "sample.parquet")


def load_with(sample: Path, toml: Path, key: str | None = "k1") -> pd.DataFrame:
    return load(sample, toml, environ={} if key is None else {TOKEN_KEY_ENV: key})


# --- tokenize ------------------------------------------------------------------------------------


def test_tokenized_card_id_is_a_token_and_the_raw_number_is_gone(tmp_path, sample):
    out = load_with(sample, mapping(tmp_path, BASE + CARD + USD))
    assert out["card_id"].str.fullmatch(r"tok_[a-p]{24}").all()
    assert out["card_id"].nunique() == 3
    assert set(out.columns) <= CONTRACT
    cells = " ".join(out.astype("str").to_numpy().ravel())
    for card in CARDS:
        assert card not in cells
    assert luhn_runs(out) == []


def test_tokens_are_stable_for_one_key_and_differ_for_another(tmp_path, sample):
    toml = mapping(tmp_path, BASE + CARD + USD)
    first, again = load_with(sample, toml, "k1"), load_with(sample, toml, "k1")
    other = load_with(sample, toml, "k2")
    assert first["card_id"].tolist() == again["card_id"].tolist()
    assert not set(first["card_id"]) & set(other["card_id"])
    # one card, one token, under either key: the grouping is the same
    assert first["card_id"].factorize()[0].tolist() == other["card_id"].factorize()[0].tolist()


def test_env_key_wins_over_the_mapping_key_and_the_mapping_key_over_the_default(tmp_path):
    toml = read_mapping(mapping(tmp_path, "[columns]\n" + CARD + '[tokenize]\nkey = "from-file"\n'))
    assert token_key(toml, {TOKEN_KEY_ENV: "from-env"}) == (b"from-env", False)
    assert token_key(toml, {}) == (b"from-file", False)
    assert token_key(toml, {TOKEN_KEY_ENV: ""}) == (b"from-file", False)
    default, is_default = token_key(
        read_mapping(mapping(tmp_path, "[columns]\n" + CARD, "bare.toml")), {}
    )
    assert is_default
    assert default not in (b"from-env", b"from-file")


def test_env_key_and_mapping_key_give_the_tokens_of_that_key(tmp_path, sample):
    with_key = mapping(tmp_path, BASE + CARD + USD + '[tokenize]\nkey = "file-key"\n', "k.toml")
    bare = mapping(tmp_path, BASE + CARD + USD)
    from_file = load(sample, with_key, environ={})
    assert from_file["card_id"].tolist() == load_with(sample, bare, "file-key")["card_id"].tolist()
    from_env = load(sample, with_key, environ={TOKEN_KEY_ENV: "env-key"})
    assert from_env["card_id"].tolist() == load_with(sample, bare, "env-key")["card_id"].tolist()


def test_default_key_prints_one_warning_and_a_set_key_none(tmp_path, sample, capsys):
    toml = mapping(tmp_path, BASE + CARD + USD)
    load_with(sample, toml, key=None)
    err = capsys.readouterr().err
    assert err.strip() == DEFAULT_KEY_WARNING
    assert "not secret" in err
    assert TOKEN_KEY_ENV in err
    load_with(sample, toml, key="set")
    assert capsys.readouterr().err == ""


def test_no_warning_when_nothing_is_tokenized(tmp_path, sample, capsys):
    load_with(sample, mapping(tmp_path, BASE + 'card_id = "acct_num"\n' + USD), key=None)
    assert capsys.readouterr().err == ""


def test_one_card_written_with_spaces_dashes_or_as_a_number_gets_one_token():
    pan = CARDS[0]
    spaced = " ".join(pan[i : i + 4] for i in range(0, 16, 4))
    dashed = spaced.replace(" ", "-")
    tokens = tokenize(pd.Series([pan, f" {spaced} ", dashed, int(pan)], dtype=object), b"k")
    assert tokens.nunique() == 1


def test_missing_values_stay_missing_and_the_contract_then_names_the_row(tmp_path):
    frame = sparkov_frame()
    frame.loc[2, "cc_num"] = None
    data = write_sparkov(tmp_path / "sample.parquet", frame)
    assert tokenize(frame["cc_num"], b"k").isna().tolist() == [False, False, True] + [False] * 3
    problems = problems_of(load_with, data, mapping(tmp_path, BASE + CARD + USD))
    assert [(p.row, p.column, p.reason) for p in problems] == [(3, "card_id", "value is empty")]


def test_csv_card_numbers_with_a_leading_zero_get_the_parquet_token(tmp_path):
    toml = mapping(tmp_path, BASE + CARD + USD)
    pq = load_with(write_sparkov(tmp_path / "s.parquet"), toml)
    csv = load_with(write_sparkov(tmp_path / "s.csv"), toml)
    assert csv["card_id"].tolist() == pq["card_id"].tolist()


def test_an_untokenized_card_number_is_refused_naming_the_mapping_option(tmp_path, sample):
    problems = problems_of(
        load_with, sample, mapping(tmp_path, BASE + 'card_id = "cc_num"\n' + USD)
    )
    assert {(p.row, p.column) for p in problems} == {(r, "card_id") for r in range(1, 7)}
    reason = problems[0].reason
    assert "looks like a raw card number" in reason
    assert 'card_id = {tokenize = "<column>"}' in reason
    assert "[columns]" in reason
    assert CARDS[0] not in str(ValidationError(problems))


def test_the_token_key_never_reaches_the_output(tmp_path, sample):
    secret = "s3cr3t-token-key"
    out = load_with(sample, mapping(tmp_path, BASE + CARD + USD), key=secret)
    assert secret not in " ".join(out.astype("str").to_numpy().ravel())


# --- timestamps from epoch seconds ---------------------------------------------------------------


def test_unix_seconds_and_a_plain_integer_column_give_utc_timestamps(tmp_path, sample):
    expected = pd.to_datetime(sparkov_frame()["unix_time"], unit="s", utc=True).tolist()
    explicit = load_with(sample, mapping(tmp_path, BASE + CARD + USD))
    plain = BASE.replace('{unix_seconds = "unix_time"}', '"unix_time"')
    implicit = load_with(sample, mapping(tmp_path, plain + CARD + USD, "plain.toml"))
    assert explicit["timestamp"].tolist() == expected
    assert implicit["timestamp"].tolist() == expected
    assert explicit["timestamp"].iloc[0] == pd.Timestamp("2023-01-01 00:00:28", tz="UTC")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("soon", "'soon' is not a time in seconds", id="text"),
        pytest.param(1672531228000, "1672531228000 is not a time in seconds", id="milliseconds"),
    ],
)
def test_bad_epoch_seconds_name_the_file_row_and_column(tmp_path, value, fragment):
    frame = sparkov_frame().astype({"unix_time": object})
    frame.loc[3, "unix_time"] = value
    data = tmp_path / "sample.csv"
    frame.to_csv(data, index=False)
    problems = problems_of(load_with, data, mapping(tmp_path, BASE + CARD + USD))
    assert [(p.source, p.row, p.column) for p in problems] == [(str(data), 4, "unix_time")]
    assert fragment in problems[0].reason


# --- age from a date of birth --------------------------------------------------------------------

AGE = 'customer_age = {age_from = "dob"}\n'


def test_age_is_taken_at_each_payments_own_timestamp(tmp_path, sample):
    out = load_with(sample, mapping(tmp_path, BASE + CARD + AGE + USD))
    age = out["customer_age"]
    assert age.dtype == "float64"
    # person 0, born 1967-03-06: 55.8 on 2023-01-01, 56 on 2023-03-06, 57 on 2024-03-06
    assert age.iloc[0] == pytest.approx(55.82, abs=0.01)
    assert age.iloc[3] == pytest.approx(56.0, abs=0.01)
    assert age.iloc[5] == pytest.approx(57.0, abs=0.01)
    elapsed = (out["timestamp"].iloc[5] - out["timestamp"].iloc[0]).total_seconds() / 86_400
    elapsed /= 365.2425
    assert age.iloc[5] - age.iloc[0] == pytest.approx(elapsed, abs=1e-3)
    # born 2000-02-29, seen on 2023-01-01: not yet 23
    assert 22.8 < age.iloc[2] < 22.9


def test_unparsable_date_of_birth_names_the_file_row_and_column_and_writes_nothing(tmp_path):
    frame = sparkov_frame()
    frame.loc[4, "dob"] = "31/12/1999"
    data = write_sparkov(tmp_path / "sample.parquet", frame)
    toml = mapping(tmp_path, BASE + CARD + AGE + USD)
    before = sorted(tmp_path.iterdir())
    problems = problems_of(load_with, data, toml)
    assert [(p.source, p.row, p.column) for p in problems] == [(str(data), 5, "dob")]
    assert problems[0].reason == "'31/12/1999' is not a date of birth (use YYYY-MM-DD)"
    assert sorted(tmp_path.iterdir()) == before


def test_a_missing_or_blank_date_of_birth_leaves_the_age_empty(tmp_path):
    frame = sparkov_frame()
    frame.loc[1, "dob"] = None
    frame.loc[2, "dob"] = "  "
    data = write_sparkov(tmp_path / "sample.parquet", frame)
    out = load_with(data, mapping(tmp_path, BASE + CARD + AGE + USD))
    assert out["customer_age"].isna().tolist() == [False, True, True, False, False, False]


def test_a_birth_after_the_payment_is_an_age_out_of_range(tmp_path):
    frame = sparkov_frame()
    frame.loc[1, "dob"] = "2024-01-01"
    data = write_sparkov(tmp_path / "sample.parquet", frame)
    problems = problems_of(load_with, data, mapping(tmp_path, BASE + CARD + AGE + USD))
    assert [(p.row, p.column) for p in problems] == [(2, "customer_age")]
    assert "out of range (expected 0..130)" in problems[0].reason


# --- category, coordinates, plain columns --------------------------------------------------------


def test_a_category_name_is_accepted_as_the_merchant_category(tmp_path, sample):
    out = load_with(
        sample, mapping(tmp_path, BASE + CARD + 'mcc = {category = "category"}\n' + USD)
    )
    assert out["mcc"].tolist() == sparkov_frame()["category"].tolist()


def test_a_coordinate_pair_fills_both_contract_columns(tmp_path, sample):
    pairs = (
        'customer_location = {lat = "lat", lon = "long"}\n'
        'merchant_location = {lat = "merch_lat", lon = "merch_long"}\n'
    )
    out = load_with(sample, mapping(tmp_path, BASE + CARD + pairs + USD))
    raw = sparkov_frame()
    assert out["customer_lat"].tolist() == raw["lat"].tolist()
    assert out["customer_lon"].tolist() == raw["long"].tolist()
    assert out["merchant_lat"].tolist() == raw["merch_lat"].tolist()
    assert out["merchant_lon"].tolist() == raw["merch_long"].tolist()
    assert read_mapping(tmp_path / "layout.toml").columns["customer_lon"] == Source("long")


def test_only_contract_columns_survive_a_mapping(tmp_path, sample):
    out = load_with(sample, mapping(tmp_path, BASE + CARD + 'city_population = "city_pop"\n' + USD))
    assert out.columns.tolist() == [
        "transaction_id",
        "timestamp",
        "card_id",
        "customer_id",
        "merchant_id",
        "amount",
        "currency",
        "city_population",
        "is_fraud",  # the file's own column of that name is taken as it is
    ]
    assert out["city_population"].tolist() == [28986.0, 4075.0, 66000.0, 28986.0, 4075.0, 28986.0]


# --- inline-table errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        pytest.param(
            'card_id = {tokenise = "cc_num"}',
            "[columns] card_id: unknown key 'tokenise' (use one of tokenize, unix_seconds, "
            "age_from, category)",
            id="unknown-key",
        ),
        pytest.param(
            'card_id = {tokenize = "cc_num", category = "x"}',
            "[columns] card_id: one transform per column",
            id="two-transforms",
        ),
        pytest.param("card_id = {}", "[columns] card_id: one transform per column", id="empty"),
        pytest.param(
            "card_id = {tokenize = 3}", "[columns] card_id: tokenize needs a column name", id="int"
        ),
        pytest.param(
            'amount = {age_from = "dob"}',
            "[columns] amount: age_from cannot fill amount (it fills customer_age)",
            id="age-into-amount",
        ),
        pytest.param(
            'amount = {tokenize = "amt"}', "[columns] amount: tokenize cannot fill amount", id="tok"
        ),
        pytest.param(
            'customer_age = {unix_seconds = "dob"}',
            "[columns] customer_age: unix_seconds cannot fill customer_age",
            id="seconds-into-age",
        ),
        pytest.param(
            'customer_location = {lat = "lat", long = "long"}',
            "[columns] customer_location: unknown key 'long' (use lat and lon)",
            id="pair-unknown-key",
        ),
        pytest.param(
            'customer_location = {lat = "lat"}',
            "[columns] customer_location: needs both lat and lon",
            id="pair-half",
        ),
        pytest.param(
            'customer_location = {lat = "lat", lon = "long"}\ncustomer_lat = "lat"',
            "[columns] customer_lat: customer_lat given twice",
            id="pair-and-column",
        ),
        pytest.param(
            'customer_location = "lat"',
            "[columns] customer_location: must be a column name or an inline table",
            id="pair-as-string",
        ),
    ],
)
def test_bad_inline_table_names_the_file_table_and_key(tmp_path, line, fragment):
    path = mapping(tmp_path, f"[columns]\n{line}\n")
    problems = problems_of(read_mapping, path)
    assert len(problems) == 1, problems
    assert (problems[0].source, problems[0].row, problems[0].column) == (str(path), None, None)
    assert fragment in problems[0].reason


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        pytest.param('[tokenize]\nsalt = "x"\n', "[tokenize] salt: unknown (use key)", id="key"),
        pytest.param('[tokenize]\nkey = ""\n', "[tokenize] key: must be a non-empty", id="empty"),
        pytest.param("[tokenize]\nkey = 7\n", "[tokenize] key: must be a non-empty", id="int"),
    ],
)
def test_bad_tokenize_table_names_the_file_and_key(tmp_path, table, fragment):
    path = mapping(tmp_path, "[columns]\n" + CARD + table)
    problems = problems_of(read_mapping, path)
    assert [(p.source, p.reason) for p in problems] == [(str(path), problems[0].reason)]
    assert fragment in problems[0].reason


def test_a_tokenized_column_absent_from_the_file_is_named(tmp_path, sample):
    toml = mapping(tmp_path, BASE + 'card_id = {tokenize = "card_number"}\n' + USD)
    problems = problems_of(load_with, sample, toml)
    assert [(p.source, p.column) for p in problems] == [(str(sample), "card_number")]
    assert "mapped to 'card_id' but not in the file" in problems[0].reason
