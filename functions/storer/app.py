"""POST /events: validate one event or a batch and store it in S3.

Responses for one event: 201 stored, 200 duplicate (the same content was already
stored), 409 EVENT_CONFLICT (the eventId is stored with different content).
A batch gets a per-event result list and a summary. Its status is 503 if any
event failed to store. Otherwise it is 201 if any event was stored and none
conflicts, 200 if all were duplicates, 409 if all conflict, and 207 for
conflicts mixed with stored or duplicate events. Retrying any request is safe.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from callflow.errors import ConflictError, StorageUnavailableError
from callflow.events import CallEvent, parse_request_body
from callflow.http import Request, Response, Router
from callflow.keys import event_key
from callflow.observability import bind_request, make_logger, make_metrics, traced_handler
from callflow.responses import error_handler, json_response, not_found_handler
from callflow.settings import get_settings
from callflow.store import (
    STATUS_CONFLICT,
    STATUS_DUPLICATE,
    STATUS_STORED,
    EventStore,
    PutResult,
    make_s3_client,
)

SERVICE_NAME = "storer"
STATUS_FAILED = "failed"
OUTCOME_MESSAGES = {
    STATUS_STORED: "Event stored",
    STATUS_DUPLICATE: "Duplicate event skipped",
    STATUS_CONFLICT: "Event conflict",
    STATUS_FAILED: "Event store failed",
}
DEFAULT_RETRY_AFTER_SECONDS = "2"
# The storer responds before Lambda stops it. S3 writes still running then are
# reported failed (503 with Retry-After), and a retry of the request completes
# them safely: events that were stored come back as duplicates.
RESPONSE_MARGIN_SECONDS = 1.5
# Used when the context has no remaining time to read (the template's default timeout).
DEFAULT_TIME_BUDGET_SECONDS = 15.0
MIN_TIME_BUDGET_SECONDS = 0.1

logger = make_logger(SERVICE_NAME)
metrics = make_metrics(SERVICE_NAME)
router = Router()
on_error = error_handler(logger, SERVICE_NAME)
on_route_not_found = not_found_handler("POST /events")
# Runs a request's S3 writes so the handler can stop waiting at its deadline.
request_runner = ThreadPoolExecutor(max_workers=4, thread_name_prefix="storer-request")


@lru_cache(maxsize=1)
def get_store() -> EventStore:
    """Create the EventStore on first use and keep it for the execution environment."""
    settings = get_settings()
    if not settings.events_bucket:
        raise RuntimeError("EVENTS_BUCKET is not set; the storer cannot store events")
    return EventStore(
        settings.events_bucket,
        make_s3_client(),
        time_index_shards=settings.time_index_shards,
    )


@router.post("/events")
def post_events(request: Request, context: Any) -> Response:
    started = time.perf_counter()
    events, is_batch = parse_request_body(
        request.body,
        is_base64=request.is_base64_encoded,
        content_type=request.header("content-type"),
        settings=get_settings(),
    )

    store = get_store()
    outcomes = _store_within_budget(store, events, context)
    for event, outcome in zip(events, outcomes):
        _log_outcome(event, outcome, store.bucket, started)
    _add_outcome_metrics(events, outcomes)

    if is_batch:
        return _batch_response(events, outcomes, request.request_id)
    return _single_response(outcomes[0])


def _single_response(outcome: PutResult | StorageUnavailableError) -> Response:
    if isinstance(outcome, StorageUnavailableError):
        raise outcome

    if outcome.status == STATUS_CONFLICT:
        raise ConflictError(
            _conflict_message(outcome),
            details=[
                {
                    "eventId": outcome.event_id,
                    "s3Key": outcome.s3_key,
                    "differingFields": list(outcome.differing_fields),
                }
            ],
        )

    body = {"eventId": outcome.event_id, "s3Key": outcome.s3_key, "status": outcome.status}
    return json_response(201 if outcome.status == STATUS_STORED else 200, body)


def _batch_response(
    events: list[CallEvent],
    outcomes: list[PutResult | StorageUnavailableError],
    request_id: str | None,
) -> Response:
    results: list[dict[str, Any]] = []
    summary = {STATUS_STORED: 0, STATUS_DUPLICATE: 0, STATUS_CONFLICT: 0, STATUS_FAILED: 0}
    retry_after = DEFAULT_RETRY_AFTER_SECONDS
    for index, (event, outcome) in enumerate(zip(events, outcomes)):
        # A failed event reports the key it will have once a retry stores it.
        result: dict[str, Any] = {
            "index": index,
            "eventId": event.event_id,
            "s3Key": event_key(event.event_id),
        }
        if isinstance(outcome, StorageUnavailableError):
            result.update(status=STATUS_FAILED, code=outcome.code, message=outcome.message)
            retry_after = outcome.headers.get("Retry-After", retry_after)
        else:
            result.update(s3Key=outcome.s3_key, status=outcome.status)
            if outcome.status == STATUS_CONFLICT:
                result.update(
                    code=ConflictError.code,
                    message=_conflict_message(outcome),
                    differingFields=list(outcome.differing_fields),
                )
        summary[result["status"]] += 1
        results.append(result)

    body: dict[str, Any] = {"results": results, "summary": summary}
    total = len(results)
    if summary[STATUS_FAILED]:
        body = {
            "code": StorageUnavailableError.code,
            "message": (
                f"{summary[STATUS_FAILED]} of {total} events could not be stored because storage "
                "is unavailable. Retry the whole batch: stored events come back as duplicates."
            ),
            "requestId": request_id,
            **body,
        }
        return json_response(503, body, {"Retry-After": retry_after})
    if summary[STATUS_CONFLICT] == total:
        body = {
            "code": ConflictError.code,
            "message": "Every event of the batch is already stored with different content.",
            "requestId": request_id,
            **body,
        }
        return json_response(409, body)
    if summary[STATUS_CONFLICT]:
        return json_response(207, body)
    if summary[STATUS_STORED]:
        return json_response(201, body)
    return json_response(200, body)


def _store_within_budget(
    store: EventStore, events: list[CallEvent], context: Any
) -> list[PutResult | StorageUnavailableError]:
    budget = _time_budget_seconds(context)
    writes = request_runner.submit(store.put_events, events)
    try:
        return writes.result(timeout=budget)
    except TimeoutError:
        logger.error(
            "Storing did not finish within the time budget",
            extra={"timeBudgetMs": round(budget * 1000), "eventCount": len(events)},
        )
        error = StorageUnavailableError(
            f"S3 did not finish the writes within {budget:.1f} s. Retry the request: "
            "events already stored come back as duplicates."
        )
        return [error] * len(events)


def _conflict_message(outcome: PutResult) -> str:
    """Build the message of a conflict, for a single event and for one event of a batch alike."""
    return (
        f"Event {outcome.event_id} is already stored with different content "
        f"({_field_list(outcome)}). Send a new eventId for a new event, or resend the "
        "stored content unchanged."
    )


def _field_list(outcome: PutResult) -> str:
    """Name the differing fields of a conflict for its message."""
    fields = ", ".join(outcome.differing_fields)
    return f"differing fields: {fields}" if fields else "the same fields, other bytes"


def _time_budget_seconds(context: Any) -> float:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    total = remaining_ms() / 1000 if callable(remaining_ms) else DEFAULT_TIME_BUDGET_SECONDS
    return max(total - RESPONSE_MARGIN_SECONDS, MIN_TIME_BUDGET_SECONDS)


def _add_outcome_metrics(
    events: list[CallEvent], outcomes: list[PutResult | StorageUnavailableError]
) -> None:
    stored = [
        event
        for event, outcome in zip(events, outcomes)
        if isinstance(outcome, PutResult) and outcome.status == STATUS_STORED
    ]
    statuses = [outcome.status for outcome in outcomes if isinstance(outcome, PutResult)]
    metrics.add_metric(name="EventsStored", unit=MetricUnit.Count, value=len(stored))
    metrics.add_metric(
        name="BytesStored", unit=MetricUnit.Bytes, value=sum(len(e.to_json_bytes()) for e in stored)
    )
    metrics.add_metric(
        name="DuplicatesSkipped", unit=MetricUnit.Count, value=statuses.count(STATUS_DUPLICATE)
    )
    metrics.add_metric(name="Conflicts", unit=MetricUnit.Count, value=statuses.count(STATUS_CONFLICT))


def _log_outcome(
    event: CallEvent,
    outcome: PutResult | StorageUnavailableError,
    bucket: str,
    started: float,
) -> None:
    # Log only ids, the event type and sizes, because payload, from and to may
    # contain personal data such as phone numbers.
    fields: dict[str, Any] = {
        "eventId": event.event_id,
        "eventType": event.event_type,
        "callId": event.call_id,
        "s3Bucket": bucket,
        "eventSize": len(event.to_json_bytes()),
        "processingTimeMs": round((time.perf_counter() - started) * 1000, 1),
    }
    if isinstance(outcome, StorageUnavailableError):
        fields.update(status=STATUS_FAILED, code=outcome.code, error=outcome.message)
        logger.error(OUTCOME_MESSAGES[STATUS_FAILED], extra=fields)
        return

    fields.update(s3Key=outcome.s3_key, status=outcome.status)
    if outcome.status == STATUS_CONFLICT:
        # Top-level names only: the names inside payload are the producer's own.
        top_level = {name.split(".", 1)[0] for name in outcome.differing_fields}
        fields["differingFields"] = sorted(top_level)
        logger.warning(OUTCOME_MESSAGES[STATUS_CONFLICT], extra=fields)
    else:
        logger.info(OUTCOME_MESSAGES[outcome.status], extra=fields)


@metrics.log_metrics
@traced_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bind_request(logger, event, context)
    return router.resolve(event, context, not_found=on_route_not_found, on_error=on_error)
