"""Exceptions of the Callflow Service, one per failure reported to a client.

Each carries the stable `code` a client matches on, the HTTP status that fits,
and a message that names the bad value and what to do. `callflow.responses`
turns them into API Gateway answers, so handlers only raise.
"""

from __future__ import annotations

from typing import Any


class CallflowError(Exception):
    """Base of every error that reaches a client as JSON."""

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or []
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        """Return the JSON body sent to the client."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ValidationError(CallflowError):
    """The request is malformed or breaks a field rule (400)."""

    status = 400
    code = "VALIDATION_ERROR"


class PayloadTooLargeError(CallflowError):
    """An event or the whole request exceeds its size limit (413)."""

    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaTypeError(CallflowError):
    """The request body is not declared as JSON (415)."""

    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class NotFoundError(CallflowError):
    """The event, call or route does not exist (404)."""

    status = 404
    code = "NOT_FOUND"


class ConflictError(CallflowError):
    """An eventId is already stored with different content (409)."""

    status = 409
    code = "EVENT_CONFLICT"


class InvalidNextTokenError(ValidationError):
    """A nextToken was changed, belongs to another query, or cannot be read (400)."""

    code = "INVALID_NEXT_TOKEN"


class StorageUnavailableError(CallflowError):
    """S3 did not respond within the time budget, so the client should retry (503)."""

    status = 503
    code = "STORAGE_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after_seconds: int = 2, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after_seconds))


class AuthError(Exception):
    """A token was rejected. Never sent to the client: the authorizer maps it to 401.

    `reason` is the stable failureReason written to the authorizer's log
    (TOKEN_EXPIRED, INVALID_SIGNATURE, ...). The message never contains the token.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
