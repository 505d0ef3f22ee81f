"""The sentence a reviewer reads about linked confirmed fraud (pure)."""

from __future__ import annotations

from serving.review.links import sentence


def test_a_shared_email_domain_alone_is_counted_not_named():
    fraud = {"is_fraud": True, "source": "chargeback"}
    links = [
        {"transaction_id": "t1", "shared": ["device"], "label": fraud},
        {"transaction_id": "t2", "shared": ["email_domain"], "label": fraud},
        {"transaction_id": "t3", "shared": ["card"], "label": None},
    ]
    assert sentence(links) == (
        "2 linked payments are confirmed fraud: t1 (charged back) shares the device; "
        "1 shares only the e-mail domain."
    )
    assert sentence(links[2:]) is None
