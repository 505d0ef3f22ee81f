"""No leakage: a payment's features and the labels a model is fitted on come from its past only.

(a) Cutting the data just after a payment (and hiding the labels not yet known then) leaves its
    features unchanged. (b) A signal planted seconds after every fraud cannot reach the fraud's
    features, nor lift the trained model's test average precision. (c) Labels whose chargeback
    arrives after the end of training count as genuine when fitting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from data.schema import validate
from features.batch import compute
from features.registry import available
from tests.training.helpers import assert_same_features
from training import pipeline, search
from training.config import SearchSettings, TrainConfig
from training.fit import matrix
from training.pipeline import TrainResult, train
from training.split import known_labels, label_knowable

MARKER_AMOUNT = 4_321.09
MARKER_DELAY = pd.Timedelta(seconds=3)


def in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    """(timestamp, transaction_id) order: the order in which the features see payments."""
    return frame.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)


def feature_names(frame: pd.DataFrame) -> list[str]:
    return [f.name for f in available(frame.columns).features]


# --- (a) truncation invariance ------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(frame: pd.DataFrame) -> pd.DataFrame:
    """The first 40% of payments in time order: long enough for every window, quick to recompute."""
    ordered = in_time_order(frame)
    return ordered.iloc[: int(len(ordered) * 0.4)].reset_index(drop=True)


def sample_positions(history: pd.DataFrame) -> list[int]:
    """Payments whose future would most easily leak: frauds, payments followed within the hour by
    another payment of the same card, the very last payment, and a few at random."""
    rng = np.random.default_rng(0)
    n = len(history)
    fraud = np.flatnonzero(history["is_fraud"].to_numpy(dtype=np.float64, na_value=0) == 1)
    card = history["card_id"].to_numpy()
    ts = history["timestamp"]
    nxt = history.groupby("card_id", sort=False)["timestamp"].shift(-1)
    soon = np.flatnonzero(((nxt - ts) < pd.Timedelta(hours=1)).fillna(False).to_numpy())
    picks = {
        *rng.choice(fraud, 6, replace=False).tolist(),
        *rng.choice(soon, 6, replace=False).tolist(),
        *rng.choice(n, 4, replace=False).tolist(),
        n - 1,
    }
    assert len(set(card[list(picks)])) > 5
    return sorted(picks)


def as_known_at(prefix: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """The data as it stood at time t: labels that arrive after t are not there yet."""
    out = prefix.copy()
    unknown = (out["label_time"] > t).fillna(False).to_numpy()
    out.loc[unknown, "is_fraud"] = pd.NA
    out.loc[unknown, "label_time"] = pd.NaT
    return validate(out, source="as-known")


def test_features_of_a_payment_do_not_change_when_the_data_is_cut_just_after_it(history):
    names = feature_names(history)
    full = compute(history)
    positions = sample_positions(history)
    for i in positions:
        t = history["timestamp"].iloc[i]
        cut = as_known_at(history.iloc[: i + 1], t)
        assert (cut["label_time"].dropna() <= t).all()
        mine = compute(cut).iloc[[i]].reset_index(drop=True)
        want = full.iloc[[i]].reset_index(drop=True)
        assert mine["transaction_id"].iloc[0] == want["transaction_id"].iloc[0]
        assert_same_features(mine, want, names)


def test_hidden_future_labels_do_change_some_label_features(history):
    """Guard for the test above: hiding later labels is not a no-op for the label feature."""
    middle = history["timestamp"].iloc[len(history) // 2]
    a = compute(history)["merchant_fraud_rate_30d"].to_numpy()
    b = compute(as_known_at(history, middle))["merchant_fraud_rate_30d"].to_numpy()
    later = (history["timestamp"] > middle + pd.Timedelta(days=7)).to_numpy()
    assert np.nanmax(np.abs(a[later] - b[later])) > 0


# --- (b) a signal planted after each fraud ----------------------------------------------------


def plant_markers(frame: pd.DataFrame) -> pd.DataFrame:
    """For every fraud: a genuine payment by the same card, seconds later, with a marker amount.

    Markers get their own merchant and customer and no category, device, IP or e-mail domain,
    so the card is the only entity they share with the fraud.
    """
    fraud = frame[(frame["is_fraud"] == 1).fillna(False)]
    markers = fraud.copy()
    markers["transaction_id"] = fraud["transaction_id"] + "-marker"
    markers["timestamp"] = fraud["timestamp"] + MARKER_DELAY
    markers["amount"] = MARKER_AMOUNT
    markers["merchant_id"] = "marker-merchant-" + fraud["transaction_id"]
    markers["customer_id"] = "marker-customer-" + fraud["transaction_id"]
    for col in ("mcc", "device_id", "ip_hash", "email_domain"):
        markers[col] = None
    markers["is_fraud"] = 0
    markers["label_time"] = pd.NaT
    markers["scenario"] = "marker"
    return validate(pd.concat([frame, markers], ignore_index=True), source="planted")


def unaffected_by_markers(frame: pd.DataFrame, planted: pd.DataFrame) -> np.ndarray:
    """Original rows that no marker precedes on the same card: their past is unchanged."""
    markers = planted.iloc[len(frame) :]
    first = markers.groupby("card_id")["timestamp"].min()
    first_marker = frame["card_id"].map(first)
    return (first_marker.isna() | (frame["timestamp"] < first_marker)).to_numpy()


@pytest.fixture(scope="module")
def planted(frame: pd.DataFrame) -> pd.DataFrame:
    return plant_markers(frame)


@pytest.fixture(scope="module")
def planted_features(planted: pd.DataFrame) -> pd.DataFrame:
    return compute(planted)


def test_the_planted_signal_gives_every_fraud_away_to_whoever_sees_the_future(frame, planted):
    """Guard: looking seconds ahead on the card would find a marker after every fraud."""
    nxt = (
        in_time_order(planted)
        .assign(next_amount=lambda d: d.groupby("card_id")["amount"].shift(-1))
        .set_index("transaction_id")["next_amount"]
    )
    fraud = (frame["is_fraud"] == 1).fillna(False).to_numpy()
    followed = (nxt.loc[frame["transaction_id"]] == MARKER_AMOUNT).to_numpy()
    assert fraud.sum() > 0
    assert followed[fraud].mean() > 0.9
    assert followed[~fraud].mean() < 0.01


def test_features_of_payments_before_the_markers_are_unchanged(
    frame, trained: TrainResult, planted, planted_features
):
    keep = unaffected_by_markers(frame, planted)
    fraud = (frame["is_fraud"] == 1).fillna(False).to_numpy()
    fraud_cards = frame.loc[fraud, "card_id"].nunique()
    # every fraud card's first fraud is compared, with its own marker 3 seconds later
    first_frauds = frame[fraud].sort_values("timestamp").drop_duplicates("card_id").index
    assert keep[first_frauds].all()
    assert len(first_frauds) == fraud_cards
    names = feature_names(frame)
    before = trained.features.loc[keep].reset_index(drop=True)
    after = planted_features.iloc[: len(frame)].loc[keep].reset_index(drop=True)
    np.testing.assert_array_equal(before["transaction_id"], after["transaction_id"])
    assert_same_features(after, before, names)


def test_a_model_trained_with_the_planted_signal_does_not_find_it(
    frame, trained: TrainResult, planted
):
    result = train(planted, TrainConfig(search=SearchSettings(trials=1)))  # as `trained` was
    keep = unaffected_by_markers(frame, planted)
    te = (trained.parts == "test") & keep
    y = (frame["is_fraud"] == 1).fillna(False).to_numpy()[te].astype(int)
    assert y.sum() >= 10, "enough frauds in the compared test rows to measure"

    def ap(model_result: TrainResult, features: pd.DataFrame) -> float:
        X = matrix(features.loc[te, list(model_result.model.features)].to_numpy())
        return float(average_precision_score(y, model_result.model.predict_proba(X)))

    base = ap(trained, trained.features)
    with_markers = ap(result, result.features.iloc[: len(frame)])
    # A model that could see a marker after each fraud would rank those frauds first (AP ~ 1).
    assert with_markers < base + 0.1, (base, with_markers)
    assert with_markers < 0.9


# --- (c) labels known by the end of training -------------------------------------------------


def test_label_not_known_by_train_end_counts_as_genuine():
    t0 = pd.Timestamp("2024-02-01", tz="UTC")
    end = pd.Timestamp("2024-02-20", tz="UTC")
    frame = pd.DataFrame(
        {
            "is_fraud": pd.array([1, 1, 1, 0, 1, pd.NA], dtype="Int8"),
            "label_time": pd.to_datetime(
                [
                    t0 + pd.Timedelta(days=3),  # known well before the end
                    end,  # arrives exactly at the end: known
                    end + pd.Timedelta(seconds=1),  # arrives after: unknown -> genuine
                    None,  # genuine
                    None,  # fraud without a label time: never known
                    None,  # unlabelled
                ],
                utc=True,
            ),
        }
    )
    np.testing.assert_array_equal(known_labels(frame, end), [1, 1, 0, 0, 0, 0])
    assert known_labels(frame, end).dtype == np.int8
    np.testing.assert_array_equal(
        known_labels(frame, end + pd.Timedelta(days=1)), [1, 1, 1, 0, 0, 0]
    )


def test_labels_without_label_times_are_all_taken_as_known():
    frame = pd.DataFrame({"is_fraud": pd.array([1, 0, pd.NA], dtype="Int8")})
    np.testing.assert_array_equal(
        known_labels(frame, pd.Timestamp("2024-01-01", tz="UTC")), [1, 0, 0]
    )


class CapturedError(Exception):
    """Stops the training job right after it hands labels to LightGBM."""


def test_the_booster_is_fitted_only_on_labels_known_at_deployment(frame, monkeypatch):
    """Labels as known at the test start; payments too young for theirs are left out."""
    seen = {}

    def capture(X_train, y_train, X_valid, y_valid, *args, **kwargs):
        seen.update(y_train=np.asarray(y_train), y_valid=np.asarray(y_valid))
        raise CapturedError

    monkeypatch.setattr(search, "fit_booster", capture)
    # a validation period long enough to hold known frauds, so no fallback to folds
    config = TrainConfig(valid_share=0.3, search=SearchSettings(trials=1))
    with pytest.raises(CapturedError):
        train(frame, config)

    delay = pd.Timedelta(days=config.label_delay_days)
    split = pipeline.plan(frame["timestamp"], delay, valid_share=0.3)
    parts = pipeline.part_of(frame["timestamp"], split)
    knowable = label_knowable(frame, split.test_start, delay)
    tr, va = (parts == "train") & knowable, (parts == "valid") & knowable
    fraud = (frame["is_fraud"] == 1).fillna(False).to_numpy()
    late = fraud & (frame["label_time"] > split.test_start).fillna(False).to_numpy()
    assert (late & (parts == "train")).sum() > 0, "some training frauds charge back after it"

    y_fit = seen["y_train"]
    assert len(y_fit) == tr.sum()
    np.testing.assert_array_equal(y_fit, known_labels(frame, split.test_start)[tr])
    assert (y_fit[late[tr]] == 0).all(), "frauds charged back after deployment read genuine"
    young = (parts == "train") & ~knowable
    assert not young.any() or (frame["timestamp"][young] + delay > split.test_start).all()
    np.testing.assert_array_equal(seen["y_valid"], known_labels(frame, split.test_start)[va])
