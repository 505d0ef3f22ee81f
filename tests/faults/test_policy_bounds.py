"""Finding 7 (issue 15): policy values are bounded. An admin could set fallback_max_amount to
1e309 (infinity); with the model down, a 5,000 payment was then approved by the fallback.

Every way a policy comes in (PUT /admin/policy, the policy file, the stored policy another
worker adopts) goes through `parse_config`, which refuses a non-finite or out-of-range value
naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from serving.scoring.policy import MAX_FALLBACK_AMOUNT, parse_config
from tests.serving.helpers import ADMIN, BACKEND, high_risk, running_service


@pytest.fixture
def service(fault_env: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    with running_service() as client:
        from serving.http.service import http_app

        yield client, http_app.state.runtime


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, 1e308, MAX_FALLBACK_AMOUNT + 0.01, -1.0, "1e309"]
)
def test_parse_config_refuses_an_unbounded_fallback(value):
    with pytest.raises(ValueError, match="fallback_max_amount"):
        parse_config({"fallback_max_amount": value})


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_parse_config_refuses_a_non_finite_rule_value(value):
    rule = {"name": "big", "field": "amount", "op": ">", "value": value, "action": "review"}
    with pytest.raises(ValueError, match="big"):
        parse_config({"rules": [rule]})


@pytest.mark.parametrize("value", [1e308, 5_000.0, MAX_FALLBACK_AMOUNT * 10])
def test_an_unbounded_fallback_is_refused_and_the_model_down_holds_a_big_payment(service, value):
    client, rt = service
    before = client.get("/admin/policy", headers=ADMIN).json()
    r = client.put("/admin/policy", json={"fallback_max_amount": value}, headers=ADMIN)
    assert 400 <= r.status_code < 500, r.text
    assert "fallback_max_amount" in r.text
    assert client.get("/admin/policy", headers=ADMIN).json() == before
    rt.holder._loaded = rt.holder._build(None, None)  # the model is down
    payment = {**high_risk(f"pb-{value:.0e}"), "amount": 5_000.0}
    r = client.post("/score", json=payment, headers=BACKEND)
    assert r.status_code == 200, r.text
    assert r.json()["decision_source"] == "fallback"
    assert r.json()["decision"] == "review"
    # a sensible fallback is taken
    r = client.put("/admin/policy?force=true", json={"fallback_max_amount": 100.0}, headers=ADMIN)
    assert r.status_code == 200, r.text
