"""Label events from the service merged into training data (training.feedback, train --labels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.schema import ValidationError, validate
from tests.training.helpers import riskgate
from training.feedback import merge_labels, validate_labels
from training.pipeline import TrainResult

T = pd.Timestamp("2024-03-01", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return T + pd.Timedelta(days=n)


def payments(is_fraud: list, label_time: list) -> pd.DataFrame:
    n = len(is_fraud)
    return validate(
        pd.DataFrame(
            {
                "transaction_id": [f"t{i}" for i in range(n)],
                "timestamp": [T] * n,
                "card_id": "c1",
                "customer_id": "u1",
                "merchant_id": "m1",
                "amount": 10.0,
                "currency": "EUR",
                "is_fraud": is_fraud,
                "label_time": label_time,
            }
        ),
        source="payments",
    )


def events(*rows: tuple[str, int, str]) -> pd.DataFrame:
    return validate_labels(
        pd.DataFrame(rows, columns=["transaction_id", "is_fraud", "label_time"]), "labels.csv"
    )


def merged(frame: pd.DataFrame, labels: pd.DataFrame) -> dict[str, tuple[object, object]]:
    out = merge_labels(frame, labels)
    assert validate(out, source="merged") is not None
    return {
        r.transaction_id: (None if pd.isna(r.is_fraud) else int(r.is_fraud), r.label_time)
        for r in out.itertuples()
    }


# --- merge_labels -------------------------------------------------------------------------------


def test_fraud_wins_over_genuine_whatever_the_order():
    frame = payments([None, None, 0, 1], [None, None, day(1), day(9)])
    labels = events(
        ("t0", 0, "2024-03-02"),  # approved by a reviewer ...
        ("t0", 1, "2024-03-20"),  # ... then charged back
        ("t1", 1, "2024-03-04"),
        ("t1", 0, "2024-03-06"),  # a later "genuine" does not undo a chargeback
        ("t2", 1, "2024-03-15"),  # the file says genuine, the service says fraud
        ("t3", 0, "2024-03-02"),  # the file says fraud, the service says genuine
    )
    got = merged(frame, labels)
    assert got["t0"] == (1, day(19))
    assert got["t1"] == (1, day(3))
    assert got["t2"] == (1, day(14))
    assert got["t3"] == (1, day(9))


def test_label_time_is_the_earliest_event_that_agrees_with_the_final_label():
    frame = payments([1, 0, None], [day(9), day(5), None])
    labels = events(
        ("t0", 1, "2024-03-04"),  # earlier than the file's chargeback
        ("t0", 0, "2024-03-02"),  # disagrees with the final label: ignored for the time
        ("t1", 0, "2024-03-08"),  # later than the file's genuine label: the file's time stays
        ("t2", 0, "2024-03-07"),
        ("t2", 0, "2024-03-03"),
    )
    got = merged(frame, labels)
    assert got["t0"] == (1, day(3))
    assert got["t1"] == (0, day(5))
    assert got["t2"] == (0, day(2))


def test_label_events_for_unknown_payments_are_ignored():
    frame = payments([None, 0], [None, day(1)])
    out = merge_labels(frame, events(("nope", 1, "2024-03-02"), ("t0", 1, "2024-03-03")))
    assert list(out["transaction_id"]) == ["t0", "t1"]
    assert len(out) == len(frame)
    assert merged(frame, events(("nope", 1, "2024-03-02")))["t0"] == (None, pd.NaT)


def test_payments_without_events_keep_their_labels_and_columns():
    frame = payments([1, None], [day(3), None])
    out = merge_labels(frame, events(("t1", 0, "2024-03-05")))
    assert list(out.columns) == list(frame.columns)
    assert out.loc[0, "is_fraud"] == 1
    assert out.loc[0, "label_time"] == day(3)
    assert str(out["is_fraud"].dtype) == "Int8"
    assert str(out["label_time"].dtype) == "datetime64[ns, UTC]"


def test_events_label_an_unlabelled_data_set():
    frame = payments([None, None], [None, None]).drop(columns=["is_fraud", "label_time"])
    got = merged(frame, events(("t0", 1, "2024-03-10")))
    assert got == {"t0": (1, day(9)), "t1": (None, pd.NaT)}


def test_label_times_in_mixed_iso8601_forms_are_accepted():
    # Both are ISO 8601 and the data contract accepts them side by side (data.schema parses with
    # format="ISO8601"); Python's isoformat() drops ".ffffff" when the microseconds are zero.
    labels = pd.DataFrame(
        {
            "transaction_id": ["t0", "t1"],
            "is_fraud": [1, 0],
            "label_time": ["2024-03-05T10:00:00+00:00", "2024-03-06T11:30:00.250000+00:00"],
        }
    )
    out = validate_labels(labels, "labels.csv")
    assert list(out["label_time"]) == [
        pd.Timestamp("2024-03-05 10:00", tz="UTC"),
        pd.Timestamp("2024-03-06 11:30:00.25", tz="UTC"),
    ]


# --- a bad label file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        pytest.param(
            "is_fraud",
            [1, "yes", 0],
            "labels.csv, row 2, column 'is_fraud': 'yes' is not 0 or 1",
            id="label",
        ),
        pytest.param("is_fraud", [1, 0, 0.5], "labels.csv, row 3, column 'is_fraud'", id="half"),
        pytest.param(
            "label_time",
            ["2024-03-02", "2024-03-03", "soon"],
            "labels.csv, row 3, column 'label_time': not a timestamp",
            id="time",
        ),
    ],
)
def test_a_bad_label_value_names_file_row_and_column(column, values, message):
    labels = pd.DataFrame(
        {
            "transaction_id": ["t0", "t1", "t2"],
            "is_fraud": [1, 0, 1],
            "label_time": ["2024-03-02", "2024-03-03", "2024-03-04"],
        }
    )
    labels[column] = values
    with pytest.raises(ValidationError) as info:
        validate_labels(labels, "labels.csv")
    assert message in str(info.value)
    (problem,) = info.value.problems
    assert (problem.source, problem.column) == ("labels.csv", column)


def test_a_bad_label_value_is_quoted_as_written_not_as_a_numpy_repr():
    # A CSV column of integers is read as int64; data.schema unwraps numpy scalars (`_show`)
    # so users read "2", but validate_labels prints "np.int64(2) is not 0 or 1".
    labels = pd.DataFrame(
        {"transaction_id": ["t0", "t1"], "is_fraud": [1, 2], "label_time": ["2024-03-02"] * 2}
    )
    with pytest.raises(ValidationError) as info:
        validate_labels(labels, "labels.csv")
    assert str(info.value) == "labels.csv, row 2, column 'is_fraud': 2 is not 0 or 1"


def test_a_label_file_without_a_required_column_is_refused():
    labels = pd.DataFrame({"transaction_id": ["t0"], "is_fraud": [1]})
    with pytest.raises(ValidationError, match=r"labels\.csv, column 'label_time': required column"):
        validate_labels(labels, "labels.csv")


# --- train --labels ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unlabelled(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The session data with its labels moved out into a CSV of label events (frauds only)."""
    tmp = tmp_path_factory.mktemp("feedback")
    data = tmp / "unlabelled.parquet"
    frame.drop(columns=["is_fraud", "label_time"]).to_parquet(data, index=False)
    fraud = frame[(frame["is_fraud"] == 1).fillna(False)]
    labels = tmp / "labels.csv"
    fraud[["transaction_id", "is_fraud", "label_time"]].to_csv(labels, index=False)
    return data, labels


