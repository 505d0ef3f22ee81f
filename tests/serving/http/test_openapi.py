"""/docs.json is a valid OpenAPI document of riskgate, and the Swagger page is riskgate's."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import pytest

from serving.http.commands import EXAMPLE_PAYMENT
from tests.serving.helpers import BACKEND, REVIEWER, low_risk

PUBLIC = {"/healthz", "/livez", "/readyz", "/metrics"}


@pytest.fixture
def doc(client: Any) -> dict[str, Any]:
    response = client.get("/docs.json")
    assert response.status_code == 200
    return dict(response.json())


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_the_document_passes_openapi_spec_validator(doc: dict[str, Any]):
    from openapi_spec_validator import validate

    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"].startswith("3.1")


def test_info_is_riskgates_with_its_real_version(doc: dict[str, Any]):
    info = doc["info"]
    assert info["title"] == "riskgate API"
    assert info["version"] == version("riskgate") != "None"
    assert "riskgate scores card payments" in info["description"]
    assert "BentoML" not in info["description"]
    assert "contact" not in info  # BentoML's own contact is not ours to publish


def test_bearer_keys_are_a_security_scheme_required_everywhere_but_the_public_routes(doc):
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"bearer": []}]
    for path, method, op in _operations(doc):
        names = {p["name"].lower() for p in op.get("parameters", [])}
        assert "authorization" not in names, f"{method} {path}: the key is the scheme's"
        if path in PUBLIC:
            assert op["security"] == [], path
        else:
            assert "security" not in op or op["security"] == [{"bearer": []}], path
            assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"


@pytest.mark.parametrize("path", ["/score", "/score_batch"])
def test_scoring_routes_declare_the_idempotency_key_and_the_demo_example(doc, path: str):
    op = doc["paths"][path]["post"]
    headers = [p for p in op["parameters"] if p["in"] == "header"]
    assert [h["name"] for h in headers] == ["Idempotency-Key"]
    example = op["requestBody"]["content"]["application/json"]["examples"]["demo"]["value"]
    first = example if path == "/score" else example["payments"][0]
    assert first == EXAMPLE_PAYMENT
    assert {"400", "401", "403", "415", "422", "503"} <= set(op["responses"])


def test_every_error_response_has_a_description_and_the_error_body(doc: dict[str, Any]):
    for path, method, op in _operations(doc):
        for code, response in op["responses"].items():
            if int(code) < 400:
                continue
            assert response["description"], f"{method} {path} {code}"
            schema = response["content"]["application/json"]["schema"]
            assert schema.get("$ref") in (
                "#/components/schemas/ErrorBody",
                "#/components/schemas/InvalidArgument",
                "#/components/schemas/InternalServerError",
            ), f"{method} {path} {code}: {schema}"


def test_the_statuses_the_service_answers_are_documented(client: Any, doc: dict[str, Any]):
    """Each refusal a caller can provoke on /score is one the document lists."""
    score = doc["paths"]["/score"]["post"]["responses"]
    bad = {**low_risk("oa-bad"), "amount": -1}
    answers = {
        client.post("/score", json=low_risk("oa-1")).status_code,  # no key
        client.post("/score", json=low_risk("oa-2"), headers=REVIEWER).status_code,
        client.post("/score", json=bad, headers=BACKEND).status_code,
        client.post(
            "/score", content=b"amount=1", headers={**BACKEND, "Content-Type": "text/plain"}
        ).status_code,
    }
    key = {**BACKEND, "Idempotency-Key": "oa-key"}
    assert client.post("/score", json=low_risk("oa-3"), headers=key).status_code == 200
    answers.add(client.post("/score", json=low_risk("oa-4"), headers=key).status_code)
    assert answers == {401, 403, 400, 415, 422}
    assert {str(s) for s in answers} <= set(score)


def test_the_swagger_page_is_titled_riskgate(client: Any):
    page = client.get("/")
    assert page.status_code == 200
    assert "<title>riskgate API</title>" in page.text
    assert "BentoML Prediction Service" not in page.text
    assert "googletagmanager" not in page.text
    assert client.get("/static_content/swagger-ui-bundle.js").status_code == 200
