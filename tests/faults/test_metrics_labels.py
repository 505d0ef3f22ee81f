"""Finding 1 (issue 15): requests, anonymous ones included, must not grow /metrics, and nothing a
caller sends (a path, an id, a card number, a reviewer's name) may become a label. BentoML
labelled its HTTP metrics with the raw path, also for 401s: 2,000 anonymous `GET /payments/x{i}`
made 41,000 series, in /metrics and in the multi-process files on disk. riskgate counts requests
by route template instead (serving/http/metrics.py).

And issue 16: every riskgate metric is present, with its bounded label sets at 0, from
start-up (riskgate_fallbacks_total used to appear only after the first fallback).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import pytest

from serving.core import metrics as core_metrics
from tests.servers import Server
from tests.serving.helpers import BACKEND, REVIEWER, TEST_PAN, high_risk, running_service

PAN = TEST_PAN.replace(" ", "")
ANONYMOUS = 2_000  # distinct anonymous paths sent to the real server
UNLABELLED = (  # (sample name, value at start-up)
    "riskgate_replays_total",
    "riskgate_capacity_adjusted_total",
    "riskgate_sla_breaches_total",
    "riskgate_score_seconds_count",
    "riskgate_score_group_size_count",
    "riskgate_time_to_decision_seconds_count",
    "riskgate_review_threshold",
    "riskgate_score_psi",
    "riskgate_queue_depth",
    "riskgate_queue_oldest_age_seconds",
    "riskgate_queue_overdue",
)
SAMPLE_OF = {  # labelled metric attribute -> the sample its series are read from
    "decisions": "riskgate_decisions_total",
    "fallbacks": "riskgate_fallbacks_total",
    "stage": "riskgate_stage_seconds_count",
    "review_decisions": "riskgate_review_decisions_total",
    "reloads": "riskgate_model_reloads_total",
}


def bounded_series() -> list[tuple[str, dict[str, str]]]:
    """Every (sample, labels) that must exist from start-up."""
    out = []
    for attr, labels in core_metrics.LABEL_SETS.items():
        for values in itertools.product(*labels.values()):
            out.append((SAMPLE_OF[attr], dict(zip(labels, values, strict=True))))
    for route in core_metrics.SCORING_ROUTES:
        out.append(
            ("riskgate_http_requests_total", {"method": "POST", "route": route, "status": "200"})
        )
    return out


def series(text: str) -> set[str]:
    """The series of a Prometheus text exposition: `name{labels}` of every sample line."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}


def as_series(name: str, labels: dict[str, str]) -> str:
    """The exposition's spelling of a series (labels sorted, as prometheus_client writes
    them in multi-process mode; single-process keeps declaration order, see `present`)."""
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")


def present(text: str, name: str, labels: dict[str, str]) -> bool:
    have = series(text)
    orders = itertools.permutations(labels.items()) if labels else [()]
    return any(as_series(name, dict(order)) in have for order in orders)


def probes(n: int) -> list[str]:
    """Distinct paths a scanner or a careless client may send: ids, a card number in several
    spellings, unknown routes, a reviewer's name."""
    kinds = (
        lambda i: f"/payments/x{i}",
        lambda i: f"/cases/case-probe-{i}",
        lambda i: f"/cases/case-probe-{i}/decision",
        lambda i: f"/payments/{PAN}-{i}",
        lambda i: f"/nope-{i}/alice",
    )
    return [kinds[i % len(kinds)](i) for i in range(n)]


SECRETS = ("/payments/x", "case-probe-", PAN, "nope-", "alice")


# -- issue 16: every metric at 0 from start-up ---------------------------------------------------
def test_every_metric_and_its_bounded_label_sets_exist_at_zero_when_created():
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    core_metrics.create(registry)

    missing = [
        (name, labels)
        for name, labels in bounded_series()
        if registry.get_sample_value(name, labels) != 0.0
    ]
    missing += [(name, {}) for name in UNLABELLED if registry.get_sample_value(name) != 0.0]
    assert missing == []
    assert registry.get_sample_value("riskgate_fallbacks_total", {"cause": "busy"}) == 0.0


