"""RISKGATE_MAX_BODY_BYTES, enforced before any route reads the body: a declared length above it
is refused at once, and a body without one (chunked) is counted as it arrives, so a caller
cannot make a worker buffer megabytes of JSON it will refuse anyway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse

Receive = Callable[[], Awaitable[dict[str, Any]]]


def too_large(limit: int) -> JSONResponse:
    error = {
        "error": f"request body larger than {limit} bytes (RISKGATE_MAX_BODY_BYTES)",
        "detail": [{"loc": ["body"], "limit": limit}],
    }
    return JSONResponse(error, status_code=413, headers={"Connection": "close"})


async def limited(
    scope: Any, receive: Receive, send: Any, limit: int, app: Callable[..., Awaitable[None]]
) -> None:
    """Run `app` with the body held to `limit` bytes; 413 (naming the body) otherwise."""
    headers = dict(scope.get("headers") or [])
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            size = limit + 1
        if size > limit:
            await too_large(limit)(scope, receive, send)
            return
        await app(scope, receive, send)
        return
    if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
        await app(scope, receive, send)
        return
    # no declared length: read the body here, counting, and hand it on whole
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        total += len(message.get("body", b""))
        if total > limit:
            await too_large(limit)(scope, receive, send)
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    await app(scope, replay, send)
