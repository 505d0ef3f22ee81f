"""Reading files, mapping a team's layout onto the contract, and writing without half-files."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pandas as pd
import pytest

from data.load import (
    apply_mapping,
    load,
    parse_duration,
    read_mapping,
    read_table,
    write_parquet_atomic,
)
from data.schema import Problem, ValidationError
from features.registry import available

FIXTURES = Path(__file__).parent / "fixtures"
PUBLIC_CSV = FIXTURES / "public_layout.csv"
PUBLIC_TOML = FIXTURES / "public_layout.toml"

CONTRACT_CSV = """\
transaction_id,timestamp,card_id,customer_id,merchant_id,amount,currency,is_fraud,label_time
1001,2024-01-01 00:00:00,c1,u1,m1,10.50,EUR,0,
1002,2024-01-01T01:00:00+01:00,c2,u2,m2,20.00,eur,1,2024-01-05T00:00:00Z
1003,2024-01-02 12:30:00,c1,u1,m2,0.99,USD,,
1004,2024-01-03 23:59:59,c3,u3,m1,1250.00,EUR,0,2024-01-10 00:00:00
"""


def raise_problems(call, *args) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        call(*args)
    return info.value.problems


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- reading files -------------------------------------------------------------------------------


def typed_parquet(path: Path) -> Path:
    """The same payments as CONTRACT_CSV, written with native Parquet types."""
    frame = pd.DataFrame(
        {
            "transaction_id": [1001, 1002, 1003, 1004],
            "timestamp": pd.to_datetime(
                [
                    "2024-01-01 00:00:00",
                    "2024-01-01 00:00:00",
                    "2024-01-02 12:30:00",
                    "2024-01-03 23:59:59",
                ]
            ),
            "card_id": ["c1", "c2", "c1", "c3"],
            "customer_id": ["u1", "u2", "u1", "u3"],
            "merchant_id": ["m1", "m2", "m2", "m1"],
            "amount": [10.5, 20.0, 0.99, 1250.0],
            "currency": ["EUR", "EUR", "USD", "EUR"],
            "is_fraud": pd.array([0, 1, None, 0], dtype="Int64"),
            "label_time": pd.to_datetime([None, "2024-01-05", None, "2024-01-10"], utc=True),
        }
    )
    frame.to_parquet(path, index=False)
    return path


def text_parquet(path: Path, csv: Path) -> Path:
    pd.read_csv(csv).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("variant", ["text-columns", "typed-columns"])
def test_csv_and_parquet_load_to_the_same_frame(tmp_path, variant):
    csv = write(tmp_path / "payments.csv", CONTRACT_CSV)
    pq = tmp_path / "payments.parquet"
    if variant == "typed-columns":
        typed_parquet(pq)
    else:
        text_parquet(pq, csv)
    from_csv = load(csv)
    from_parquet = load(pq)
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    assert from_csv["timestamp"].iloc[1] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert from_csv["transaction_id"].tolist() == ["1001", "1002", "1003", "1004"]


@pytest.mark.parametrize("name", ["payments.PARQUET", "payments.pq"])
def test_parquet_extensions_are_recognised_case_insensitively(tmp_path, name):
    csv = write(tmp_path / "payments.csv", CONTRACT_CSV)
    pq = text_parquet(tmp_path / name, csv)
    assert len(read_table(pq)) == 4


def test_compressed_csv_is_read(tmp_path):
    path = tmp_path / "payments.csv.gz"
    pd.read_csv(io.StringIO(CONTRACT_CSV)).to_csv(path, index=False)
    assert len(load(path)) == 4


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        pytest.param("payments.json", "[]", "unknown format (use .csv or .parquet)", id="json"),
        pytest.param("payments.xlsx", "x", "unknown format", id="xlsx"),
        pytest.param("payments", "x", "unknown format", id="no-extension"),
        pytest.param("payments.parquet", "not parquet", "cannot be read", id="corrupt-parquet"),
        pytest.param(None, None, "file not found", id="missing-file"),
    ],
)
def test_unreadable_file_is_a_validation_error_naming_the_file(tmp_path, name, content, fragment):
    path = tmp_path / (name or "absent.csv")
    if content is not None:
        path.write_text(content)
    problems = raise_problems(load, path)
    assert len(problems) == 1
    assert problems[0].source == str(path)
    assert (problems[0].row, problems[0].column) == (None, None)
    assert fragment in problems[0].reason


def test_bad_rows_in_a_csv_are_reported_with_the_file_row_and_column(tmp_path):
    path = write(tmp_path / "payments.csv", CONTRACT_CSV.replace("20.00,eur", "-20.00,eur"))
    problems = raise_problems(load, path)
    assert [(p.source, p.row, p.column) for p in problems] == [(str(path), 2, "amount")]


def test_ids_with_leading_zeros_keep_them(tmp_path):
    # An MCC like 0742, or a backend id like 007, is text: reading it as a number turns
    # '0742' into '742' and makes '007' and '7' the same customer.
    text = (
        "transaction_id,timestamp,card_id,customer_id,merchant_id,amount,currency,mcc\n"
        "0001,2024-01-01,c1,007,m1,1.0,EUR,0742\n"
        "1,2024-01-01,c2,7,m1,2.0,EUR,5411\n"
    )
    out = load(write(tmp_path / "payments.csv", text))
    assert out["transaction_id"].tolist() == ["0001", "1"]
    assert out["customer_id"].tolist() == ["007", "7"]
    assert out["mcc"].tolist() == ["0742", "5411"]


# --- mapping files -------------------------------------------------------------------------------

PUBLIC_COLUMNS = """\
[columns]
timestamp = "TX_DATETIME"
customer_id = "CUSTOMER_ID"
merchant_id = "TERMINAL_ID"
amount = "TX_AMOUNT"
is_fraud = "TX_FRAUD"
"""
PUBLIC_DEFAULTS = """\
[defaults]
transaction_id = "row_number"
card_id = "customer_id"
currency = "EUR"
"""


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        pytest.param("[columns\ntimestamp = 'x'", ["not valid TOML"], id="malformed"),
        pytest.param('[columns]\ntimestamp = "a"\ntimestamp = "b"\n', ["not valid TOML"], id="dup"),
        pytest.param(
            PUBLIC_COLUMNS + 'colour = "COLOUR"\n',
            ["[columns] colour", "not a contract column"],
            id="unknown-contract-name",
        ),
        pytest.param(
            PUBLIC_COLUMNS + "amount_cents = 5\n",
            ["[columns] amount_cents"],
            id="unknown-name-not-string",
        ),
        pytest.param(
            '[columns]\namount = ["A", "B"]\n', ["[columns] amount", "column name"], id="list"
        ),
        pytest.param(
            PUBLIC_DEFAULTS + 'merchant_id = "m1"\n',
            ["[defaults] merchant_id", "unknown"],
            id="unknown-default-key",
        ),
        pytest.param(
            PUBLIC_DEFAULTS + "label_delay = 7\n",
            ["[defaults] label_delay", "must be a string"],
            id="delay-not-string",
        ),
        pytest.param("[extras]\nx = 1\n", ["unknown table [extras]"], id="unknown-table"),
    ],
)
def test_bad_mapping_file_is_a_validation_error_naming_the_file_and_key(tmp_path, toml, fragments):
    path = write(tmp_path / "layout.toml", toml)
    problems = raise_problems(read_mapping, path)
    assert len(problems) == 1, problems
    assert problems[0].source == str(path)
    for fragment in fragments:
        assert fragment in problems[0].reason


@pytest.mark.parametrize(
    "delay",
    [
        pytest.param("soon", id="text"),
        pytest.param("-1d", id="negative"),
        pytest.param("7", id="no-unit"),
        pytest.param("", id="empty"),
        pytest.param("nan", id="nan"),
        pytest.param("NaT", id="nat"),
    ],
)
def test_bad_label_delay_is_a_validation_error_naming_the_file_and_key(tmp_path, delay):
    path = write(tmp_path / "layout.toml", PUBLIC_DEFAULTS + f'label_delay = "{delay}"\n')
    problems = raise_problems(read_mapping, path)
    assert [(p.source, p.row, p.column) for p in problems] == [(str(path), None, None)]
    assert "[defaults] label_delay" in problems[0].reason


@pytest.mark.parametrize(
    ("delay", "expected"),
    [("7d", pd.Timedelta(days=7)), ("12h", pd.Timedelta(hours=12)), ("2w", pd.Timedelta(days=14))],
)
def test_good_label_delay_is_accepted(tmp_path, delay, expected):
    path = write(tmp_path / "layout.toml", f'[defaults]\nlabel_delay = "{delay}"\n')
    assert read_mapping(path).defaults == {"label_delay": delay}
    assert parse_duration(delay) == expected


@pytest.mark.parametrize("delay", ["7d", "7D", "1.5d", "12h", "30min", "2w"])
def test_label_delay_parses_without_pandas_deprecation_warnings(delay):
    # parse_duration lower-cases '7D' to '7d', a unit pandas 3 deprecates (Pandas4Warning) and
    # pandas 4 removes: the documented default would then be refused as "not a duration".
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = parse_duration(delay)
    assert value > pd.Timedelta(0)


def test_all_mapping_problems_are_reported_together(tmp_path):
    toml = '[columns]\ncolour = "C"\n[defaults]\nflavour = "x"\nlabel_delay = "soon"\n'
    problems = raise_problems(read_mapping, write(tmp_path / "layout.toml", toml))
    reasons = " | ".join(p.reason for p in problems)
    assert len(problems) == 3
    for key in ("[columns] colour", "[defaults] flavour", "[defaults] label_delay"):
        assert key in reasons


def test_missing_mapping_file_is_a_validation_error_naming_it(tmp_path):
    path = tmp_path / "absent.toml"
    problems = raise_problems(read_mapping, path)
    assert [(p.source, p.reason) for p in problems] == [(str(path), "mapping file not found")]


def test_mapped_column_absent_from_the_file_names_the_file_and_the_column(tmp_path):
    data = write(tmp_path / "public.csv", PUBLIC_CSV.read_text().replace("TX_AMOUNT", "AMT"))
    problems = raise_problems(load, data, PUBLIC_TOML)
    assert [(p.source, p.row, p.column) for p in problems] == [(str(data), None, "TX_AMOUNT")]
    assert "mapped to 'amount' but not in the file" in problems[0].reason


def test_default_from_a_column_that_does_not_exist_names_it(tmp_path):
    toml = write(
        tmp_path / "layout.toml",
        PUBLIC_COLUMNS.replace('customer_id = "CUSTOMER_ID"\n', "")
        + '[defaults]\ncard_id = "customer_id"\n',
    )
    problems = raise_problems(load, PUBLIC_CSV, toml)
    assert [(p.source, p.column) for p in problems] == [(str(PUBLIC_CSV), "customer_id")]
    assert "default for card_id" in problems[0].reason


def test_label_delay_without_a_mapped_timestamp_reports_the_missing_column(tmp_path):
    # The file's time column is not mapped: the contract's "required column is missing" is the
    # answer, not a KeyError from computing label_time.
    toml = write(
        tmp_path / "layout.toml",
        PUBLIC_COLUMNS.replace('timestamp = "TX_DATETIME"\n', "")
        + PUBLIC_DEFAULTS
        + 'label_delay = "7d"\n',
    )
    problems = raise_problems(load, PUBLIC_CSV, toml)
    assert (None, "timestamp") in [(p.row, p.column) for p in problems]


def test_apply_mapping_does_not_change_the_input_frame():
    frame = pd.read_csv(PUBLIC_CSV)
    before = frame.copy(deep=True)
    apply_mapping(frame, read_mapping(PUBLIC_TOML), str(PUBLIC_CSV))
    pd.testing.assert_frame_equal(frame, before)


# --- the public TX_* layout ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def public() -> pd.DataFrame:
    return load(PUBLIC_CSV, PUBLIC_TOML)


def test_public_fixture_keeps_the_public_layout():
    raw = pd.read_csv(PUBLIC_CSV)
    assert raw.columns.tolist() == [
        "TX_DATETIME",
        "CUSTOMER_ID",
        "TERMINAL_ID",
        "TX_AMOUNT",
        "TX_FRAUD",
    ]
    assert 30 <= len(raw) <= 60
    assert (raw["TX_FRAUD"] == 1).sum() >= 2


def test_public_layout_loads_through_its_mapping(public):
    raw = pd.read_csv(PUBLIC_CSV)
    assert len(public) == len(raw)
    assert public["timestamp"].dtype == "datetime64[ns, UTC]"
    assert public["timestamp"].iloc[0] == pd.Timestamp("2018-04-01 00:00:31", tz="UTC")
    assert public["amount"].tolist() == raw["TX_AMOUNT"].tolist()
    assert public["merchant_id"].tolist() == raw["TERMINAL_ID"].astype(str).tolist()
    assert public["is_fraud"].sum() == (raw["TX_FRAUD"] == 1).sum()


def test_public_layout_numbers_its_rows_as_transaction_ids(public):
    assert public["transaction_id"].is_unique
    assert public["transaction_id"].iloc[0] == "public_layout-1"
    assert public["transaction_id"].iloc[-1] == f"public_layout-{len(public)}"


def test_public_layout_card_id_defaults_to_customer_id(public):
    assert public["card_id"].tolist() == public["customer_id"].tolist()
    assert public["card_id"].notna().all()


def test_public_layout_currency_defaults_to_eur(public):
    assert (public["currency"] == "EUR").all()


def test_public_layout_label_time_is_timestamp_plus_the_delay_for_labelled_rows(public):
    labelled = public["is_fraud"].notna()
    assert labelled.sum() < len(public)  # the fixture has an unlabelled row
    delay = public.loc[labelled, "label_time"] - public.loc[labelled, "timestamp"]
    assert (delay == pd.Timedelta(days=7)).all()
    assert public.loc[~labelled, "label_time"].isna().all()


def test_public_layout_skips_location_and_identity_features_and_names_the_missing_columns(public):
    avail = available(public.columns)
    kept_groups = {f.group for f in avail.features}
    assert "location" not in kept_groups
    assert "identity" not in kept_groups
    assert {"amount", "time", "velocity", "labels"} <= kept_groups
    skipped = avail.skipped_groups()
    for column in ("billing_country", "ip_country", "merchant_lat", "customer_lat"):
        assert column in skipped["location"]
    for column in ("device_id", "account_created_at", "auth_result", "email_domain"):
        assert column in skipped["identity"]
    assert "card_id" not in " ".join(skipped.values())


# --- atomic writes -------------------------------------------------------------------------------


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({"transaction_id": ["a", "b"], "x": [1.0, 2.0]})


def other_files(directory: Path, target: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p != target]


@pytest.mark.parametrize("name", ["out.parquet", "nested/dir/out.parquet", "out.csv"])
def test_write_parquet_atomic_writes_the_target_and_leaves_no_temp_file(tmp_path, name):
    target = tmp_path / name
    returned = write_parquet_atomic(small_frame(), target)
    assert returned == target
    reader = pd.read_csv if name.endswith(".csv") else pd.read_parquet
    pd.testing.assert_frame_equal(reader(target), small_frame())
    assert other_files(target.parent, target) == []


def test_write_parquet_atomic_replaces_an_existing_target(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_bytes(b"old")
    write_parquet_atomic(small_frame(), target)
    pd.testing.assert_frame_equal(pd.read_parquet(target), small_frame())


def failing_writer(self, path, *args, **kwargs):
    Path(path).write_bytes(b"PAR1 half a file")  # a partial write, then the failure
    raise OSError("disk full")


@pytest.mark.parametrize("existing", [None, b"previous good file"])
def test_failed_write_leaves_no_partial_target_and_no_temp_file(tmp_path, monkeypatch, existing):
    target = tmp_path / "out.parquet"
    if existing is not None:
        target.write_bytes(existing)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        write_parquet_atomic(small_frame(), target)
    if existing is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == existing
    assert other_files(tmp_path, target) == []
