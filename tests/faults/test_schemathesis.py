"""Schemathesis against both OpenAPI documents of the service, in-process (ASGI).

BentoML's /docs.json describes /score, /score_batch and the infrastructure routes; the FastAPI
routes are described at /api/openapi.json. Every operation gets positive and negative cases
(bounded: EXAMPLES each, no shrinking, derandomized); every case is sent twice: with the key
of a role allowed to call it, and with a rotating other identity (another role, no key, a
wrong key, or the header schemathesis generated). Over >= 1,000 requests:

  * no response is a server error (5xx);
  * every response whose status the schema declares conforms to the declared schema;
  * statuses the schema does not declare are listed (a warning), per operation.

/metrics is left out: Prometheus text, not JSON (tests/faults/test_metrics_labels.py covers it).
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    REVIEWER,
    _forget_bentoml_http_metrics,
    high_risk,
    low_risk,
)

pytestmark = pytest.mark.slow

MIN_REQUESTS = 1_000
EXAMPLES = {"positive": 30, "negative": 15}  # per operation and mode
BENTOML_PATHS = ("/score", "/score_batch", "/healthz", "/livez", "/readyz")
WRONG = {"Authorization": "Bearer not-a-key-of-this-service-0123"}
ROTATION = ("no-key", "wrong-key", "backend", "reviewer", "admin", "generated")
KEYS = {"backend": BACKEND, "reviewer": REVIEWER, "admin": ADMIN, "wrong-key": WRONG}


def allowed_role(method: str, path: str) -> str | None:
    """The role a case is sent with first (the intended one for the operation)."""
    if path in ("/healthz", "/livez", "/readyz"):
        return None
    if path in ("/score", "/score_batch", "/labels") or path.startswith("/payments"):
        return "backend"
    if path.startswith("/admin") or path == "/labels/export":
        return "admin"
    return "reviewer"  # /cases..., /whoami


@dataclass
class Report:
    requests: int = 0
    cases: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    off_schema: dict[tuple[str, int], list[str]] = field(default_factory=lambda: defaultdict(list))
    undeclared: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    undeclared_example: dict[tuple[str, int], str] = field(default_factory=dict)
    by_operation: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    not_generated: list[str] = field(default_factory=list)
    nothing_to_negate: list[str] = field(default_factory=list)


def _request(client: Any, case: Any, identity: str) -> Any:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = {
        k: v
        for k, v in (kwargs.pop("headers", None) or {}).items()
        if k.lower() not in ("authorization", "connection")
        or (identity == "generated" and k.lower() == "authorization")
    }
    headers.update(KEYS.get(identity, {}))
    if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
        kwargs["content"] = kwargs.pop("data")
    return client.request(headers=headers, **kwargs)


def describe(exc: BaseException) -> str:
    """The failures of a schemathesis FailureGroup (or any error), each in a few lines."""
    parts = getattr(exc, "exceptions", None) or (exc,)
    return " | ".join(" ".join(str(e).split())[:400] for e in parts)


def _check(report: Report, case: Any, response: Any, identity: str) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    op = case.operation
    report.requests += 1
    report.by_status[response.status_code] += 1
    report.by_operation[op.label][response.status_code] += 1
    where = f"{op.label} as {identity}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 500:
        body = case.body if isinstance(case.body, dict | list) else repr(case.body)
        report.server_errors.append(f"{where}\n    {case.formatted_path} {str(body)[:400]}")
    else:
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
            report.server_errors.append(f"{where} ({describe(exc)})")
    declared = set(op.responses.status_codes)
    if str(response.status_code) not in declared and "default" not in declared:
        report.undeclared[op.label][response.status_code] += 1
        report.undeclared_example.setdefault((op.label, response.status_code), where)
        return
    try:
        case.validate_response(response, checks=[response_schema_conformance])
    except (Exception, BaseExceptionGroup) as exc:
        key = (op.label, response.status_code)
        if len(report.off_schema[key]) < 3:
            report.off_schema[key].append(f"{where}\n    {describe(exc)}")
        else:
            report.off_schema[key].append("")


def with_known_currencies(strategy: Any) -> Any:
    """Positive payments with an ISO 4217 currency the service knows.

    The schema says only "3 characters" (the list of codes is checked in a validator), so
    nearly every generated payment would be refused with 400 and the scoring path (model,
    policy, durable write, the 200 response) would hardly be exercised.
    """
    from data.schema import CURRENCIES

    def fix(pair: tuple[Any, str]) -> Any:
        case, currency = pair
        body = case.body
        payments = body.get("payments") if isinstance(body, dict) else None
        for p in payments if isinstance(payments, list) else [body]:
            if isinstance(p, dict) and "currency" in p:
                p["currency"] = currency
        return case

    return st.tuples(strategy, st.sampled_from(sorted(CURRENCIES))).map(fix)


def fuzz_operation(client: Any, op: Any, report: Report, rotation: Iterator[str]) -> None:
    from schemathesis.generation import GenerationMode

    role = allowed_role(op.method.upper(), op.path)
    for mode, n in EXAMPLES.items():
        generation_mode = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
        strategy = op.as_strategy(generation_mode=generation_mode)
        if mode == "positive" and op.path in ("/score", "/score_batch"):
            strategy = with_known_currencies(strategy)

        @settings(
            max_examples=n,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            report.cases += 1
            for identity in (role or "no-key", next(rotation)):
                _check(report, case, _request(client, case, identity), identity)

        try:
            run()
        except Unsatisfiable:
            if mode == "positive":
                report.not_generated.append(op.label)
            else:  # an operation without inputs has nothing to negate
                report.nothing_to_negate.append(op.label)


@pytest.fixture(scope="module")
def report(module_env: dict[str, str]) -> Report:
    """Run the whole fuzzing once; the tests below read its results."""
    import schemathesis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from serving.http.service import Riskgate

    _forget_bentoml_http_metrics()
    out = Report()
    try:
        # 5xx must come back as responses (not as exceptions raised into the test).
        with TestClient(Riskgate.to_asgi(), raise_server_exceptions=False) as client:
            for tag in ("st-a", "st-b"):  # a settled payment and an open case to find
                assert client.post("/score", json=low_risk(tag), headers=BACKEND).status_code == 200
                assert client.post("/score", json=high_risk(tag + "h"), headers=BACKEND).is_success
            bentoml_doc = client.get("/docs.json").json()
            fastapi_doc = client.get("/api/openapi.json").json()
            bentoml_doc["paths"] = {
                p: v for p, v in bentoml_doc["paths"].items() if p in BENTOML_PATHS
            }
            rotation = itertools.cycle(ROTATION)
            for doc in (bentoml_doc, fastapi_doc):
                schema = schemathesis.openapi.from_dict(doc)
                for result in schema.get_all_operations():
                    fuzz_operation(client, result.ok(), out, rotation)
    finally:
        _forget_bentoml_http_metrics()
    print(
        f"\nschemathesis: {out.cases} cases, {out.requests} requests, "
        f"statuses {dict(sorted(out.by_status.items()))}, server errors "
        f"{len(out.server_errors)}, off-schema {sum(len(v) for v in out.off_schema.values())}"
    )
    for label, statuses in sorted(out.by_operation.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")
    return out


def test_at_least_1000_generated_requests(report):
    assert report.requests >= MIN_REQUESTS, report
    assert not report.not_generated, report.not_generated


def test_no_server_errors(report):
    assert report.server_errors == [], "\n".join(report.server_errors[:20])


def test_declared_responses_conform_to_the_schema(report):
    lines = [
        f"{op} {status}: {len(found)} responses off the schema, e.g.\n  "
        + "\n  ".join(f for f in found if f)
        for (op, status), found in sorted(report.off_schema.items())
    ]
    assert lines == [], "\n".join(lines)


def test_undeclared_statuses_are_listed(report):
    """Not a failure by itself: the responses the schema should declare (see the warning)."""
    listing = "; ".join(
        f"{op}: {', '.join(map(str, sorted(codes)))}"
        for op, codes in sorted(report.undeclared.items())
    )
    if listing:
        warnings.warn(f"statuses the OpenAPI schema does not declare: {listing}", stacklevel=1)
    print(f"\nundeclared statuses: {listing or 'none'}")
    for key in sorted(report.undeclared_example):
        print(f"  e.g. {report.undeclared_example[key][:240]}")
