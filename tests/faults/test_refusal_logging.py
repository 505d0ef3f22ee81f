"""Finding 10 (issue 15): a refused /score body was logged at ERROR with a 24-line traceback
(BentoML logs every validation error as an exception). A refusal is the caller's mistake: one
line at WARNING naming the fields (loc), no traceback, and no values (a value may be a card
number).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.helpers import BACKEND, TEST_PAN, low_risk, running_service


@pytest.fixture(scope="module")
def client(module_env: dict[str, str]) -> Iterator[Any]:
    with running_service() as c:
        yield c


SECRET_CUSTOMER = "cust-secret-value-77"

REFUSED = [
    ("/score", {**low_risk("rl-1"), "card_id": TEST_PAN, "customer_id": SECRET_CUSTOMER}),
    ("/score", {**low_risk("rl-2"), "amount": -5, "customer_id": SECRET_CUSTOMER}),
    ("/score", {**low_risk("rl-3"), "pan": TEST_PAN}),
    ("/score_batch", {"payments": [{**low_risk("rl-4"), "card_id": TEST_PAN}]}),
]


@pytest.mark.parametrize(("path", "body"), REFUSED, ids=["pan", "amount", "extra", "batch"])
def test_a_refused_body_is_one_warning_line_without_values(client, caplog, path, body):
    caplog.set_level(logging.DEBUG)
    r = client.post(path, json=body, headers=BACKEND)
    assert r.status_code == 400, r.text
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not errors, [rec.getMessage() for rec in errors]
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"
    warned = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warned) == 1, [rec.getMessage() for rec in caplog.records]
    line = warned[0].getMessage()
    assert "\n" not in line
    assert path in line
    for loc in r.json()["detail"]:
        assert str(loc["loc"][-1]) in line, (line, loc)
    text = caplog.text
    for secret in (TEST_PAN, TEST_PAN.replace(" ", ""), SECRET_CUSTOMER):
        assert secret not in text
