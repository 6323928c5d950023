"""JSON errors in OpenAI's shape, and the handlers that guarantee no traceback ever reaches a client.

Every error body is ``{"error": {"message", "type", "param", "code"}}`` (what the ``openai`` client
parses). Library input errors (:class:`mrl.errors.MRLError`) become 400; request bodies that are not
JSON or do not fit the schema become 422; anything unexpected becomes a 500 with a generic message
(and is logged with its traceback server-side: a 500 is a bug).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mrl.errors import MRLError
from mrl.serve.batching import ShuttingDown

log = logging.getLogger("mrl.serve")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
         409: "conflict_error", 413: "request_too_large", 422: "invalid_request_error", 503: "service_unavailable"}


class APIError(Exception):
    """An error answered to the client as ``status`` with a one-line ``message`` naming the fix."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error"), "param": param, "code": code}}


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code=code, param=param), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errs = exc.errors()
    if not errs:
        return "the request body does not match the schema.", None
    e = errs[0]
    loc = [str(p) for p in e.get("loc", ()) if p != "body"]
    where = ".".join(loc) or "body"
    if e.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({e.get('msg', '')}); send a JSON object.", None
    if loc[:1] == ["input"] and any("list[list[int]]" in map(str, x.get("loc", ())) for x in errs):
        # the embeddings input is a union of four shapes and pydantic reports every branch: say what it takes
        return ("input must be a text, a list of texts, or token ids of the served model's tokenizer (a list of integers, or a list of such lists); "
                "mixed lists and other values are refused."), "input"
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return f"{where}: {e.get('msg', 'invalid value')}{more}.", where


def install_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, code=exc.code, param=exc.param)

    @app.exception_handler(ShuttingDown)
    async def _stopping(_: Request, exc: ShuttingDown) -> JSONResponse:
        return error_response(503, str(exc), code="shutting_down", headers={"retry-after": "1"})

    @app.exception_handler(MRLError)
    async def _mrl(_: Request, exc: MRLError) -> JSONResponse:
        return error_response(400, str(exc), code="invalid_value")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(422, message, code="invalid_body", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "no such endpoint; see GET / for the page, POST /v1/embeddings, POST /v1/search, GET /health, GET /metrics." if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error (a bug: the server log has the details).", code="internal_error")
