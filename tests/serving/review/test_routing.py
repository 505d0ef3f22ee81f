"""Queue routing rules (pure): each rule sends to its queue, the residual queue catches the rest."""

from __future__ import annotations

import pytest

from serving.review import routing
from serving.review.routing import CaseFacts, Match, QueueSpec


def _facts(**kw: object) -> CaseFacts:
    base: dict[str, object] = {
        "amount": 50.0,
        "merchant_id": "m1",
        "country": "DE",
        "score": 40,
        "source": "model",
    }
    base.update(kw)
    return CaseFacts(**base)  # type: ignore[arg-type]


CONFIG = (
    routing.default_config(15)
    .with_queue(QueueSpec("big", 60, match=Match(min_amount=1000)))
    .with_queue(QueueSpec("acme", 30, match=Match(merchants=("acme",))))
    .with_queue(QueueSpec("brazil", 30, match=Match(countries=("BR",))))
    .with_queue(QueueSpec("hot", 10, match=Match(min_score=90)))
    .with_queue(QueueSpec("fallback", 20, match=Match(source="fallback")))
    .with_queue(QueueSpec("appeals", 240))  # no rule: filled by assignment only
)


@pytest.mark.parametrize(
    ("facts", "queue"),
    [
        (_facts(amount=1000.0), "big"),
        (_facts(amount=999.99), routing.RESIDUAL),
        (_facts(merchant_id="acme"), "acme"),
        (_facts(country="BR"), "brazil"),
        (_facts(country=None), routing.RESIDUAL),
        (_facts(score=95), "hot"),
        (_facts(score=None), routing.RESIDUAL),
        (_facts(source="fallback"), "fallback"),
        (_facts(), routing.RESIDUAL),
        (_facts(amount=5000.0, merchant_id="acme"), "big"),  # the first matching rule wins
    ],
)
def test_each_rule_sends_to_its_queue_and_the_residual_catches_the_rest(facts, queue):
    assert routing.route(CONFIG, facts) == queue


def test_a_queue_without_a_rule_is_never_routed_to():
    assert routing.route(CONFIG, _facts(merchant_id="appeals")) != "appeals"


def test_new_queues_go_before_the_reserved_ones_and_replace_by_name():
    names = CONFIG.names()
    assert names[-2:] == (routing.RESIDUAL, routing.SUPERVISORS)
    changed = CONFIG.with_queue(QueueSpec("big", 5, mode="locked", match=Match(min_amount=10)))
    assert changed.names() == names
    assert changed.get("big") == QueueSpec("big", 5, mode="locked", match=Match(min_amount=10))


def test_the_default_is_one_open_queue_allowing_every_decision():
    config = routing.default_config(15)
    assert routing.route(config, _facts(amount=1e6)) == routing.RESIDUAL
    residual = config.get(routing.RESIDUAL)
    assert residual is not None
    assert residual.mode == "open"
    assert residual.decisions == routing.DECISIONS


def test_stored_form_round_trips():
    assert routing.from_doc(routing.to_doc(CONFIG), 15) == CONFIG


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"name": "Bad Name", "sla_minutes": 5}, "name"),
        ({"name": "q", "sla_minutes": 0}, "sla_minutes"),
        ({"name": "q", "sla_minutes": 5, "decisions": ["refund"]}, "decisions"),
        ({"name": "q", "sla_minutes": 5, "mode": "closed"}, "mode"),
        (
            {"name": "q", "sla_minutes": 5, "match": {"min_amount": 10, "max_amount": 5}},
            "match.max_amount",
        ),
    ],
)
def test_an_invalid_queue_is_refused_naming_the_field(doc, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        routing.spec_from_doc(doc)


def test_the_reserved_queues_take_no_rule():
    with pytest.raises(ValueError, match=r"^match:"):
        CONFIG.with_queue(QueueSpec(routing.RESIDUAL, 5, match=Match(min_amount=1)))
