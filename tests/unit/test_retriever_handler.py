"""The retriever function invoked with the API Gateway fixtures in events/, under moto S3."""

from __future__ import annotations

import copy
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from callflow import secrets as callflow_secrets
from callflow import store as store_module
from callflow.events import CallEvent, parse_event
from callflow.keys import event_key
from callflow.settings import get_settings
from callflow.store import EventStore
from tests.support import load_case, load_fixture, load_handler

BUCKET = "callflow-retriever-test"
SHARDS = 4
PAGINATION_SECRET_ARN = (
    "arn:aws:secretsmanager:us-east-1:000000000000:secret:callflow/test/pagination-AbCdEf"
)
PAGINATION_SECRET = "unit-test-pagination-key"
MAX_EVENT_BYTES = 64 * 1024
CASES = ["sip-basic-call.json", "contact-center-transfer.json", "pbx-unanswered-call.json"]


@dataclass
class FakeLambdaContext:
    function_name: str = "callflow-retriever"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:callflow-retriever"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "0f2b7c9e-lambda-request-id"
    log_group_name: str = "/aws/lambda/callflow-retriever"
    log_stream_name: str = "2026/03/04/[$LATEST]0123456789abcdef"


@dataclass
class Stored:
    """The events of the three sample cases, stored through EventStore."""

    by_call: dict[str, list[CallEvent]]
    s3_client: Any

    @property
    def all_events(self) -> list[CallEvent]:
        return [event for events in self.by_call.values() for event in events]


