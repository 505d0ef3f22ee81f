"""The transaction contract: every bad input gets one precise problem, good input gets typed."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.schema import (
    MAX_ERRORS,
    REQUIRED,
    Problem,
    ValidationError,
    looks_like_card_number,
    luhn_valid,
    validate,
)

SOURCE = "payments.csv"
N = 4


def good(**columns: list[object]) -> pd.DataFrame:
    """Four valid payments in the contract layout; keyword arguments replace or add columns."""
    data: dict[str, list[object]] = {
        "transaction_id": ["t1", "t2", "t3", "t4"],
        "timestamp": [
            "2024-01-01T00:00:00Z",
            "2024-01-01T01:00:00Z",
            "2024-01-01T02:00:00Z",
            "2024-01-01T03:00:00Z",
        ],
        "card_id": ["c1", "c2", "c3", "c4"],
        "customer_id": ["u1", "u2", "u3", "u4"],
        "merchant_id": ["m1", "m2", "m3", "m4"],
        "amount": [10.5, 20.0, 0.0, 99.99],
        "currency": ["EUR", "EUR", "EUR", "EUR"],
    }
    data.update(columns)
    return pd.DataFrame(data)


def problems_of(frame: pd.DataFrame) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        validate(frame, source=SOURCE)
    return info.value.problems


def assert_one_problem(frame: pd.DataFrame, row: int | None, column: str, fragment: str) -> None:
    problems = problems_of(frame)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.source, problem.row, problem.column) == (SOURCE, row, column)
    assert fragment in problem.reason, problem.reason


# --- one bad input, one precise problem --------------------------------------------------------


@pytest.mark.parametrize("column", REQUIRED)
def test_missing_required_column_is_named_as_a_whole_file_problem(column):
    frame = good().drop(columns=[column])
    assert_one_problem(frame, None, column, "required column is missing")


@pytest.mark.parametrize(
    ("column", "other"), [("customer_id", "card_id"), ("card_id", "customer_id")]
)
def test_a_missing_payer_identifier_names_the_default_that_fills_it(column, other):
    frame = good().drop(columns=[column])
    assert_one_problem(frame, None, column, f'[defaults] {column} = "{other}"')


@pytest.mark.parametrize("column", REQUIRED)
def test_empty_required_value_is_refused_with_row_and_column(column):
    frame = good()
    values = frame[column].astype(object).tolist()
    values[2] = None
    frame[column] = values
    assert_one_problem(frame, 3, column, "value is empty")


def test_blank_text_in_a_required_column_counts_as_empty():
    assert_one_problem(good(card_id=["c1", "   ", "c3", "c4"]), 2, "card_id", "value is empty")


BAD_AMOUNTS = [
    pytest.param(["10", "abc", "3", "4"], "'abc' is not a number", id="text"),
    pytest.param(["10", "12,50", "3", "4"], "'12,50' is not a number", id="decimal-comma"),
    pytest.param([10.0, -5.0, 3.0, 4.0], "negative amount -5", id="negative-float"),
    pytest.param(["10", "-0.01", "3", "4"], "negative amount -0.01", id="negative-text"),
    pytest.param([10.0, np.inf, 3.0, 4.0], "non-finite value inf", id="inf-float"),
    pytest.param([10.0, -np.inf, 3.0, 4.0], "non-finite value -inf", id="minus-inf-float"),
    pytest.param(["10", "inf", "3", "4"], "non-finite value 'inf'", id="inf-text"),
    pytest.param(["10", "-Infinity", "3", "4"], "non-finite value '-Infinity'", id="infinity-text"),
    pytest.param(["10", "nan", "3", "4"], "non-finite value 'nan'", id="nan-text"),
    pytest.param(["10", "NaN", "3", "4"], "non-finite value 'NaN'", id="NaN-text"),
]


@pytest.mark.parametrize(("amounts", "fragment"), BAD_AMOUNTS)
def test_bad_amount_is_refused_with_row_and_column(amounts, fragment):
    assert_one_problem(good(amount=amounts), 2, "amount", fragment)


@pytest.mark.parametrize("code", ["XYZ", "EURO", "€", "eu"])
def test_unknown_currency_is_refused_with_row_and_column(code):
    frame = good(currency=["EUR", "EUR", code, "EUR"])
    assert_one_problem(frame, 3, "currency", f"unknown currency {code!r}")


@pytest.mark.parametrize("stamp", ["yesterday", "2024-13-01", "2024-02-30 10:00", "31/01/2024"])
def test_unparsable_timestamp_is_refused_with_row_and_column(stamp):
    frame = good(
        timestamp=["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z", stamp]
    )
    assert_one_problem(frame, 4, "timestamp", f"{stamp!r} is not a timestamp")


@pytest.mark.parametrize(
    ("column", "value"),
    [("account_created_at", "last year"), ("credential_changed_at", "soon")],
)
def test_unparsable_optional_timestamp_is_refused_with_row_and_column(column, value):
    frame = good(**{column: [None, value, None, "2023-01-01"]})
    assert_one_problem(frame, 2, column, f"{value!r} is not a timestamp")


def test_label_time_before_the_payment_is_refused_with_row_and_column():
    frame = good(
        is_fraud=[0, 1, 1, None],
        label_time=[None, "2023-12-31T23:59:59Z", "2024-01-09T00:00:00Z", None],
    )
    assert_one_problem(frame, 2, "label_time", "before the payment's timestamp")


def test_label_time_without_a_label_value_is_refused():
    frame = good(is_fraud=[0, None, 1, 0], label_time=[None, "2024-01-05", None, None])
    assert_one_problem(frame, 2, "label_time", "is_fraud is empty")


def test_label_time_column_without_is_fraud_column_is_a_whole_file_problem():
    frame = good(label_time=[None, "2024-01-05", None, None])
    assert_one_problem(frame, None, "is_fraud", "label_time given without is_fraud")


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(["t1", "t2", "t1", "t4"], id="text"),
        pytest.param([101, 102, 101, 104], id="int"),
        pytest.param([101.0, 102.0, 101.0, 104.0], id="float-from-csv-with-blanks"),
    ],
)
def test_duplicate_transaction_id_names_the_first_row(ids):
    assert_one_problem(good(transaction_id=ids), 3, "transaction_id", "first seen at row 1")


def test_duplicate_transaction_id_reports_every_repeat_against_its_first_row():
    problems = problems_of(good(transaction_id=["a", "b", "b", "a"]))
    assert [(p.row, p.column) for p in problems] == [(3, "transaction_id"), (4, "transaction_id")]
    assert "first seen at row 2" in problems[0].reason
    assert "first seen at row 1" in problems[1].reason


PANS = [
    pytest.param("4111111111111111", id="visa"),
    pytest.param("4111 1111 1111 1111", id="visa-spaces"),
    pytest.param("4111-1111-1111-1111", id="visa-dashes"),
    pytest.param("5555555555554444", id="mastercard"),
    pytest.param("378282246310005", id="amex-15"),
    pytest.param("4222222222222", id="visa-13"),
]


@pytest.mark.parametrize("pan", PANS)
@pytest.mark.parametrize("column", ["card_id", "customer_id", "merchant_id", "device_id"])
def test_raw_card_number_is_refused_in_any_id_column(column, pan):
    if column == "device_id":
        frame = good(device_id=["d1", pan, None, "d4"])
    else:
        values = good()[column].tolist()
        values[1] = pan
        frame = good(**{column: values})
    assert_one_problem(frame, 2, column, "looks like a raw card number")


def test_raw_card_number_read_from_csv_as_an_integer_is_refused():
    text = good(card_id=["c1", "c2", "c3", "c4"]).to_csv(index=False)
    text = text.replace(",c1,", ",4111111111111111,").replace(",c2,", ",1234,")
    text = text.replace(",c3,", ",5678,").replace(",c4,", ",9012,")
    frame = pd.read_csv(io.StringIO(text))
    assert pd.api.types.is_integer_dtype(frame["card_id"].dtype)
    assert_one_problem(frame, 1, "card_id", "looks like a raw card number")


@pytest.mark.parametrize("pan", ["4111111111111111 ", " 4111111111111111", " 4111 1111 1111 1111 "])
def test_raw_card_number_with_surrounding_whitespace_is_still_refused(pan):
    # A trailing blank from a fixed-width export must not let a PAN through.
    assert_one_problem(good(card_id=["c1", pan, "c3", "c4"]), 2, "card_id", "raw card number")


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("channel", "atm", "'atm' is not one of card_present, online"),
        ("channel", "Online", "'Online' is not one of card_present, online"),
        ("auth_result", "ok", "'ok' is not one of passed, failed, not_attempted"),
    ],
)
def test_bad_category_value_is_refused_with_row_and_column(column, value, fragment):
    frame = good(**{column: [None, None, value, None]})
    assert_one_problem(frame, 3, column, fragment)


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        pytest.param([0, 2, 1, 0], "2 is not 0 or 1", id="two"),
        pytest.param([0, -1, 1, 0], "-1 is not 0 or 1", id="minus-one"),
        pytest.param([0.0, 0.5, 1.0, 0.0], "0.5 is not 0 or 1", id="half"),
        pytest.param(["0", "yes", "1", ""], "'yes' is not 0 or 1", id="yes"),
        pytest.param(["0", "true", "1", "0"], "'true' is not 0 or 1", id="true-text"),
    ],
)
def test_is_fraud_not_0_or_1_is_refused_with_row_and_column(labels, fragment):
    assert_one_problem(good(is_fraud=labels), 2, "is_fraud", fragment)


# --- many problems -------------------------------------------------------------------------------


def test_many_problems_are_all_reported_in_row_order():
    frame = good(
        transaction_id=["t1", "t2", "t3", "t1"],
        amount=["10", "-1", "x", "4"],
        currency=["XXX", "EUR", "EUR", "EUR"],
        channel=[None, None, "atm", None],
    )
    got = [(p.row, p.column) for p in problems_of(frame)]
    assert got == [
        (1, "currency"),
        (2, "amount"),
        (3, "amount"),
        (3, "channel"),
        (4, "transaction_id"),
    ]


def test_whole_file_problems_come_before_row_problems_and_all_missing_columns_are_named():
    problems = problems_of(good().drop(columns=["amount", "currency"]))
    assert [(p.row, p.column) for p in problems] == [(None, "amount"), (None, "currency")]


def test_problems_past_the_cap_are_cut_to_the_first_rows():
    n = MAX_ERRORS + 10
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "timestamp": "2024-01-01",
            "card_id": "c",
            "customer_id": "u",
            "merchant_id": "m",
            "amount": -1.0,
            "currency": "EUR",
        }
    )
    problems = problems_of(frame)
    assert [p.row for p in problems] == list(range(1, MAX_ERRORS + 1))
    assert {p.column for p in problems} == {"amount"}


def test_message_says_how_many_problems_were_left_out_past_the_cap():
    # 30 negative amounts: the report may stop at MAX_ERRORS lines, but it must say that 10
    # more rows are bad, or a team fixes 20 rows and is surprised by the next run.
    n = MAX_ERRORS + 10
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "timestamp": "2024-01-01",
            "card_id": "c",
            "customer_id": "u",
            "merchant_id": "m",
            "amount": -1.0,
            "currency": "EUR",
        }
    )
    with pytest.raises(ValidationError) as info:
        validate(frame, source=SOURCE)
    assert "10 more" in str(info.value)


def test_error_message_lists_source_row_and_column():
    with pytest.raises(ValidationError) as info:
        validate(good(amount=[1.0, -2.0, 3.0, 4.0]), source=SOURCE)
    assert str(info.value) == f"{SOURCE}, row 2, column 'amount': negative amount -2.0"


# --- valid input ---------------------------------------------------------------------------------


def full_good() -> pd.DataFrame:
    return good(
        is_fraud=[0, 1, None, 0],
        label_time=[None, "2024-01-08T01:00:00Z", None, None],
        channel=["online", "card_present", None, "online"],
        auth_result=["passed", "failed", "not_attempted", None],
        customer_lat=[50.1, 50.2, None, 50.4],
        account_created_at=["2020-01-01", None, "2021-06-01T12:00:00+02:00", None],
        device_id=["d1", None, "d3", "d4"],
    )


CONTRACT_DTYPES = {
    "transaction_id": "str",
    "timestamp": "datetime64[ns, UTC]",
    "card_id": "str",
    "customer_id": "str",
    "merchant_id": "str",
    "amount": "float64",
    "currency": "str",
    "is_fraud": "Int8",
    "label_time": "datetime64[ns, UTC]",
    "channel": "str",
    "auth_result": "str",
    "customer_lat": "float64",
    "account_created_at": "datetime64[ns, UTC]",
    "device_id": "str",
}


@pytest.mark.parametrize(("column", "dtype"), CONTRACT_DTYPES.items())
def test_valid_input_returns_the_contract_dtypes(column, dtype):
    out = validate(full_good(), source=SOURCE)
    assert out[column].dtype == dtype


def test_valid_labels_keep_missing_as_na():
    out = validate(full_good(), source=SOURCE)
    assert out["is_fraud"].tolist()[:2] == [0, 1]
    assert out["is_fraud"].isna().tolist() == [False, False, True, False]


@pytest.mark.parametrize(
    ("stamp", "utc"),
    [
        pytest.param("2024-03-01 12:00:00", "2024-03-01 12:00:00", id="naive-is-utc"),
        pytest.param("2024-03-01T12:00:00", "2024-03-01 12:00:00", id="naive-iso"),
        pytest.param("2024-03-01T12:00:00Z", "2024-03-01 12:00:00", id="zulu"),
        pytest.param("2024-03-01T12:00:00+02:00", "2024-03-01 10:00:00", id="plus-two"),
        pytest.param("2024-03-01T07:00:00-05:00", "2024-03-01 12:00:00", id="minus-five"),
        pytest.param("2024-03-01T00:30:00+01:00", "2024-02-29 23:30:00", id="across-midnight"),
        pytest.param("2024-03-01", "2024-03-01 00:00:00", id="date-only"),
    ],
)
def test_timestamps_are_read_as_utc(stamp, utc):
    frame = good(
        timestamp=["2024-01-01T00:00:00Z", stamp, "2024-01-01T00:00:00+01:00", "2024-01-01"]
    )
    out = validate(frame, source=SOURCE)
    assert out["timestamp"].iloc[1] == pd.Timestamp(utc, tz="UTC")
    assert out["timestamp"].iloc[2] == pd.Timestamp("2023-12-31 23:00", tz="UTC")


@pytest.mark.parametrize(
    "stamps",
    [
        pytest.param(pd.to_datetime(["2024-03-01 12:00"] * N), id="naive-datetime64"),
        pytest.param(pd.to_datetime(["2024-03-01 12:00"] * N).as_unit("s"), id="naive-seconds"),
        pytest.param(
            pd.to_datetime(["2024-03-01 13:00"] * N).tz_localize("Europe/Berlin"), id="berlin"
        ),
        pytest.param(pd.to_datetime(["2024-03-01 12:00"] * N, utc=True), id="utc-datetime64"),
    ],
)
def test_datetime_columns_are_converted_to_utc_nanoseconds(stamps):
    out = validate(good(timestamp=list(stamps)), source=SOURCE)
    assert out["timestamp"].dtype == "datetime64[ns, UTC]"
    assert (out["timestamp"] == pd.Timestamp("2024-03-01 12:00", tz="UTC")).all()


def test_currency_is_upper_cased():
    out = validate(good(currency=["eur", "Usd", "GBP", "chf"]), source=SOURCE)
    assert out["currency"].tolist() == ["EUR", "USD", "GBP", "CHF"]


def test_numeric_ids_read_from_csv_are_text_without_a_decimal_point():
    text = (
        "transaction_id,timestamp,card_id,customer_id,merchant_id,amount,currency,device_id\n"
        "1001,2024-01-01,11,21,31,1.0,EUR,7\n"
        "1002,2024-01-01,12,22,32,2.0,EUR,\n"
        "1003,2024-01-01,13,23,33,3.0,EUR,9\n"
    )
    raw = pd.read_csv(io.StringIO(text))
    assert raw["device_id"].dtype == "float64"  # the blank made pandas read floats
    out = validate(raw, source=SOURCE)
    assert out["transaction_id"].tolist() == ["1001", "1002", "1003"]
    assert out["card_id"].tolist() == ["11", "12", "13"]
    assert out["device_id"].iloc[[0, 2]].tolist() == ["7", "9"]
    assert out["device_id"].isna().tolist() == [False, True, False]
    for column in ("transaction_id", "card_id", "customer_id", "merchant_id", "device_id"):
        assert out[column].dtype == "str"


@pytest.mark.parametrize(
    "odd", [pytest.param(np.inf, id="inf"), pytest.param(1e20, id="beyond-int64")]
)
def test_numeric_id_column_with_an_odd_float_does_not_crash(odd):
    # pandas reads a merchant id "INF" (or a 20-digit id) in an otherwise numeric column as a
    # float; the contract must answer with a frame or a ValidationError, never a crash.
    frame = good(merchant_id=[31.0, 32.0, odd, 34.0])
    try:
        out = validate(frame, source=SOURCE)
    except ValidationError:
        return
    assert out["merchant_id"].iloc[0] == "31"


def test_extra_columns_are_kept_unchanged():
    frame = good(scenario=["normal", "card_testing", "normal", "ato"], team_field=[1, 2, 3, 4])
    out = validate(frame, source=SOURCE)
    pd.testing.assert_series_equal(out["scenario"], frame["scenario"])
    pd.testing.assert_series_equal(out["team_field"], frame["team_field"])


def test_input_frame_is_not_mutated():
    frame = full_good()
    frame.index = [10, 20, 30, 40]
    before = frame.copy(deep=True)
    validate(frame, source=SOURCE)
    pd.testing.assert_frame_equal(frame, before)


def test_rows_are_counted_by_position_not_by_index_label():
    frame = good(amount=[1.0, 2.0, -3.0, 4.0])
    frame.index = [100, 7, 42, 3]
    assert_one_problem(frame, 3, "amount", "negative amount")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("4111111111111112", id="visa-off-by-one"),
        pytest.param("1234567812345678", id="sequence"),
        pytest.param("4111 1111 1111 1112", id="spaced"),
        pytest.param("123456789012", id="twelve-digits-luhn-ok"),
        pytest.param("41111111111111111111", id="twenty-digits"),
    ],
)
def test_non_card_numeric_token_is_accepted(token):
    out = validate(good(card_id=["c1", token, "c3", "c4"], device_id=[token] * N), source=SOURCE)
    assert out["card_id"].iloc[1] == token


@settings(max_examples=200, deadline=None)
@given(
    body=st.lists(st.integers(0, 9), min_size=12, max_size=18),
    sep=st.sampled_from(["", " ", "-"]),
)
def test_luhn_check_digit_decides_whether_a_digit_string_is_a_card_number(body, sep):
    digits = "".join(map(str, body))
    check = next(d for d in range(10) if luhn_valid(digits + str(d)))
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    pan = sep.join(groups) + (sep if len(digits) % 4 == 0 else "") + str(check)
    wrong = pan[:-1] + str((check + 1) % 10)
    assert looks_like_card_number(pan)
    assert not looks_like_card_number(wrong)


# --- customer_age and city_population ------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        pytest.param("customer_age", -0.5, "-0.5 is out of range (expected 0..130)", id="age<0"),
        pytest.param(
            "customer_age", 131.0, "131.0 is out of range (expected 0..130)", id="age>130"
        ),
        pytest.param("customer_age", "old", "'old' is not a number", id="age-text"),
        pytest.param("customer_age", "inf", "non-finite value 'inf'", id="age-inf"),
        pytest.param("city_population", -1, "-1.0 is out of range (expected >= 0)", id="pop<0"),
    ],
)
def test_age_and_city_population_out_of_range_are_refused(column, value, fragment):
    values: list[object] = [30.0, value, None, 0.0]
    assert_one_problem(good(**{column: values}), 2, column, fragment)


def test_age_and_city_population_in_range_are_floats():
    out = validate(good(customer_age=[0, 18.5, None, 130], city_population=[0, 5, None, 8e6]))
    assert out["customer_age"].dtype == "float64"
    assert out["city_population"].tolist()[:2] == [0.0, 5.0]


def test_mcc_may_be_a_category_name():
    out = validate(good(mcc=["5411", "grocery_pos", None, "0742"]))
    assert out["mcc"].tolist()[:2] == ["5411", "grocery_pos"]


def test_card_number_refusal_names_the_tokenize_option_for_its_column():
    frame = good(device_id=["d1", "4111111111111111", "d3", "d4"])
    assert_one_problem(frame, 2, "device_id", 'device_id = {tokenize = "<column>"}')
