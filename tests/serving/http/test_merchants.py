"""The merchant's own view through the in-process service: its payments, held money and
expected settlement, and nobody else's (404, whatever the spelling of the other id)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    MERCHANT,
    MERCHANT_ID,
    REVIEWER,
    high_risk,
    low_risk,
    running_service,
    service_env_for,
)

OTHER = "merch_000342"


@pytest.fixture(scope="module")
def shop_env(tmp_path_factory, model_dir) -> Iterator[dict[str, str]]:
    """One service for the module (the tests only read): its own database and state, and two
    reviewers around the clock (settlement times do not depend on the test's hour)."""
    work = tmp_path_factory.mktemp("merchants")
    with service_env_for(work, model_dir, RISKGATE_TEAM_SHIFTS="00-00:2") as env:
        yield env


@pytest.fixture(scope="module")
def seeded(shop_env) -> Iterator[tuple[Any, dict[str, Any]]]:
    with running_service() as client:
        yield client, seed(client)


@pytest.fixture
def shop(seeded) -> Any:
    return seeded[0]


@pytest.fixture
def ids(seeded) -> dict[str, Any]:
    return seeded[1]


def pay(client: Any, payment: dict[str, Any], merchant: str) -> dict[str, Any]:
    r = client.post("/score", json={**payment, "merchant_id": merchant}, headers=BACKEND)
    assert r.status_code == 200, r.text
    return r.json()


def seed(client: Any) -> dict[str, Any]:
    """Own: one settled, two held (one with more money at risk), one declined by a reviewer;
    the other merchant: one held, one settled."""
    ids = {
        "settled": pay(client, low_risk("m-ok"), MERCHANT_ID)["transaction_id"],
        "held_small": pay(client, {**high_risk("m-h1"), "amount": 900.0}, MERCHANT_ID),
        "held_big": pay(client, {**high_risk("m-h2"), "amount": 5000.0}, MERCHANT_ID),
        "declined": pay(client, high_risk("m-d"), MERCHANT_ID),
        "other_held": pay(client, high_risk("o-h"), OTHER)["transaction_id"],
        "other_settled": pay(client, low_risk("o-ok"), OTHER)["transaction_id"],
    }
    for name in ("held_small", "held_big", "declined"):
        assert ids[name]["decision"] == "review", ids[name]
    r = client.post(
        f"/cases/{ids['declined']['case_id']}/decision",
        json={"decision": "decline_fraud"},
        headers=REVIEWER,
    )
    assert r.status_code == 200, r.text
    ids["reasons"] = ids["held_big"]["reasons"]
    for name in ("held_small", "held_big", "declined"):
        ids[name] = ids[name]["transaction_id"]
    return ids


def listing(client: Any, merchant: str = MERCHANT_ID, headers=MERCHANT, **params: Any):
    return client.get(f"/merchants/{merchant}/payments", params=params, headers=headers)


def is_rfc3339_z(v: str) -> bool:
    return v.endswith("Z") and datetime.fromisoformat(v.replace("Z", "+00:00")).tzinfo is not None


def test_merchant_sees_its_payments_with_status_time_held_and_expected_settlement(shop, ids):
    r = listing(shop)
    assert r.status_code == 200, r.text
    items = {i["transaction_id"]: i for i in r.json()["items"]}

    assert set(items) == {ids["settled"], ids["held_small"], ids["held_big"], ids["declined"]}
    assert items[ids["settled"]]["status"] == "settled"
    assert items[ids["settled"]]["held_seconds"] == 0
    assert items[ids["settled"]]["reason_category"] is None
    assert items[ids["declined"]]["status"] == "declined"
    assert items[ids["declined"]]["reason_category"] == "did not pass security checks"
    big, small = items[ids["held_big"]], items[ids["held_small"]]
    assert big["amount"] == 5000.0
    assert big["currency"] == "EUR"
    for held in (big, small):
        assert held["status"] == "held_for_review"
        assert held["reason_category"] == "routine security review"
        assert held["held_seconds"] >= 0
        s = held["expected_settlement"]
        assert is_rfc3339_z(s["p50"])
        assert is_rfc3339_z(s["p90"])
        assert 0 < s["p50_minutes"] < s["p90_minutes"]
    # more money at risk is reviewed first: earlier place, earlier expected settlement
    assert (
        big["expected_settlement"]["queue_position"]
        < small["expected_settlement"]["queue_position"]
    )
    assert big["expected_settlement"]["p50_minutes"] < small["expected_settlement"]["p50_minutes"]
    assert is_rfc3339_z(r.json()["as_of"])


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def test_the_reason_reveals_nothing_a_fraudster_could_use(shop, ids):
    page = listing(shop)
    one = shop.get(f"/merchants/{MERCHANT_ID}/payments/{ids['held_big']}", headers=MERCHANT)
    summary = shop.get(f"/merchants/{MERCHANT_ID}/summary", headers=MERCHANT)
    text = page.text + one.text + summary.text
    for reason in ids["reasons"]:
        assert reason["text"] not in text
    categories = {i["reason_category"] for i in page.json()["items"]}
    assert categories == {None, "routine security review", "did not pass security checks"}
    seen = keys_of(page.json()) | keys_of(one.json()) | keys_of(summary.json())
    for leak in (
        "probability",
        "score",
        "features",
        "factors",
        "reasons",
        "review_threshold",
        "decision_source",
        "card_id",
        "customer_id",
        "device_id",
        "ip_hash",
    ):
        assert leak not in seen


def test_filters_status_since_and_limit(shop, ids):
    held = listing(shop, status="held_for_review").json()["items"]
    assert {i["transaction_id"] for i in held} == {ids["held_small"], ids["held_big"]}
    assert len(listing(shop, limit=2).json()["items"]) == 2
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert listing(shop, since=future).json()["items"] == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert len(listing(shop, since=past).json()["items"]) == 4


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "open"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "0001-01-01T00:00:00Z"}, "since"),
    ],
)
def test_bad_filters_get_a_422_naming_the_field(shop, params, field):
    r = listing(shop, **params)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]


