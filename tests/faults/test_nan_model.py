"""Finding 9 (issue 15): a model that returns NaN for everything. /readyz stayed 200, and under
group scoring half of the fallbacks were counted cause="unknown". Readiness must check that a
probe prediction is finite, and NaN output is its own fallback cause ("nan") on every path:
one payment, a group of /score requests, /score_batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serving.core.schemas import PaymentIn
from tests.faults.test_model_faults import NanModel, fallbacks, variant
from tests.serving.helpers import ADMIN, BACKEND, high_risk, low_risk, running_service


@pytest.fixture
def service(fault_env: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    with running_service() as client:
        from serving.http.service import http_app

        yield client, http_app.state.runtime


def test_readiness_fails_while_the_model_answers_nan_and_recovers_on_reload(service):
    client, rt = service
    assert client.get("/readyz").status_code == 200
    rt.holder.swap(variant(NanModel, rt.holder.current.model), "nan")
    assert client.get("/readyz").status_code != 200
    assert client.post("/admin/reload", headers=ADMIN).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_nan_output_is_its_own_fallback_cause_on_every_path(service):
    client, rt = service
    rt.holder.swap(variant(NanModel, rt.holder.current.model), "nan")
    nan, unknown, error = fallbacks("nan"), fallbacks("unknown"), fallbacks("error")
    # one payment
    r = client.post("/score", json=low_risk("nan-1"), headers=BACKEND)
    assert r.json()["decision_source"] == "fallback", r.text
    assert "(nan)" in r.json()["reasons"][-1]["text"]
    # a group of /score requests (what GroupScorer hands the scorer under load)
    who = rt.keys.authenticate(BACKEND["Authorization"])
    group = [
        (PaymentIn.model_validate((low_risk if i % 2 else high_risk)(f"nan-g{i}")), who, None)
        for i in range(6)
    ]
    answers = rt.scorer.score_group(group)
    assert all(status == 200 for status, _ in answers)
    assert all("(nan)" in body["reasons"][-1]["text"] for _, body in answers)
    # a batch
    batch = {"payments": [low_risk(f"nan-b{i}") for i in range(4)]}
    r = client.post("/score_batch", json=batch, headers=BACKEND)
    assert r.status_code == 200, r.text
    assert all("(nan)" in b["reasons"][-1]["text"] for b in r.json()["results"])
    assert fallbacks("nan") - nan == 1 + 6 + 4
    assert fallbacks("unknown") == unknown
    assert fallbacks("error") == error
