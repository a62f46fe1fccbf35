"""Retriever function: GET /events, /events/{eventId}, /calls/{callId}/events and /health.

The routes only translate between API Gateway and the callflow package:
callflow.query parses, plans and pages, callflow.store reads S3, and every
CallflowError becomes its JSON error response.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.metrics import MetricUnit

from callflow import secrets as callflow_secrets
from callflow.errors import NotFoundError, StorageUnavailableError
from callflow.events import validate_event_id
from callflow.http import Request, Response, Router
from callflow.observability import bind_request, make_logger, make_metrics, traced_handler
from callflow.query import (
    EventQuery,
    QueryResult,
    decode_next_token,
    encode_next_token,
    parse_call_query,
    parse_list_query,
    reject_unknown_parameters,
    run_query,
)
from callflow.responses import error_handler, json_response, not_found_handler
from callflow.settings import get_settings
from callflow.store import EventStore, make_s3_client

SERVICE_NAME = "retriever"

logger = make_logger(SERVICE_NAME)
metrics = make_metrics(SERVICE_NAME)
router = Router()
on_error = error_handler(logger, SERVICE_NAME)
on_route_not_found = not_found_handler(
    "GET /events, GET /events/{eventId}, GET /calls/{callId}/events or GET /health"
)


@router.get("/events/{eventId}")
def get_event(request: Request, context: Any, eventId: str) -> Response:  # noqa: N803
    started = time.perf_counter()
    # A path parameter may still be percent-encoded. No valid id contains "%",
    # so decoding never alters one.
    event_id = validate_event_id(unquote(eventId))
    reject_unknown_parameters(request.query)

    body = _event_store().get_event_bytes(event_id)
    _log_query(
        {"route": "event", "eventId": event_id},
        result_count=0 if body is None else 1,
        started=started,
        objects_scanned=1,
        list_calls=0,
    )

    if body is None:
        raise NotFoundError(
            f"Event {event_id!r} was not found: check the eventId, or store the event first.",
            code="EVENT_NOT_FOUND",
        )
    # The stored bytes are canonical UTF-8 JSON and go out unchanged.
    return Response(200, body.decode("utf-8"))


@router.get("/events")
def list_events(request: Request, context: Any) -> Response:
    started = time.perf_counter()
    query = parse_list_query(request.query, now=datetime.now(UTC), multi_params=request.multi_query)

    result = _run_query(query)
    body: dict[str, Any] = {"events": result.events, "count": len(result.events)}
    if result.window is not None:
        # The range read, which the client may not have given: without
        # startDate and endDate it is the last 24 hours.
        body["startDate"], body["endDate"] = result.window
    if result.next_cursor is not None:
        body["nextToken"] = encode_next_token(query, result.next_cursor, _pagination_key())

    _log_result(query, result, started)
    return json_response(200, body)


@router.get("/calls/{callId}/events")
def get_call_events(request: Request, context: Any, callId: str) -> Response:  # noqa: N803
    started = time.perf_counter()
    query = parse_call_query(unquote(callId), request.query, multi_params=request.multi_query)
    assert query.call_id is not None

    result = _run_query(query)
    _log_result(query, result, started)

    # Only an empty first page means the call does not exist. A later page can
    # be empty when its index entries point at deleted event objects.
    if not result.events and result.next_cursor is None and query.next_token is None:
        raise NotFoundError(
            f"No events were found for callId {query.call_id!r}: check the callId.",
            code="CALL_NOT_FOUND",
        )

    body: dict[str, Any] = {
        "callId": query.call_id,
        "events": result.events,
        "count": len(result.events),
    }
    if result.next_cursor is not None:
        body["nextToken"] = encode_next_token(query, result.next_cursor, _pagination_key())
    return json_response(200, body)


@router.get("/health")
def get_health(request: Request, context: Any) -> Response:
    reject_unknown_parameters(request.query)
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        _event_store().check_bucket()
    except StorageUnavailableError as error:
        logger.warning("Health check failed", extra={"code": error.code, "error": error.message})
        body = {
            "status": "unhealthy",
            "code": error.code,
            "message": error.message,
            "requestId": request.request_id,
            "timestamp": timestamp,
        }
        return json_response(503, body, headers=error.headers)
    return json_response(200, {"status": "healthy", "timestamp": timestamp})


@metrics.log_metrics
@traced_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bind_request(logger, event, context)
    return router.resolve(event, context, not_found=on_route_not_found, on_error=on_error)


@lru_cache(maxsize=1)
def _event_store() -> EventStore:
    """Create the EventStore on first use and keep it for the execution environment."""
    settings = get_settings()
    if not settings.events_bucket:
        raise RuntimeError("EVENTS_BUCKET is not set, so the retriever cannot read events")
    return EventStore(
        settings.events_bucket,
        make_s3_client(),
        time_index_shards=settings.time_index_shards,
    )


def _pagination_key() -> bytes:
    """Return the HMAC key of nextTokens, read from Secrets Manager (cached)."""
    secret_id = get_settings().pagination_secret_arn
    try:
        secret = callflow_secrets.get_secret_value(secret_id)
    except callflow_secrets.SecretUnavailableError as error:
        logger.error("Reading the pagination key failed", extra={"error": error.message})
        raise StorageUnavailableError(
            "The pagination key could not be read from Secrets Manager: retry the request "
            "after the Retry-After interval."
        ) from error
    return secret.encode("utf-8")


def _run_query(query: EventQuery) -> QueryResult:
    cursor = None
    if query.next_token is not None:
        cursor = decode_next_token(query.next_token, query, _pagination_key())
    return run_query(
        query,
        _event_store(),
        time_index_shards=get_settings().time_index_shards,
        cursor=cursor,
    )


def _log_result(query: EventQuery, result: QueryResult, started: float) -> None:
    _log_query(
        query.log_fields(),
        result_count=len(result.events),
        started=started,
        objects_scanned=result.objects_scanned,
        list_calls=result.list_calls,
    )


def _log_query(
    fields: dict[str, Any],
    *,
    result_count: int,
    started: float,
    objects_scanned: int,
    list_calls: int,
) -> None:
    metrics.add_metric(name="ObjectsScanned", unit=MetricUnit.Count, value=objects_scanned)
    metrics.add_metric(name="ResultCount", unit=MetricUnit.Count, value=result_count)
    logger.info(
        "Query completed",
        extra={
            "query": fields,
            "resultCount": result_count,
            "queryTimeMs": round((time.perf_counter() - started) * 1000, 1),
            "s3ObjectsScanned": objects_scanned,
            "s3ListCalls": list_calls,
        },
    )
