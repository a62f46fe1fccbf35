"""JSON responses of the Callflow API, and the mapping of errors to them."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response

from callflow.errors import CallflowError

JSON_CONTENT_TYPE = "application/json"


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    """Build a Response with `body` serialised as compact UTF-8 JSON."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(
        status_code=status,
        content_type=JSON_CONTENT_TYPE,
        body=text,
        headers=dict(headers or {}),
    )


def error_response(error: CallflowError) -> Response:
    """Build the JSON error response for `error`, with its headers such as Retry-After."""
    body: dict[str, Any] = error.to_body()
    return json_response(error.status, body, error.headers)
