"""JSON responses of the Callflow API, and the mapping of errors to them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from callflow.errors import CallflowError, NotFoundError
from callflow.http import JSON_CONTENT_TYPE, ErrorHandler, NotFoundHandler, Request, Response

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    """Build a Response with `body` serialised as compact UTF-8 JSON."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(status, text, JSON_CONTENT_TYPE, dict(headers or {}))


def error_response(error: CallflowError, request_id: str | None = None) -> Response:
    """Build the JSON error response for `error`, with its headers such as Retry-After.

    The body carries `request_id` as requestId, as API Gateway's own error
    responses do, so that a client can quote it.
    """
    body: dict[str, Any] = error.to_body()
    if request_id:
        body["requestId"] = request_id
    return json_response(error.status, body, error.headers)


def error_handler(logger: Logger, function: str) -> ErrorHandler:
    """Build the Router error handler of `function`.

    A CallflowError becomes its own response and is logged by code and status
    only, because its message and details can repeat client values such as
    phone numbers. Any other exception is logged with its traceback and
    becomes a 500 INTERNAL_ERROR.
    """

    def handle(request: Request, context: Any, error: Exception) -> Response:
        request_id = request.request_id or getattr(context, "aws_request_id", None) or "unknown"
        if not isinstance(error, CallflowError):
            logger.exception("Unexpected error", extra={"code": "INTERNAL_ERROR"})
            unexpected = CallflowError(
                f"The {function} failed unexpectedly. Retrying is safe. If it keeps failing, "
                f"report requestId {request_id}."
            )
            return error_response(unexpected, request_id)

        fields = {"code": error.code, "httpStatus": error.status}
        if error.status >= 500:
            logger.error("Request failed", extra=fields)
        else:
            logger.warning("Request rejected", extra=fields)
        return error_response(error, request_id)

    return handle


def not_found_handler(routes: str) -> NotFoundHandler:
    """Build the Router handler that returns 404 ROUTE_NOT_FOUND, naming the `routes` served."""

    def handle(request: Request) -> Response:
        error = NotFoundError(
            f"No route matches {request.method} {request.path}: use {routes}.",
            code="ROUTE_NOT_FOUND",
        )
        return error_response(error, request.request_id)

    return handle
