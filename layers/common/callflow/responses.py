"""JSON responses of the Callflow API, and the mapping of errors to them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from callflow.errors import CallflowError
from callflow.http import JSON_CONTENT_TYPE, ErrorHandler, Request, Response

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    """Build a Response with `body` serialised as compact UTF-8 JSON."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(status, text, JSON_CONTENT_TYPE, dict(headers or {}))


def error_response(error: CallflowError, request_id: str | None = None) -> Response:
    """Build the JSON error response for `error`, with its headers such as Retry-After.

    The body carries `request_id` as requestId, so that a client can quote
    it; API Gateway's error responses carry it too.
    """
    body: dict[str, Any] = error.to_body()
    if request_id:
        body["requestId"] = request_id
    return json_response(error.status, body, error.headers)


def logged_error_response(logger: Logger, error: CallflowError, request_id: str | None = None) -> Response:
    """Log a rejected or failed request by code and status, and build its error response.

    Only the code is logged because the message and details can repeat
    client values, such as phone numbers.
    """
    fields = {"code": error.code, "httpStatus": error.status}
    if error.status >= 500:
        logger.error("Request failed", extra=fields)
    else:
        logger.warning("Request rejected", extra=fields)
    return error_response(error, request_id)


def unexpected_error_response(logger: Logger, function: str, request_id: str) -> Response:
    """Log the exception being handled with its traceback and build a 500 INTERNAL_ERROR."""
    logger.exception("Unexpected error", extra={"code": "INTERNAL_ERROR"})
    return error_response(
        CallflowError(
            f"The {function} failed unexpectedly. Retrying is safe; if it keeps failing, "
            f"report requestId {request_id}."
        ),
        request_id,
    )


def error_handler(logger: Logger, function: str) -> ErrorHandler:
    """Return the Router error handler of `function`: a CallflowError becomes its
    response, any other exception a logged 500 INTERNAL_ERROR."""

    def handle(request: Request, context: Any, error: Exception) -> Response:
        request_id = request.request_id or getattr(context, "aws_request_id", None) or "unknown"
        if isinstance(error, CallflowError):
            return logged_error_response(logger, error, request_id)
        return unexpected_error_response(logger, function, request_id)

    return handle
