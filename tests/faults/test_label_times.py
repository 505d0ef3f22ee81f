"""Finding 5 (issue 15): a chargeback's label_time out of range must be refused before anything
is written, and the label row and the online-state update are one unit: a label the database
holds is a label the online features count.

Before the fix, year 1, 2262 or 9999 answered 500 after the label was committed, and the retry
said "duplicate": the chargeback reached training but never the online features.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.helpers import BACKEND, counts, low_risk, running_service


@pytest.fixture
def service(fault_env: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    with running_service() as client:
        from serving.http.service import http_app

        yield client, http_app.state.runtime


def _fraud_counted(rt: Any, transaction_id: str) -> bool:
    return transaction_id in rt.holder.current.online.store._fraud


@pytest.mark.parametrize(
    "label_time",
    [
        "0001-01-01T00:00:00Z",  # before the payment (and before the epoch)
        "2024-03-05T11:59:59Z",  # one second before the payment
        "2262-06-01T00:00:00Z",  # past pandas' nanosecond range
        "9999-12-31T23:59:59Z",  # far future
        "2200-01-01T00:00:00Z",  # within ns range, still far future
    ],
)
def test_a_label_time_out_of_range_is_refused_and_nothing_is_stored(service, label_time):
    client, rt = service
    payment = low_risk("lt")  # timestamp 2024-03-05T12:00:00Z
    assert client.post("/score", json=payment, headers=BACKEND).status_code == 200
    before = counts(rt.engine)
    body = {"transaction_id": payment["transaction_id"], "label_time": label_time}
    r = client.post("/labels", json=body, headers=BACKEND)
    assert r.status_code in (400, 422), (r.status_code, r.text)
    assert "label_time" in r.text
    assert counts(rt.engine) == before
    assert not _fraud_counted(rt, payment["transaction_id"])
    # a good retry is stored and reaches the online features
    body["label_time"] = "2024-03-20T00:00:00Z"
    r = client.post("/labels", json=body, headers=BACKEND)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] is True, r.text
    assert _fraud_counted(rt, payment["transaction_id"])


def test_label_row_and_online_update_are_one_unit(service, monkeypatch):
    """If the online state cannot take the label, the label is not stored either: the retry
    stores it and the features count it (no 'duplicate' for a label the features never saw)."""
    client, rt = service
    payment = low_risk("lt-unit")
    assert client.post("/score", json=payment, headers=BACKEND).status_code == 200
    store = rt.holder.current.online.store
    real = store.record_label

    def broken(*_args: Any, **_kwargs: Any) -> bool:
        raise OSError("state log unavailable")

    monkeypatch.setattr(store, "record_label", broken)
    before = counts(rt.engine)
    body = {"transaction_id": payment["transaction_id"]}
    with pytest.raises(OSError, match="state log unavailable"):
        client.post("/labels", json=body, headers=BACKEND)
    assert counts(rt.engine) == before
    monkeypatch.setattr(store, "record_label", real)
    r = client.post("/labels", json=body, headers=BACKEND)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "transaction_id": payment["transaction_id"],
        "stored": True,
        "duplicate": False,
    }, r.text
    assert _fraud_counted(rt, payment["transaction_id"])
