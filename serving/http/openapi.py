"""riskgate's OpenAPI document at /docs.json and its Swagger page at /.

BentoML 1.4 composes /docs.json itself (`_bentoml_sdk.service.openapi.generate_spec`): its
infrastructure routes, the typed `@bentoml.api` routes (/score, /score_batch) and the paths and
components of every mounted FastAPI app (FastAPI's own `get_openapi`), under `openapi: 3.0.2`.
FastAPI writes JSON Schema 2020-12 (`type: 'null'`, as OpenAPI 3.1 does), so the whole was
invalid 3.0; `info` was BentoML's (version "None", its README as description, its contact), and
neither the Bearer keys nor the `Idempotency-Key` header nor the errors of /score were declared.
`riskgate_openapi` rewrites the document once per request (it is small): OpenAPI 3.1.0, with
BentoML's `nullable` turned into 3.1's `null` type, riskgate's info, a Bearer security scheme on
every route but the public ones, the header, examples from the demo payment, and every error.
The Swagger page is BentoML's own bundle (served from its static folder: no CDN, no tag manager)
under riskgate's title.
"""

from __future__ import annotations

import copy
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from serving.http.commands import EXAMPLE_PAYMENT

OPENAPI_VERSION = "3.1.0"
TITLE = "riskgate API"
PUBLIC = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
SCORING = ("/score", "/score_batch")
BEARER = "bearer"

DESCRIPTION = """\
riskgate scores card payments for fraud in milliseconds: `POST /score` answers approve (settle
now), review (held; a case joins the review queue, riskiest money first, with its reasons in
plain words) or decline. Reviewers decide cases through `/cases`; their decisions and the
chargebacks posted to `/labels` become labels for the next model (`/labels/export`).

Every route but `/healthz`, `/livez`, `/readyz` and `/metrics` needs `Authorization: Bearer KEY`
(`RISKGATE_API_KEYS`: roles backend, reviewer, supervisor, admin, merchant). No key or an
unknown key: 401; a key of another role: 403. Errors are JSON `{"error": "...", "detail": [...]}`
where `detail` lists the offending fields (`loc`), never their values. Times are RFC 3339 with
an offset (`2026-12-02T03:50:00Z`).
"""

SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "an API key from RISKGATE_API_KEYS (role[:name]:KEY); the role decides the "
    "routes it may call",
}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key with the same body returns the first response again "
    "(`replayed: true`) and creates nothing; the same key with another body gets 422. "
    "1-200 characters (1-190 on /score_batch); never a card number (400).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    "example": "demo-0001",
}

DETAIL_SCHEMA: dict[str, Any] = {
    "description": "the offending fields: a list of {loc, msg, type}",
    "type": ["array", "string", "null"],
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "what is wrong, in words"},
        "detail": DETAIL_SCHEMA,
    },
    "required": ["error"],
}

# status -> what it means on /score and /score_batch (BentoML's @api takes no `responses=`)
SCORING_ERRORS = {
    "400": "the body breaks the payment contract (detail names the fields), a bad "
    "Idempotency-Key, or a batch of the wrong size or with a repeated transaction_id; "
    "nothing is stored",
    "401": "missing or unknown API key",
    "403": "not a backend key",
    "415": "not a JSON body (Content-Type must be application/json)",
    "422": "Idempotency-Key reused with another body",
    "500": "unexpected error (nothing is half-written)",
    "503": "the database is unavailable or the service is starting or stopping: nothing "
    "stored, retry with the same Idempotency-Key",
}
OTHER_ERRORS = {
    "400": "the body or a parameter is not valid (detail names the fields)",
    "401": "missing or unknown API key",
    "403": "this key's role may not call this route",
    "404": "no such case or payment",
    "409": "conflict: the case is decided, claimed by someone else, or the reload was refused",
    "422": "the request is well-formed but refused (detail names the field)",
    "503": "the database is unavailable or the service is starting: nothing changed, retry",
}