# -- route templates -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "template"),
    [
        (f"/payments/{PAN}", "/payments/{transaction_id}"),
        ("/payments/txn-1", "/payments/{transaction_id}"),
        ("/cases/c-9/decision", "/cases/{case_id}/decision"),
        ("/cases/next/claim", "/cases/next/claim"),
        ("/score", "/score"),
        ("/console/app.js", "/console"),
        ("/payments/a/b", "unmatched"),
        (f"/{PAN}", "unmatched"),
        ("/scorex", "unmatched"),
    ],
)
def test_a_path_is_counted_by_its_route_template_never_by_itself(path: str, template: str):
    from serving.http.api import create_app
    from serving.http.metrics import route_table, template_of

    assert template_of(path, route_table(create_app().routes)) == template


def test_every_route_of_the_api_has_its_template_in_the_table():
    from serving.http.api import create_app
    from serving.http.metrics import route_table

    app = create_app()
    templates = {template for _, template in route_table(app.routes)}
    assert set(app.openapi()["paths"]) - templates == set()
    assert "/metrics" in templates


# -- in-process: the same through the service's middleware ---------------------------------------
def test_in_process_requests_add_no_series_and_no_caller_strings(fault_env: dict[str, str]):
    with running_service() as client:
        case = client.post("/score", json=high_risk("met-1"), headers=BACKEND).json()["case_id"]
        decided = client.post(
            f"/cases/{case}/decision", json={"decision": "approve"}, headers=REVIEWER
        )
        assert decided.status_code == 200, decided.text
        for path in probes(10):  # every kind of response once: 401, 404...
            client.get(path)
            client.get(path, headers=BACKEND)
        before = client.get("/metrics").text
        for path in probes(400)[10:]:
            assert client.get(path).status_code in (401, 404)
            client.get(path, headers=BACKEND)
        after = client.get("/metrics").text

    new = sorted(s for s in series(after) - series(before) if s.startswith("riskgate_"))
    assert new == []
    assert not [s for s in SECRETS if s in after]
    assert present(
        after, "riskgate_review_decisions_total", {"role": "reviewer", "decision": "approve"}
    )
    assert present(
        after,
        "riskgate_http_requests_total",
        {"method": "GET", "route": "/payments/{transaction_id}", "status": "401"},
    )


# -- the real server: /metrics and the multi-process files on disk -------------------------------
@pytest.mark.slow
def test_real_server_metrics_stay_bounded_under_anonymous_paths(real_server: Server):
    base = real_server.base
    with httpx.Client(base_url=base, timeout=30.0) as http:
        for path in probes(10):
            http.get(path)
            http.get(path, headers=BACKEND)
        before = http.get("/metrics")
        statuses: dict[int, int] = {}
        for path in probes(ANONYMOUS):
            code = http.get(path).status_code
            statuses[code] = statuses.get(code, 0) + 1
        for path in probes(200):
            http.get(path, headers=BACKEND)
        after = http.get("/metrics")

    files = multiproc_files(real_server.work)
    on_disk = [s for s in SECRETS for f in files if s.encode() in f.read_bytes()]
    grown = series(after.text) - series(before.text)
    print(
        f"\n/metrics after {ANONYMOUS} anonymous paths {statuses}: {len(series(after.text))} "
        f"series ({len(before.content):,} -> {len(after.content):,} bytes), {len(grown)} new; "
        f"{len(files)} multi-process files"
    )
    assert set(statuses) <= {401, 404}
    assert after.status_code == 200
    assert sorted(grown) == []
    assert not [s for s in SECRETS if s in after.text]
    assert files, "the multi-process metric files were not found"
    assert on_disk == []
    absent = [(n, labels) for n, labels in bounded_series() if not present(after.text, n, labels)]
    assert absent == [], "every bounded series is exported from start-up"


def multiproc_files(work: Path) -> list[Path]:
    """prometheus_client's multi-process files (BentoML puts them under BENTOML_HOME)."""
    return sorted((work / "bentoml").rglob("*.db"))
