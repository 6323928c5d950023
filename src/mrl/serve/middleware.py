"""One pure ASGI middleware in front of every route: metrics, bearer-key auth, body-size limit.

Order per request: time it and count it (whatever the outcome); refuse a missing or wrong key with
401 (compared with :func:`hmac.compare_digest`, constant time) on every path but ``/health`` and the
static page shell; refuse a body over the limit with 413 before the app reads it (by its
``Content-Length``, or while buffering a chunked body). A pure ASGI class rather than Starlette's
``BaseHTTPMiddleware``: it adds no task or stream per request, which keeps HTTP overhead low.

It is also the last line of defence: an exception the app re-raises after its JSON 500 is not
logged a second time, and a request cancelled by uvicorn at the end of the shutdown drain window
gets a JSON 503 (``code: shutting_down``) instead of a plain-text 500.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from mrl.serve.errors import error_body
from mrl.serve.metrics import ServeMetrics

log = logging.getLogger("mrl.serve")
Scope = dict[str, Any]
PUBLIC_PATHS = ("/health", "/", "/favicon.ico")  # the page shell holds no data: its API calls carry the key


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": raw})


class ServeMiddleware:
    """Wraps the FastAPI app. ``api_key=None`` disables auth."""

    def __init__(self, app: Any, *, metrics: ServeMetrics, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body_bytes
        self.key = f"Bearer {api_key}".encode() if api_key else None

    def _authorized(self, scope: Scope) -> bool:
        if self.key is None:
            return True
        path = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith("/static/"):
            return True
        given = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        return hmac.compare_digest(given, self.key)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}
        started = {"yes": False}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                started["yes"] = True
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self._handle(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the shutdown drain window ends: answer them
            # with a JSON 503 (retry elsewhere) instead of uvicorn's plain-text 500, and end the task.
            if started["yes"]:
                raise
            await _send_json(send_wrapper, 503, error_body(503, "the server is shutting down and this request did not finish within its drain window; retry it (on another replica).",
                                                           code="shutting_down"), [(b"retry-after", b"1"), (b"connection", b"close")])
        except Exception:
            # FastAPI's catch-all handler (mrl.serve.errors) has already logged the traceback and sent the JSON 500;
            # Starlette re-raises it for servers to log again: swallow it here so every 500 is logged once.
            if not started["yes"]:
                log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
                await _send_json(send_wrapper, 500, error_body(500, "internal server error (a bug: the server log has the details).", code="internal_error"))
        finally:
            self.metrics.inflight.dec()
            self.metrics.observe_request(scope.get("path", ""), scope.get("method", ""), status["code"], time.perf_counter() - t0)

    async def _handle(self, scope: Scope, receive: Any, send: Any) -> None:
        if not self._authorized(scope):
            await _send_json(send, 401, error_body(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'.", code="invalid_api_key"),
                             [(b"www-authenticate", b"Bearer")])
            return
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                await _send_json(send, 400, error_body(400, "the Content-Length header is not a number.", code="bad_request"))
                return
            if too_big:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # A chunked body: buffer it (up to the limit), then replay it to the app.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body:
                await self._too_large(send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def receive_replay() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        await self.app(scope, receive_replay, send)

    async def _too_large(self, send: Any) -> None:
        await _send_json(send, 413, error_body(413, f"the request body exceeds {self.max_body} bytes; send fewer or shorter inputs per request.", code="body_too_large"),
                         [(b"connection", b"close")])
