"""`riskgate train` refuses bad input with exit 2, a precise message, and nothing registered."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.training.helpers import CliRun, registered_versions, riskgate

GOOD_ROWS = """\
transaction_id,timestamp,card_id,customer_id,merchant_id,amount,currency,is_fraud,label_time
t1,2024-01-01T00:00:00Z,c1,u1,m1,10.50,EUR,0,
t2,2024-01-01T06:00:00Z,c2,u2,m2,20.00,EUR,1,2024-01-05T06:00:00Z
t3,2024-01-02T12:30:00Z,c1,u1,m2,0.99,EUR,0,
"""


def refused(run: CliRun, uri: str, *fragments: str) -> None:
    assert run.code == 2, f"exit {run.code}\n{run.err[-2000:]}"
    for fragment in fragments:
        assert fragment in run.err, f"{fragment!r} not in:\n{run.err[-2000:]}"
    assert "Traceback" not in run.err
    assert registered_versions(uri) == []


def train(data: Path, *extra: object) -> CliRun:
    return riskgate("train", "--data", data, *extra)


# --- the data -------------------------------------------------------------------------------


def test_data_without_labels_is_refused(frame, tmp_path, mlflow_store):
    data = tmp_path / "unlabelled.parquet"
    frame.drop(columns=["is_fraud", "label_time"]).to_parquet(data, index=False)
    refused(
        train(data), mlflow_store, "error: the data has no labels (is_fraud): nothing to train on"
    )


def test_data_with_an_empty_label_column_is_refused(frame, tmp_path, mlflow_store):
    data = tmp_path / "empty_labels.parquet"
    frame.assign(is_fraud=pd.NA, label_time=pd.NaT).to_parquet(data, index=False)
    refused(train(data), mlflow_store, "the data has no labels")


def test_an_invalid_data_file_names_file_row_and_column(tmp_path, mlflow_store):
    data = tmp_path / "bad.csv"
    data.write_text(GOOD_ROWS.replace("0.99,EUR", "-0.99,EUR").replace("20.00,EUR", "20.00,XXX"))
    refused(
        train(data),
        mlflow_store,
        "error: invalid input",
        f"{data}, row 2, column 'currency': unknown currency 'XXX'",
        f"{data}, row 3, column 'amount': negative amount -0.99",
    )


def test_a_missing_data_file_is_refused(tmp_path, mlflow_store):
    data = tmp_path / "nowhere.parquet"
    refused(train(data), mlflow_store, f"{data}: file not found")


def test_a_data_file_of_unknown_format_is_refused(tmp_path, mlflow_store):
    data = tmp_path / "payments.xlsx"
    data.write_text("not really")
    refused(train(data), mlflow_store, "unknown format (use .csv or .parquet)")


# --- the configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param(
            "[lightgbm]\nnum_leafs = 8\n", "[lightgbm] unknown key 'num_leafs'", id="lightgbm"
        ),
        pytest.param(
            "[business]\nreview_budget = 3\n",
            "[business] unknown key 'review_budget'",
            id="business",
        ),
        pytest.param(
            "label_dealy_days = 3\n", "[top level] unknown key 'label_dealy_days'", id="top-level"
        ),
        pytest.param("[lightgbm\n", "not valid TOML", id="not-toml"),
    ],
)
def test_an_unknown_config_key_is_refused_naming_file_and_key(
    data_path, tmp_path, mlflow_store, toml, message
):
    config = tmp_path / "train.toml"
    config.write_text(toml)
    refused(train(data_path, "--config", config), mlflow_store, f"{config}: {message}")


def test_a_missing_config_file_is_refused(data_path, tmp_path, mlflow_store):
    config = tmp_path / "absent.toml"
    refused(train(data_path, "--config", config), mlflow_store, f"{config}: config file not found")


@pytest.mark.parametrize(
    "toml",
    [
        pytest.param('[lightgbm]\nnum_leaves = "many"\n', id="text-for-an-integer"),
        pytest.param('label_delay_days = "7d"\n', id="text-for-a-number"),
        pytest.param("lightgbm = 3\n", id="number-for-a-table"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_refused_naming_the_key(
    data_path, tmp_path, mlflow_store, toml
):
    # Today load_config copies any value as is: training later dies with a LightGBMError, a
    # TypeError from pandas or an AttributeError (`3.items()`) and a traceback.
    config = tmp_path / "train.toml"
    config.write_text(toml)
    key = toml.split("=")[0].strip().split("\n")[-1]
    refused(train(data_path, "--config", config, "--no-mlflow"), mlflow_store, str(config), key)


def test_a_negative_label_delay_in_the_config_is_refused(data_path, tmp_path, mlflow_store):
    # --label-delay refuses a negative duration, the config file does not: the periods overlap
    # and, on this data, the job stops later with "no fraud label known by the end of the
    # training or validation period ... a shorter label delay is needed", which misleads.
    config = tmp_path / "train.toml"
    config.write_text("label_delay_days = -3\n")
    run = train(data_path, "--config", config)
    refused(run, mlflow_store)
    assert "-3" in run.err, f"the message should name the negative delay:\n{run.err[-600:]}"
    assert "label delay" in run.err or "label_delay_days" in run.err


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        pytest.param("soon", "error: --label-delay: 'soon' is not a duration", id="not-a-duration"),
        pytest.param("-2d", "error: --label-delay: '-2d'", id="negative"),
        pytest.param(
            "7 days ago", "error: --label-delay: '7 days ago' is not a duration", id="words"
        ),
        pytest.param(
            "45d",
            "days of data are too few: need >= 7 training days",
            id="longer-than-the-data-allows",
        ),
    ],
)
def test_a_bad_label_delay_is_refused(data_path, mlflow_store, delay, message):
    refused(train(data_path, f"--label-delay={delay}"), mlflow_store, message)


def test_partly_given_periods_are_refused(data_path, mlflow_store):
    run = train(data_path, "--train-start", "2024-01-01", "--test-end", "2024-02-20")
    refused(run, mlflow_store, "give all of --train-start, --train-end, --test-start, --test-end")


def test_a_gap_shorter_than_the_label_delay_trains_on_labels_known_at_deployment(
    data_path, mlflow_store
):
    run = train(
        data_path,
        "--no-mlflow",
        *("--train-start", "2024-01-01", "--train-end", "2024-02-01"),
        *("--test-start", "2024-02-03", "--test-end", "2024-02-28"),
    )
    assert run.code == 0, run.err[-2000:]
    lines = run.err.splitlines()
    valid = next(line for line in lines if "] " in line and " validation " in line)
    # validation ends a label delay before the test start: its labels are known by then
    assert " ".join(valid.split("validation")[1].split()[2:4]) == "2024-01-27 00:00"
    cells = valid.split()
    assert cells[-4] == cells[-2], "every validation payment's label is known at deployment"


def test_the_periods_actually_used_are_printed_with_inclusive_end_dates(data_path, mlflow_store):
    run = train(
        data_path,
        "--no-mlflow",
        *("--train-start", "2024-01-01", "--train-end", "2024-01-31"),
        *("--test-start", "2024-02-08", "--test-end", "2024-02-28"),
    )
    assert run.code == 0, run.err[-2000:]
    assert "periods (labels as known at 2024-02-08 00:00 UTC" in run.err
    test_line = next(line for line in run.err.splitlines() if " test " in line and "] " in line)
    assert "2024-02-08 00:00 2024-02-29 00:00" in test_line, "the end date's whole day is in"
    assert "lightgbm: kept iteration" in run.err


def test_a_period_date_that_is_not_a_date_exits_2(data_path, mlflow_store):
    # _ts() raises SystemExit("error: ...") which exits with status 1 (and escapes main()):
    # every other bad input exits 2.
    run = train(
        data_path,
        *("--train-start", "first of january", "--train-end", "2024-02-01"),
        *("--test-start", "2024-02-10", "--test-end", "2024-02-28"),
    )
    refused(run, mlflow_store, "error: 'first of january' is not a date")