def test_summary_money_held_expected_to_settle_and_declined_today(shop, ids):
    r = shop.get(f"/merchants/{MERCHANT_ID}/summary", headers=MERCHANT)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["held_now"] == {"count": 2, "amount": {"EUR": 5900.0}}
    # two cases ahead at most, two reviewers: both expected within the hour
    assert s["expected_to_settle_next_hour"] == {"count": 2, "amount": {"EUR": 5900.0}}
    assert s["expected_to_settle_today"]["count"] >= s["expected_to_settle_next_hour"]["count"] - 2
    assert s["declined_today"] == {"count": 1, "amount": {"EUR": 2500.0}}
    # nothing of the other merchant's held payment
    other = shop.get(f"/merchants/{OTHER}/summary", headers=BACKEND).json()
    assert other["held_now"] == {"count": 1, "amount": {"EUR": 2500.0}}


def test_backend_and_admin_read_any_merchant(shop, ids):
    for headers in (BACKEND, ADMIN):
        r = listing(shop, OTHER, headers)
        assert r.status_code == 200, r.text
        assert {i["transaction_id"] for i in r.json()["items"]} == {
            ids["other_held"],
            ids["other_settled"],
        }
        one = shop.get(f"/merchants/{OTHER}/payments/{ids['other_held']}", headers=headers)
        assert one.status_code == 200
        assert one.json()["status"] == "held_for_review"


# the merchant key's own id written other ways: the same id after one URL decoding is the
# same merchant; anything else is another (possibly unknown) merchant: 404, same body
SAME_ID = ["merch_000341", "merch%5F000341", "%6Derch_000341", "merch_%30%30%30341"]
OTHER_IDS = [
    OTHER,  # exists (has payments)
    "merch_999999",  # does not exist
    "MERCH_000341",
    "Merch_000341",
    "merch%255F000341",  # double-encoded: "merch%5F000341" is not the id
    "merch_000341%20",
    "%20merch_000341",
    "merch_000341%00",
    "merch_000341%0A",
    "merch_0003411",
    "merch_00034",
    "\uff4derch_000341",  # full-width m
    "merch_000341;",
    "merch_000341%3B",
]


@pytest.mark.parametrize("written", SAME_ID)
def test_a_merchant_reads_its_own_id_however_it_is_url_encoded(shop, ids, written):
    r = shop.get(f"/merchants/{written}/payments", headers=MERCHANT)
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 4
    assert shop.get(f"/merchants/{written}/summary", headers=MERCHANT).status_code == 200
    own = shop.get(f"/merchants/{written}/payments/{ids['held_big']}", headers=MERCHANT)
    assert own.status_code == 200


def test_another_merchants_id_is_404_whatever_its_spelling(shop, ids):
    bodies: dict[str, str] = {}
    for written in OTHER_IDS:
        for path in (f"/merchants/{written}/payments", f"/merchants/{written}/summary"):
            r = shop.get(path, headers=MERCHANT)
            assert r.status_code == 404, f"{path}: {r.status_code} {r.text}"
            bodies[written] = r.text
    # an existing and an unknown id look the same (a newline in the id never reaches the
    # route: the server's own plain 404, the same for every id)
    assert bodies[OTHER] == bodies["merch_999999"] == '{"error":"not found"}'
    assert set(bodies.values()) <= {'{"error":"not found"}', "Not Found"}


def test_another_merchants_payment_is_404_like_an_unknown_one(shop, ids):
    own, theirs = ids["held_big"], ids["other_held"]
    cases = [
        (MERCHANT_ID, theirs),  # their payment under my id
        (OTHER, theirs),  # their payment under their id
        (OTHER, own),  # my payment under their id
        (MERCHANT_ID, "txn-does-not-exist"),
        (MERCHANT_ID, own.upper()),
        (MERCHANT_ID, own + "%20"),
    ]
    bodies = set()
    for merchant, txn in cases:
        r = shop.get(f"/merchants/{merchant}/payments/{txn}", headers=MERCHANT)
        assert r.status_code == 404, f"{merchant}/{txn}: {r.status_code} {r.text}"
        bodies.add(r.text)
    assert bodies == {'{"error":"not found"}'}
    # the backend, too, finds a payment only under its own merchant
    r = shop.get(f"/merchants/{MERCHANT_ID}/payments/{theirs}", headers=BACKEND)
    assert r.status_code == 404
    # and the generic payment route stays closed to a merchant key, for every payment
    assert shop.get(f"/payments/{own}", headers=MERCHANT).status_code == 403
    assert shop.get(f"/payments/{theirs}", headers=MERCHANT).status_code == 403


def test_reviewers_may_not_read_the_merchant_view(shop, ids):
    assert listing(shop, headers=REVIEWER).status_code == 403