def test_train_without_labels_is_refused(unlabelled, tmp_path):
    data, _ = unlabelled
    run = riskgate("train", "--data", data, "--no-mlflow")
    assert run.code == 2
    assert "the data has no labels (is_fraud): nothing to train on" in run.err


def test_train_uses_the_label_events_and_their_times(unlabelled, trained: TrainResult, tmp_path):
    data, labels = unlabelled
    scores = tmp_path / "scores.parquet"
    run = riskgate(
        "train", "--data", data, "--labels", labels, "--no-mlflow", "--scores-out", scores
    )
    assert run.code == 0, run.err
    got = pd.read_parquet(scores)
    # Same labels at the same times as the labelled data set: the very same model and scores.
    # (Which labels are known when training ends depends on the times, so they must be merged.)
    np.testing.assert_array_equal(got["transaction_id"], trained.test_scores["transaction_id"])
    np.testing.assert_array_equal(got["label"], trained.test_scores["label"])
    assert np.array_equal(got["score"].to_numpy(), trained.test_scores["score"].to_numpy())


def test_train_with_a_bad_label_file_exits_2_naming_the_row(unlabelled, tmp_path):
    data, _ = unlabelled
    bad = tmp_path / "bad_labels.csv"
    bad.write_text("transaction_id,is_fraud,label_time\nx1,1,2024-01-02\nx2,maybe,2024-01-03\n")
    run = riskgate("train", "--data", data, "--labels", bad, "--no-mlflow")
    assert run.code == 2
    assert f"{bad}, row 2, column 'is_fraud': 'maybe' is not 0 or 1" in run.err


def test_train_refuses_a_label_that_arrives_before_its_payment(frame, unlabelled, tmp_path):
    # The contract says label_time >= timestamp (data.schema refuses it in a data file); a label
    # event that predates its payment is an export error and must not slip in through --labels.
    data, labels = unlabelled
    first = frame.sort_values("timestamp").iloc[0]
    when = first["timestamp"] - pd.Timedelta(days=1)
    events = pd.read_csv(labels)
    events.loc[len(events)] = [first["transaction_id"], 1, str(when)]
    bad = tmp_path / "early_labels.csv"
    events.to_csv(bad, index=False)
    run = riskgate("train", "--data", data, "--labels", bad, "--no-mlflow")
    assert run.code == 2
    assert str(bad) in run.err
    assert "label_time" in run.err


def test_train_reads_the_json_export_and_says_what_the_labels_did(unlabelled, tmp_path):
    data, labels = unlabelled
    events = pd.read_csv(labels, dtype={"transaction_id": str})
    extra = pd.DataFrame(
        {"transaction_id": ["txn-not-in-data"], "is_fraud": [1], "label_time": ["2024-01-05"]}
    )
    rows = pd.concat([events, extra]).astype({"label_time": str}).to_dict("records")
    export = tmp_path / "labels.json"
    export.write_text(json.dumps({"labels": rows}))
    run = riskgate("train", "--data", data, "--labels", export, "--no-mlflow")
    assert run.code == 0, run.err[-2000:]
    n = len(events)
    assert (
        f"labels: {n + 1:,} events; {n:,} payments matched, {n:,} of them changed label, "
        "1 events matched no payment"
    ) in run.err