@pytest.fixture
def environment(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("EVENTS_BUCKET", BUCKET)
    monkeypatch.setenv("TIME_INDEX_SHARDS", str(SHARDS))
    monkeypatch.setenv("PAGINATION_SECRET_ARN", PAGINATION_SECRET_ARN)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def secret_reads(monkeypatch) -> list[str]:
    """Replace Secrets Manager with a fixed pagination key and record the secret ids read."""
    reads: list[str] = []

    def fake_get_secret_value(secret_id: str, *, max_age_seconds: int = 300) -> str:
        reads.append(secret_id)
        return PAGINATION_SECRET

    monkeypatch.setattr(callflow_secrets, "get_secret_value", fake_get_secret_value)
    return reads


@pytest.fixture
def stored(environment, secret_reads) -> Iterator[Stored]:
    with mock_aws():
        # The handler's client must be created inside the mock.
        store_module.make_s3_client.cache_clear()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        store = EventStore(BUCKET, client, time_index_shards=SHARDS)

        by_call: dict[str, list[CallEvent]] = {}
        for name in CASES:
            events = [parse_event(raw, max_event_bytes=MAX_EVENT_BYTES) for raw in load_case(name)]
            results = store.put_events(events)
            statuses = [getattr(result, "status", None) for result in results]
            assert statuses == ["stored"] * len(events)
            by_call[events[0].call_id] = events

        yield Stored(by_call=by_call, s3_client=client)
        store_module.make_s3_client.cache_clear()


@pytest.fixture
def retriever(stored) -> ModuleType:
    return load_handler("retriever")


@pytest.fixture
def log_output(retriever) -> Iterator[io.StringIO]:
    """Send the JSON log lines of the retriever and the callflow package to a buffer.

    The handlers are shared with other tests, so their streams are restored afterwards.
    """
    buffer = io.StringIO()
    previous_streams = []
    for name in ("retriever", "callflow"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                previous = handler.setStream(buffer)
                # setStream returns None when the handler already writes to the buffer.
                if previous is not None:
                    previous_streams.append((handler, previous))

    yield buffer

    for handler, stream in previous_streams:
        handler.setStream(stream)


def invoke(
    module: ModuleType, event: dict[str, Any]
) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
    """Call the handler and return the status, the decoded JSON body and the response headers."""
    response = module.lambda_handler(event, FakeLambdaContext())
    assert response.get("isBase64Encoded") in (False, None)

    headers: dict[str, str] = {}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = values[-1]
    for name, value in (response.get("headers") or {}).items():
        headers[name.lower()] = value

    body = response["body"]
    if headers.get("content-type") == "application/json":
        return response["statusCode"], json.loads(body), headers
    return response["statusCode"], body, headers


def with_query(fixture: str, params: dict[str, str] | None) -> dict[str, Any]:
    event = copy.deepcopy(load_fixture(fixture))
    event["queryStringParameters"] = params
    event["multiValueQueryStringParameters"] = (
        {name: [value] for name, value in params.items()} if params else None
    )
    return event


def with_path(fixture: str, path: str, path_parameters: dict[str, str]) -> dict[str, Any]:
    event = copy.deepcopy(load_fixture(fixture))
    event["path"] = path
    event["requestContext"]["path"] = "/v1" + path
    event["pathParameters"] = path_parameters
    return event


def call_events(call_id: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    event = with_path("get-call-events.json", f"/calls/{call_id}/events", {"callId": call_id})
    event["queryStringParameters"] = params
    event["multiValueQueryStringParameters"] = (
        {name: [value] for name, value in params.items()} if params else None
    )
    return event


def in_time_order(events: list[CallEvent]) -> list[str]:
    ordered = sorted(events, key=lambda event: (event.timestamp, event.event_type, event.event_id))
    return [event.event_id for event in ordered]


def read_pages(
    module: ModuleType, make_event: Callable[[str | None], dict[str, Any]], *, max_pages: int = 50
) -> tuple[list[dict[str, Any]], int]:
    """Follow nextTokens to the last page and return every event read and the page count."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    for page in range(1, max_pages + 1):
        status, body, _ = invoke(module, make_event(token))
        assert status == 200, body
        events.extend(body["events"])
        assert body["count"] == len(body["events"])
        token = body.get("nextToken")
        if token is None:
            return events, page
    raise AssertionError(f"no last page after {max_pages} pages")


def query_log_records(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Return the "Query completed" records written to `buffer`."""
    records = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return [record for record in records if record.get("message") == "Query completed"]


# ---------------------------------------------------------------------------
# GET /events/{eventId}


def test_get_event_returns_stored_json(retriever, stored):
    status, body, headers = invoke(retriever, load_fixture("get-event.json"))

    # The event events/post-event.json stores, so the two fixtures work in turn.
    stored_object = stored.s3_client.get_object(Bucket=BUCKET, Key=event_key("evt-9c21-002"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body == json.loads(stored_object["Body"].read())


def test_get_event_body_is_stored_bytes(retriever, stored):
    response = retriever.lambda_handler(load_fixture("get-event.json"), FakeLambdaContext())

    event = next(event for event in stored.all_events if event.event_id == "evt-9c21-002")
    assert response["body"].encode("utf-8") == event.to_json_bytes()


def test_get_event_accepts_percent_encoded_id(retriever):
    event = with_path("get-event.json", "/events/evt%2D9c21-001", {"eventId": "evt-9c21-001"})

    status, body, _ = invoke(retriever, event)

    assert status == 200
    assert body["eventId"] == "evt-9c21-001"


def test_get_unknown_event_is_404(retriever):
    event = with_path("get-event.json", "/events/evt-unknown", {"eventId": "evt-unknown"})

    status, body, _ = invoke(retriever, event)

    assert status == 404
    assert body["code"] == "EVENT_NOT_FOUND"
    assert "evt-unknown" in body["message"]


def test_error_body_carries_request_id(retriever):
    event = copy.deepcopy(load_fixture("get-event.json"))
    event["pathParameters"] = {"eventId": "evt-not-stored"}

    status, body, _ = invoke(retriever, event)

    assert status == 404
    assert body["requestId"] == event["requestContext"]["requestId"]


def test_unmatched_route_is_404_with_request_id(retriever):
    event = copy.deepcopy(load_fixture("get-event.json"))
    event["resource"] = "/nowhere"
    event["path"] = "/nowhere"

    status, body, _ = invoke(retriever, event)

    assert status == 404
    assert body["code"] == "ROUTE_NOT_FOUND"
    assert body["requestId"] == event["requestContext"]["requestId"]


@pytest.mark.parametrize("event_id", ["-starts-with-dash", "has!bang", "x" * 129])
def test_get_event_with_invalid_id_is_400(retriever, event_id):
    event = with_path("get-event.json", f"/events/{event_id}", {"eventId": event_id})

    status, body, _ = invoke(retriever, event)

    assert status == 400
    assert body["code"] == "INVALID_EVENT_ID"


# ---------------------------------------------------------------------------
# GET /events


def test_list_events_fixture_returns_matching_events(retriever):
    status, body, _ = invoke(retriever, load_fixture("list-events.json"))

    assert status == 200
    assert [event["eventId"] for event in body["events"]] == ["evt-9c21-001", "evt-ee42-001"]
    assert body["count"] == 2
    assert "nextToken" not in body
    params = load_fixture("list-events.json")["queryStringParameters"]
    assert (body["startDate"], body["endDate"]) == (params["startDate"], params["endDate"])


def test_list_events_pages_with_next_token(retriever, secret_reads):
    params = dict(load_fixture("list-events.json")["queryStringParameters"], limit="1")

    def page(token: str | None) -> dict[str, Any]:
        return with_query("list-events.json", dict(params, nextToken=token) if token else params)

    events, pages = read_pages(retriever, page)

    assert [event["eventId"] for event in events] == ["evt-9c21-001", "evt-ee42-001"]
    assert pages == 2
    assert set(secret_reads) == {PAGINATION_SECRET_ARN}


def test_list_events_pages_cover_every_event_once(retriever, stored):
    params = {"startDate": "2026-03-01", "endDate": "2026-03-05", "limit": "6"}

    def page(token: str | None) -> dict[str, Any]:
        return with_query("list-events.json", dict(params, nextToken=token) if token else params)

    events, pages = read_pages(retriever, page)

    assert [event["eventId"] for event in events] == in_time_order(stored.all_events)
    assert pages == -(-len(stored.all_events) // 6)


def test_list_events_with_call_id_spans_midnight(retriever, stored):
    params = {"callId": "call-c0ffee42", "startDate": "2026-03-02", "endDate": "2026-03-03"}

    status, body, _ = invoke(retriever, with_query("list-events.json", params))

    assert status == 200
    assert [event["eventId"] for event in body["events"]] == in_time_order(
        stored.by_call["call-c0ffee42"]
    )


def test_list_events_rejects_tampered_token(retriever):
    params = dict(load_fixture("list-events.json")["queryStringParameters"], limit="1")
    _, first, _ = invoke(retriever, with_query("list-events.json", params))
    token = first["nextToken"]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")

    tampered_request = with_query("list-events.json", dict(params, nextToken=tampered))

    status, body, _ = invoke(retriever, tampered_request)

    assert status == 400
    assert body["code"] == "INVALID_NEXT_TOKEN"


def test_list_events_rejects_token_of_another_query(retriever):
    params = dict(load_fixture("list-events.json")["queryStringParameters"], limit="1")
    _, first, _ = invoke(retriever, with_query("list-events.json", params))
    other = dict(params, eventType="CALL_ENDED", nextToken=first["nextToken"])

    status, body, _ = invoke(retriever, with_query("list-events.json", other))

    assert status == 400
    assert body["code"] == "INVALID_NEXT_TOKEN"


@pytest.mark.parametrize(
    "params, code",
    [
        ({"from": "2026-03-02"}, "UNKNOWN_PARAMETER"),
        ({"limit": "0"}, "INVALID_PARAMETER"),
        ({"startDate": "last tuesday"}, "INVALID_PARAMETER"),
        ({"eventType": "call_started"}, "INVALID_PARAMETER"),
        ({"callId": "bad id"}, "INVALID_CALL_ID"),
        ({"startDate": "2026-03-03", "endDate": "2026-03-02"}, "INVALID_DATE_RANGE"),
        ({"startDate": "2026-01-01", "endDate": "2026-03-01"}, "RANGE_TOO_WIDE"),
        ({"nextToken": "not-a-token"}, "INVALID_NEXT_TOKEN"),
    ],
)
def test_list_events_rejects_bad_parameters(retriever, params, code):
    status, body, _ = invoke(retriever, with_query("list-events.json", params))

    assert status == 400
    assert body["code"] == code
    assert body["message"]


def test_list_events_rejects_repeated_parameter(retriever):
    event = with_query("list-events.json", {"eventType": "SIP_OK"})
    event["multiValueQueryStringParameters"] = {"eventType": ["SIP_INVITE", "SIP_OK"]}

    status, body, _ = invoke(retriever, event)

    assert status == 400
    assert body["code"] == "INVALID_PARAMETER"


def test_list_events_without_dates_reads_last_24_hours(retriever):
    # The sample events are from March 2026, long before the test clock.
    before = datetime.now(UTC)
    status, body, _ = invoke(retriever, with_query("list-events.json", None))
    after = datetime.now(UTC)

    assert status == 200
    assert (body["events"], body["count"]) == ([], 0)
    # The response gives the window it read.
    start = datetime.fromisoformat(body["startDate"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(body["endDate"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= end <= after
    assert end - start == timedelta(hours=24)
    # At most milliseconds, as the API writes timestamps.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", body["endDate"])


# ---------------------------------------------------------------------------
# GET /calls/{callId}/events


@pytest.mark.parametrize("case", CASES)
def test_call_events_are_complete_and_in_time_order(retriever, case):
    expected = [parse_event(raw, max_event_bytes=MAX_EVENT_BYTES) for raw in load_case(case)]
    call_id = expected[0].call_id

    status, body, _ = invoke(retriever, call_events(call_id))

    assert status == 200
    assert body["callId"] == call_id
    assert [event["eventId"] for event in body["events"]] == in_time_order(expected)
    assert body["count"] == len(expected)
    assert "nextToken" not in body
    timestamps = [event["timestamp"] for event in body["events"]]
    assert timestamps == sorted(timestamps)


def test_call_fixture_returns_call_spanning_midnight(retriever, stored):
    status, body, _ = invoke(retriever, load_fixture("get-call-events.json"))

    assert status == 200
    assert body["events"][0]["timestamp"] == "2026-03-02T23:58:10.000Z"
    assert body["events"][-1]["timestamp"] == "2026-03-03T00:15:22.900Z"
    assert body["count"] == len(stored.by_call["call-c0ffee42"])


def test_call_events_page_with_next_token(retriever, stored):
    call_id = "call-7f3a9c21"

    def page(token: str | None) -> dict[str, Any]:
        params = {"limit": "5"}
        if token:
            params["nextToken"] = token
        return call_events(call_id, params)

    events, pages = read_pages(retriever, page)

    assert [event["eventId"] for event in events] == in_time_order(stored.by_call[call_id])
    assert pages == 3


def test_call_events_reject_token_of_another_call(retriever):
    _, first, _ = invoke(retriever, call_events("call-7f3a9c21", {"limit": "5"}))

    status, body, _ = invoke(
        retriever, call_events("call-c0ffee42", {"limit": "5", "nextToken": first["nextToken"]})
    )

    assert status == 400
    assert body["code"] == "INVALID_NEXT_TOKEN"


def test_unknown_call_is_404(retriever):
    status, body, _ = invoke(retriever, call_events("call-unknown"))

    assert status == 404
    assert body["code"] == "CALL_NOT_FOUND"
    assert "call-unknown" in body["message"]


def test_call_events_with_invalid_call_id_is_400(retriever):
    status, body, _ = invoke(retriever, call_events("bad!call"))

    assert status == 400
    assert body["code"] == "INVALID_CALL_ID"


def test_call_events_reject_date_parameters(retriever):
    status, body, _ = invoke(retriever, call_events("call-7f3a9c21", {"startDate": "2026-03-02"}))

    assert status == 400
    assert body["code"] == "UNKNOWN_PARAMETER"


# ---------------------------------------------------------------------------
# GET /health, unknown routes and failures


def test_health_is_healthy_when_bucket_exists(retriever):
    status, body, _ = invoke(retriever, load_fixture("health.json"))

    assert status == 200
    assert body["status"] == "healthy"
    assert body["timestamp"].endswith("Z")


def test_health_is_unhealthy_when_bucket_missing(retriever, monkeypatch):
    monkeypatch.setenv("EVENTS_BUCKET", "callflow-bucket-that-does-not-exist")
    get_settings.cache_clear()
    module = load_handler("retriever")

    status, body, headers = invoke(module, load_fixture("health.json"))

    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["code"] == "STORAGE_UNAVAILABLE"
    assert body["message"]
    assert body["timestamp"].endswith("Z")
    assert int(headers["retry-after"]) > 0


def test_unknown_route_is_404(retriever):
    event = with_path("health.json", "/healthz", {})
    event["resource"] = "/healthz"

    status, body, _ = invoke(retriever, event)

    assert status == 404
    assert body["code"] == "ROUTE_NOT_FOUND"
    assert "/healthz" in body["message"]


def test_unexpected_error_is_500(retriever, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(retriever, "run_query", fail)

    status, body, _ = invoke(retriever, load_fixture("list-events.json"))

    assert status == 500
    assert body["code"] == "INTERNAL_ERROR"
    assert "simulated bug" not in body["message"]


def test_unreadable_pagination_key_is_503(retriever, monkeypatch):
    def unavailable(secret_id: str, *, max_age_seconds: int = 300) -> str:
        raise callflow_secrets.SecretUnavailableError(
            secret_id, "simulated Secrets Manager failure"
        )

    monkeypatch.setattr(callflow_secrets, "get_secret_value", unavailable)
    params = dict(load_fixture("list-events.json")["queryStringParameters"], limit="1")

    status, body, headers = invoke(retriever, with_query("list-events.json", params))

    assert status == 503
    assert body["code"] == "STORAGE_UNAVAILABLE"
    assert "retry-after" in headers


# ---------------------------------------------------------------------------
# Logs


def test_query_is_logged_once_with_counts(retriever, log_output):
    invoke(retriever, load_fixture("list-events.json"))

    records = query_log_records(log_output)
    assert len(records) == 1
    record = records[0]
    assert record["query"]["eventType"] == "CALL_STARTED"
    assert record["query"]["limit"] == 10
    assert record["query"]["startDate"] == "2026-03-02T00:00:00Z"
    assert record["resultCount"] == 2
    assert record["s3ObjectsScanned"] == 2
    assert record["s3ListCalls"] == SHARDS
    assert record["queryTimeMs"] >= 0
    assert record["requestId"] == "7a2d3b4c-5e6f-4071-9b82-a3c4d5e6f702"
    assert record["functionName"] == "callflow-retriever"


def test_logs_contain_no_event_contents_or_token(retriever, log_output):
    _, first, _ = invoke(retriever, call_events("call-c0ffee42", {"limit": "3"}))
    invoke(retriever, call_events("call-c0ffee42", {"limit": "3", "nextToken": first["nextToken"]}))
    invoke(retriever, load_fixture("get-event.json"))

    text = log_output.getvalue()
    assert "Query completed" in text
    assert "+15550100777" not in text
    assert "customer:" not in text
    assert "sip:alice" not in text
    assert first["nextToken"] not in text


def test_call_query_log_counts_list_calls(retriever, log_output):
    invoke(retriever, load_fixture("get-call-events.json"))

    record = query_log_records(log_output)[0]
    assert record["query"]["callId"] == "call-c0ffee42"
    assert record["query"]["nextToken"] is False
    assert record["s3ListCalls"] == 1
    assert record["s3ObjectsScanned"] == record["resultCount"] == 11



@pytest.mark.parametrize(
    ("path", "parameters", "code"),
    [
        ("/events/evt%00x", {"eventId": "evt\x00x"}, "INVALID_EVENT_ID"),
        ("/events/evt%5Cx", {"eventId": "evt\\x"}, "INVALID_EVENT_ID"),
        ("/calls/call%09x/events", {"callId": "call\tx"}, "INVALID_CALL_ID"),
    ],
)
def test_id_the_resolver_cannot_route_is_400(retriever, path, parameters, code):
    fixture = "get-call-events.json" if "callId" in parameters else "get-event.json"

    status, body, _ = invoke(retriever, with_path(fixture, path, parameters))

    assert status == 400
    assert body["code"] == code


@pytest.mark.parametrize("fixture", ["get-event.json", "health.json"])
def test_route_without_parameters_rejects_query(retriever, fixture):
    status, body, _ = invoke(retriever, with_query(fixture, {"colour": "blue"}))

    assert status == 400
    assert body["code"] == "UNKNOWN_PARAMETER"
    assert "colour" in body["message"]