def package_version() -> str:
    try:
        return version("riskgate")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
        return "0+unknown"


def _walk(node: Any) -> None:
    """BentoML's 3.0 schemas say `nullable: true`; 3.1 (JSON Schema) says `type: [T, 'null']`."""
    if isinstance(node, dict):
        if node.pop("nullable", False):
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
                if "enum" in node and None not in node["enum"]:
                    node["enum"] = [*node["enum"], None]
        for value in node.values():
            _walk(value)
    elif isinstance(node, list):
        for value in node:
            _walk(value)


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete") and isinstance(op, dict):
                out.append((path, method, op))
    return out


def riskgate_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's generated document -> a valid OpenAPI 3.1 document of riskgate (a copy)."""
    spec = copy.deepcopy(spec)
    spec["openapi"] = OPENAPI_VERSION
    spec["info"] = {
        "title": TITLE,
        "version": package_version(),
        "description": DESCRIPTION,
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    }
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorBody"] = copy.deepcopy(ERROR_SCHEMA)
    if "InvalidArgument" in schemas:  # BentoML says `detail` is a string; a list is sent
        schemas["InvalidArgument"].setdefault("properties", {})["detail"] = copy.deepcopy(
            DETAIL_SCHEMA
        )
    components["securitySchemes"] = {BEARER: SECURITY_SCHEME}
    spec["security"] = [{BEARER: []}]
    for path, _method, op in _operations(spec):
        # the key is the security scheme's business, not a parameter of each route
        params = [
            p for p in op.get("parameters", []) if str(p.get("name", "")).lower() != "authorization"
        ]
        if params:
            op["parameters"] = params
        else:
            op.pop("parameters", None)
        responses = op.setdefault("responses", {})
        if path in PUBLIC:
            op["security"] = []
            continue
        if path in SCORING:
            op["parameters"] = [*op.get("parameters", []), IDEMPOTENCY_KEY]
            for code, text in SCORING_ERRORS.items():
                responses[code] = _error(text)
            responses.pop("404", None)  # BentoML's generic entry: /score never answers 404
        else:
            for code in ("401", "403", "503"):
                responses.setdefault(code, _error(OTHER_ERRORS[code]))
            for code in list(responses):
                if code in OTHER_ERRORS:
                    responses[code] = _error(OTHER_ERRORS[code])
    _examples(spec)
    _walk(spec)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return spec


def _examples(spec: dict[str, Any]) -> None:
    """Request examples from the demo payment (`riskgate serve` prints the same curl)."""
    payment = dict(EXAMPLE_PAYMENT)
    second = {**payment, "transaction_id": "demo-0002", "amount": 1250.0}
    bodies = {"/score": payment, "/score_batch": {"payments": [payment, second]}}
    for path, body in bodies.items():
        op = spec.get("paths", {}).get(path, {}).get("post")
        if op is None:
            continue
        media = op.setdefault("requestBody", {}).setdefault("content", {})
        media.setdefault("application/json", {})["examples"] = {
            "demo": {"summary": "the demo payment", "value": body}
        }


def swagger_page() -> bytes:
    """BentoML's Swagger UI bundle under riskgate's title (its static_content, no tag manager)."""
    html = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{TITLE}</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""
    return html.encode()


class OpenAPIPatch:
    """ASGI middleware: riskgate's /docs.json (via `riskgate_openapi`) and Swagger page at /."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path == "/" and scope.get("method") in ("GET", "HEAD"):
            body = swagger_page()
            headers = [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if path != "/docs.json":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(chunks)
                    if start.get("status") == 200:
                        body = json.dumps(riskgate_openapi(json.loads(body))).encode()
                    headers = [
                        (k, v) for k, v in start.get("headers", []) if k != b"content-length"
                    ]
                    headers.append((b"content-length", str(len(body)).encode()))
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
