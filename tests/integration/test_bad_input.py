"""A corpus of bad requests: each is rejected with a 4xx status and its stable code.

Every case lists the events bucket (all object versions and delete markers)
before and after its request and asserts that nothing changed. Requests go
out through http.client byte for byte, so that dot segments, percent escapes
and bodies that are not UTF-8 reach the API unchanged.

API Gateway itself rejects a method or path that the API does not define,
with its MISSING_AUTHENTICATION_TOKEN response. The template's gateway
responses turn that into 404 ROUTE_NOT_FOUND.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from tests.integration.conftest import READ, WRITE, Api, Stack
from tests.integration.raw_http import RawResponse, send

JSON = "application/json"
MAX_BATCH_SIZE = 100
MAX_EVENT_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
MAX_ID_CHARS = 128
MAX_PAYLOAD_DEPTH = 32
# Deeper than Python's json module can parse (RecursionError past about 1000 levels).
UNPARSABLE_DEPTH = 100_000

# Expected (status, code) pairs.
INVALID_JSON = (400, "INVALID_JSON")
VALIDATION_ERROR = (400, "VALIDATION_ERROR")
UNSUPPORTED_MEDIA_TYPE = (415, "UNSUPPORTED_MEDIA_TYPE")
INVALID_EVENT_ID = (400, "INVALID_EVENT_ID")
INVALID_CALL_ID = (400, "INVALID_CALL_ID")
INVALID_PARAMETER = (400, "INVALID_PARAMETER")
UNKNOWN_PARAMETER = (400, "UNKNOWN_PARAMETER")
INVALID_NEXT_TOKEN = (400, "INVALID_NEXT_TOKEN")
ROUTE_NOT_FOUND = (404, "ROUTE_NOT_FOUND")

# The corpus runs against any stack, so the ids carry a suffix unique to this run.
RUN = uuid.uuid4().hex[:10]
VALID_EVENT: dict[str, Any] = {
    "eventId": f"bad-input-{RUN}",
    "eventType": "CALL_STARTED",
    "callId": f"bad-input-call-{RUN}",
    "timestamp": "2026-03-02T14:05:00.112Z",
    "source": "pbx-integration-test",
    "from": "+15550100001",
    "to": "+15550100002",
    "payload": {"direction": "inbound"},
}
VALID_BODY = json.dumps(VALID_EVENT)


@dataclass(frozen=True)
class Case:
    """One bad request and the status and code the API documents for it.

    `target` is the path and query after the stage, sent as written. It may
    name values of the `next_tokens` fixture in braces, such as {list_token}.
    `detail` is a (field, detail code) pair that the body's details must contain.
    `emulator_gap` is the reason the local emulator cannot return the status of AWS.
    """

    id: str
    method: str
    target: str
    status: int
    code: str
    body: bytes | None = None
    content_type: str | None = None
    detail: tuple[str, str] | None = None
    emulator_gap: str | None = None


# A field value that makes event_with leave the field out.
DROP = object()


def event_with(**changes: Any) -> dict[str, Any]:
    """Return VALID_EVENT with fields replaced. A value of DROP removes the field."""
    event = {**VALID_EVENT, **changes}
    return {name: value for name, value in event.items() if value is not DROP}


def post(
    case_id: str,
    document: Any,
    expected: tuple[int, str],
    detail: tuple[str, str] | None = None,
) -> Case:
    body = json.dumps(document).encode("utf-8")
    return Case(case_id, "POST", "/events", *expected, body, JSON, detail)


def post_raw(
    case_id: str,
    body: bytes,
    expected: tuple[int, str],
    content_type: str = JSON,
) -> Case:
    return Case(case_id, "POST", "/events", *expected, body, content_type)


def field_error(case_id: str, field: str, value: Any, detail_code: str) -> Case:
    """Return a case that sets `field` to `value` (DROP: leaves it out), rejected for that field."""
    return post(case_id, event_with(**{field: value}), VALIDATION_ERROR, (field, detail_code))


def get(
    case_id: str,
    target: str,
    expected: tuple[int, str],
    detail: tuple[str, str] | None = None,
) -> Case:
    return Case(case_id, "GET", target, *expected, detail=detail)


def no_route(case_id: str, method: str, target: str) -> Case:
    return Case(case_id, method, target, *ROUTE_NOT_FOUND)


def nested(depth: int) -> dict[str, Any]:
    """Return an object nested `depth` levels deep ({"a": {"a": ... {}}})."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def in_two_days() -> str:
    moment = datetime.now(timezone.utc) + timedelta(days=2)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def batch(count: int, **changes: Any) -> list[dict[str, Any]]:
    return [event_with(eventId=f"bad-batch-{index}-{RUN}", **changes) for index in range(count)]


LONG_ID = "a" * (MAX_ID_CHARS + 1)

# Ids that break the eventId and callId rule, as (case id suffix, value).
BAD_IDS = [
    ("slash", "a/b"),
    ("dot", "."),
    ("dot-dot", ".."),
    ("percent-encoded", "a%2Fb"),
    ("control-character", "a\u0000b"),
    ("tab", "a\tb"),
    ("space", "a b"),
    ("too-long", LONG_ID),
    ("leading-hyphen", "-abc"),
    ("key-separator", "a!b"),
    ("backslash", "a\\b"),
    ("non-ascii", "appel-\u00e9"),
    ("empty", ""),
]

# The detail code of each bad id where it is not INVALID_FORMAT.
ID_DETAIL_CODES = {"too-long": "TOO_LONG"}

BODY_CASES = [
    # Syntax and media type.
    post_raw("invalid-json-truncated", b'{"eventType": ', INVALID_JSON),
    post_raw("invalid-json-trailing-comma", b'{"eventType": "CALL_STARTED",}', INVALID_JSON),
    post_raw("invalid-json-single-quotes", b"{'eventType': 'CALL_STARTED'}", INVALID_JSON),
    post_raw("empty-body", b"", INVALID_JSON),
    post_raw("body-not-utf8", b"\xff\xfe{\x00}", INVALID_JSON),
    post_raw("nan-number", VALID_BODY[:-1].encode() + b', "x": NaN}', INVALID_JSON),
    post_raw("float-overflow", b'{"payload": {"n": 1e400}}', INVALID_JSON),
    post_raw("integer-5000-digits", b'{"payload": {"n": ' + b"9" * 5000 + b"}}", INVALID_JSON),
    post_raw("lone-surrogate-escape", b'{"payload": {"s": "\\ud800"}}', INVALID_JSON),
    post_raw(
        "duplicate-top-level-key",
        VALID_BODY.replace('{"eventId"', '{"eventType": "X", "eventId"', 1).encode(),
        INVALID_JSON,
    ),
    post_raw(
        "duplicate-payload-key",
        VALID_BODY.replace('"direction": "inbound"', '"k": 1, "k": 2').encode(),
        INVALID_JSON,
    ),
    post_raw(
        "payload-too-deep-to-parse",
        b'{"payload": ' + b"[" * UNPARSABLE_DEPTH + b"]" * UNPARSABLE_DEPTH + b"}",
        INVALID_JSON,
    ),
    post_raw("content-type-text-plain", VALID_BODY.encode(), UNSUPPORTED_MEDIA_TYPE, "text/plain"),
    post_raw("content-type-xml", b"<event/>", UNSUPPORTED_MEDIA_TYPE, "application/xml"),
    post_raw(
        "content-type-form",
        b"eventType=CALL_STARTED",
        UNSUPPORTED_MEDIA_TYPE,
        "application/x-www-form-urlencoded",
    ),
    post_raw(
        "charset-latin1",
        VALID_BODY.encode(),
        UNSUPPORTED_MEDIA_TYPE,
        "application/json; charset=iso-8859-1",
    ),
    # Top-level shape.
    post("body-json-string", "CALL_STARTED", VALIDATION_ERROR),
    post("body-json-number", 42, VALIDATION_ERROR),
    post("body-json-null", None, VALIDATION_ERROR),
    post("empty-batch", [], (400, "EMPTY_BATCH")),
    post("batch-of-101", batch(MAX_BATCH_SIZE + 1), (400, "BATCH_TOO_LARGE")),
    post("batch-one-invalid-event", [*batch(3), event_with(eventType="bad")], VALIDATION_ERROR),
    post(
        "batch-item-not-object",
        [*batch(2), "CALL_STARTED"],
        VALIDATION_ERROR,
        ("$", "INVALID_TYPE"),
    ),
    # Sizes.
    post(
        "event-over-64-kib",
        event_with(payload={"blob": "x" * MAX_EVENT_BYTES}),
        (413, "EVENT_TOO_LARGE"),
        ("$", "EVENT_TOO_LARGE"),
    ),
    post(
        "batch-with-event-over-64-kib",
        [*batch(2), event_with(eventId=f"bad-big-{RUN}", payload={"blob": "x" * MAX_EVENT_BYTES})],
        (413, "EVENT_TOO_LARGE"),
    ),
    post(
        "request-over-1-mib",
        batch(20, payload={"blob": "y" * (MAX_REQUEST_BYTES // 19)}),
        (413, "REQUEST_TOO_LARGE"),
    ),
    # Required fields.
    field_error("missing-eventType", "eventType", DROP, "MISSING_FIELD"),
    field_error("missing-callId", "callId", DROP, "MISSING_FIELD"),
    field_error("missing-timestamp", "timestamp", DROP, "MISSING_FIELD"),
    post("empty-object", {}, VALIDATION_ERROR, ("eventType", "MISSING_FIELD")),
    # Wrong types, for every field.
    field_error("eventId-number", "eventId", 12345, "INVALID_TYPE"),
    field_error("eventId-null", "eventId", None, "INVALID_TYPE"),
    field_error("eventType-number", "eventType", 1, "INVALID_TYPE"),
    field_error("eventType-array", "eventType", ["CALL_STARTED"], "INVALID_TYPE"),
    field_error("callId-array", "callId", ["call-1"], "INVALID_TYPE"),
    field_error("callId-object", "callId", {"id": "call-1"}, "INVALID_TYPE"),
    field_error("timestamp-epoch-number", "timestamp", 1772460300, "INVALID_TYPE"),
    field_error("timestamp-boolean", "timestamp", True, "INVALID_TYPE"),
    field_error("timestamp-null", "timestamp", None, "INVALID_TYPE"),
    field_error("timestamp-object", "timestamp", {"seconds": 1}, "INVALID_TYPE"),
    field_error("source-boolean", "source", False, "INVALID_TYPE"),
    field_error("from-number", "from", 15550100001, "INVALID_TYPE"),
    field_error("to-object", "to", {"number": "+15550100002"}, "INVALID_TYPE"),
    field_error("payload-string", "payload", "inbound", "INVALID_TYPE"),
    field_error("payload-array", "payload", [1, 2], "INVALID_TYPE"),
    field_error("payload-number", "payload", 7, "INVALID_TYPE"),
    field_error("payload-null", "payload", None, "INVALID_TYPE"),
    # Unknown fields.
    field_error("unknown-field", "colour", "blue", "UNKNOWN_FIELD"),
    field_error("unknown-field-case-variant", "EventType", "CALL_STARTED", "UNKNOWN_FIELD"),
    field_error("unknown-timestampOriginal", "timestampOriginal", "2026-03-02", "UNKNOWN_FIELD"),
    # Timestamps.
    field_error("timestamp-without-offset", "timestamp", "2026-03-02T14:05:00", "INVALID_FORMAT"),
    field_error("timestamp-date-only", "timestamp", "2026-03-02", "INVALID_FORMAT"),
    field_error("timestamp-space-separator", "timestamp", "2026-03-02 14:05:00Z", "INVALID_FORMAT"),
    field_error("timestamp-basic-format", "timestamp", "20260302T140500Z", "INVALID_FORMAT"),
    field_error("timestamp-offset-hhmm", "timestamp", "2026-03-02T14:05+0100", "INVALID_FORMAT"),
    field_error("timestamp-lower-case-z", "timestamp", "2026-03-02T14:05:00z", "INVALID_FORMAT"),
    field_error("timestamp-february-30", "timestamp", "2026-02-30T14:05:00Z", "INVALID_FORMAT"),
    field_error("timestamp-hour-24", "timestamp", "2026-03-02T24:00:00Z", "INVALID_FORMAT"),
    field_error("timestamp-empty", "timestamp", "", "INVALID_FORMAT"),
    field_error("timestamp-before-1970", "timestamp", "1969-12-31T23:59:59Z", "OUT_OF_RANGE"),
    field_error("timestamp-year-1-offset", "timestamp", "0001-01-01T00:00+01:00", "OUT_OF_RANGE"),
    field_error("timestamp-year-9999", "timestamp", "9999-12-31T23:59:59Z", "OUT_OF_RANGE"),
    field_error("timestamp-two-days-ahead", "timestamp", in_two_days(), "OUT_OF_RANGE"),
    # eventType.
    field_error("eventType-lower-case", "eventType", "call_started", "INVALID_FORMAT"),
    field_error("eventType-mixed-case", "eventType", "Call_Started", "INVALID_FORMAT"),
    field_error("eventType-leading-digit", "eventType", "1CALL", "INVALID_FORMAT"),
    field_error("eventType-double-underscore", "eventType", "CALL__STARTED", "INVALID_FORMAT"),
    field_error("eventType-trailing-underscore", "eventType", "CALL_", "INVALID_FORMAT"),
    field_error("eventType-space", "eventType", "CALL STARTED", "INVALID_FORMAT"),
    field_error("eventType-empty", "eventType", "", "INVALID_FORMAT"),
    field_error("eventType-65-characters", "eventType", "A" * 65, "TOO_LONG"),
    # Text fields.
    field_error("source-257-characters", "source", "s" * 257, "TOO_LONG"),
    field_error("from-control-character", "from", "+1555\u00000100001", "INVALID_FORMAT"),
    field_error("to-c1-control-character", "to", "+1555\u00850100002", "INVALID_FORMAT"),
    # Payload depth.
    field_error("payload-33-levels", "payload", nested(MAX_PAYLOAD_DEPTH + 1), "INVALID_FORMAT"),
    # Ids in the body.
    *(
        field_error(
            f"body-{field}-{name}", field, value, ID_DETAIL_CODES.get(name, "INVALID_FORMAT")
        )
        for field in ("eventId", "callId")
        for name, value in BAD_IDS
    ),
]

# MiniStack matches policy Resource wildcards with a regular expression in
# which "*" does not match a newline (_arn_matches in
# ministack/services/apigateway_v1.py), so it denies a path with a decoded
# newline. IAM documents "*" as any combination of characters.
NEWLINE_GAP = (
    "MiniStack's policy check does not let * match a newline, so it returns 403 FORBIDDEN "
    "where API Gateway passes the request to the retriever"
)

PATH_ID_CASES = [
    # Dot segments sent as written. A client that follows RFC 3986 removes them first.
    get("path-eventId-dot", "/events/.", INVALID_EVENT_ID),
    get("path-eventId-dot-dot", "/events/..", INVALID_EVENT_ID),
    get("path-eventId-encoded-dot-dot", "/events/%2E%2E", INVALID_EVENT_ID),
    get("path-eventId-encoded-space", "/events/a%20b", INVALID_EVENT_ID),
    get("path-eventId-encoded-percent", "/events/a%25b", INVALID_EVENT_ID),
    get("path-eventId-bad-percent-escape", "/events/a%zzb", INVALID_EVENT_ID),
    get("path-eventId-encoded-nul", "/events/a%00b", INVALID_EVENT_ID),
    get("path-eventId-encoded-tab", "/events/a%09b", INVALID_EVENT_ID),
    get("path-eventId-encoded-del", "/events/a%7Fb", INVALID_EVENT_ID),
    get("path-eventId-encoded-backslash", "/events/a%5Cb", INVALID_EVENT_ID),
    get("path-eventId-non-ascii", "/events/appel-%C3%A9", INVALID_EVENT_ID),
    get("path-eventId-too-long", f"/events/{LONG_ID}", INVALID_EVENT_ID),
    get("path-eventId-leading-underscore", "/events/_abc", INVALID_EVENT_ID),
    get("path-eventId-key-separator", "/events/a!b", INVALID_EVENT_ID),
    get("path-callId-dot", "/calls/./events", INVALID_CALL_ID),
    get("path-callId-dot-dot", "/calls/../events", INVALID_CALL_ID),
    get("path-callId-encoded-dot", "/calls/%2e/events", INVALID_CALL_ID),
    get("path-callId-encoded-space", "/calls/a%20b/events", INVALID_CALL_ID),
    get("path-callId-encoded-nul", "/calls/a%00b/events", INVALID_CALL_ID),
    get("path-callId-too-long", f"/calls/{LONG_ID}/events", INVALID_CALL_ID),
    Case(
        "path-eventId-encoded-newline",
        "GET",
        "/events/a%0Ab",
        *INVALID_EVENT_ID,
        emulator_gap=NEWLINE_GAP,
    ),
    Case(
        "path-callId-encoded-newline",
        "GET",
        "/calls/a%0Ab/events",
        *INVALID_CALL_ID,
        emulator_gap=NEWLINE_GAP,
    ),
    # API Gateway decodes an encoded slash before routing, so no route matches.
    no_route("path-eventId-encoded-slash", "GET", "/events/a%2Fb"),
    no_route("path-callId-encoded-slash", "GET", "/calls/a%2Fb/events"),
]

RANGE = "startDate=2026-03-02T00:00:00Z"
CALL_PATH = f"/calls/call-{RUN}/events"
LIMIT_DETAIL = ("limit", "INVALID_PARAMETER")
BAD_LIMITS = [("0", "0"), ("minus-1", "-1"), ("1001", "1001"), ("abc", "abc"), ("1.5", "1.5")]
QUERY_CASES = [
    get(
        "range-reversed",
        "/events?startDate=2026-03-03T00:00:00Z&endDate=2026-03-02T00:00:00Z",
        (400, "INVALID_DATE_RANGE"),
    ),
    get(
        "range-reversed-dates",
        "/events?startDate=2026-03-03&endDate=2026-03-02",
        (400, "INVALID_DATE_RANGE"),
    ),
    get(
        "range-32-days",
        "/events?startDate=2026-01-01T00:00:00Z&endDate=2026-02-02T00:00:00Z",
        (400, "RANGE_TOO_WIDE"),
    ),
    get(
        "range-32-days-as-dates",
        "/events?startDate=2026-01-01&endDate=2026-02-01",
        (400, "RANGE_TOO_WIDE"),
    ),
    get(
        "startDate-without-offset",
        "/events?startDate=2026-03-02T10:00:00",
        INVALID_PARAMETER,
        ("startDate", "INVALID_PARAMETER"),
    ),
    # API Gateway decodes "+" in a query string to a space, so the offset is lost.
    get("startDate-unencoded-plus", "/events?startDate=2026-03-02T10:00+01:00", INVALID_PARAMETER),
    get("startDate-word", "/events?startDate=yesterday", INVALID_PARAMETER),
    get("startDate-before-1970", "/events?startDate=1969-12-31T00:00:00Z", INVALID_PARAMETER),
    get("startDate-empty", "/events?startDate=", INVALID_PARAMETER),
    get(
        "endDate-february-30",
        "/events?endDate=2026-02-30",
        INVALID_PARAMETER,
        ("endDate", "INVALID_PARAMETER"),
    ),
    get("endDate-epoch-number", "/events?endDate=1772460300", INVALID_PARAMETER),
    get("query-eventType-lower-case", f"/events?{RANGE}&eventType=call_started", INVALID_PARAMETER),
    get("query-callId-slash", "/events?callId=a%2Fb", INVALID_CALL_ID),
    get("query-callId-control-character", "/events?callId=a%00b", INVALID_CALL_ID),
    get("query-callId-too-long", f"/events?callId={LONG_ID}", INVALID_CALL_ID),
    get("query-callId-dot-dot", "/events?callId=..", INVALID_CALL_ID),
    *(
        get(f"list-limit-{name}", f"/events?limit={value}", INVALID_PARAMETER, LIMIT_DETAIL)
        for name, value in [*BAD_LIMITS, ("1e3", "1e3"), ("empty", "")]
    ),
    *(
        get(f"call-limit-{name}", f"{CALL_PATH}?limit={value}", INVALID_PARAMETER)
        for name, value in BAD_LIMITS
    ),
    get("limit-repeated", "/events?limit=1&limit=2", INVALID_PARAMETER),
    get(
        "unknown-parameter",
        "/events?colour=blue",
        UNKNOWN_PARAMETER,
        ("colour", "UNKNOWN_PARAMETER"),
    ),
    get("unknown-parameter-case-variant", "/events?StartDate=2026-03-02", UNKNOWN_PARAMETER),
    get("call-route-unknown-parameter", f"{CALL_PATH}?startDate=2026-03-02", UNKNOWN_PARAMETER),
    # Pagination tokens.
    get("nextToken-garbage", "/events?nextToken=garbage", INVALID_NEXT_TOKEN),
    get("nextToken-empty", "/events?nextToken=", INVALID_NEXT_TOKEN),
    get("nextToken-three-parts", "/events?nextToken=a.b.c", INVALID_NEXT_TOKEN),
    get("nextToken-over-2048-characters", "/events?nextToken=" + "A" * 2049, INVALID_NEXT_TOKEN),
    get("nextToken-payload-changed", "{list_path}&nextToken={payload_changed}", INVALID_NEXT_TOKEN),
    get("nextToken-tag-changed", "{list_path}&nextToken={signature_changed}", INVALID_NEXT_TOKEN),
    get("nextToken-truncated", "{list_path}&nextToken={truncated}", INVALID_NEXT_TOKEN),
    get(
        "nextToken-of-other-eventType",
        "{list_path}&eventType=CALL_ENDED&nextToken={list_token}",
        INVALID_NEXT_TOKEN,
    ),
    get("nextToken-list-on-call-route", "{call_path}&nextToken={list_token}", INVALID_NEXT_TOKEN),
    get("nextToken-call-on-list-route", "{list_path}&nextToken={call_token}", INVALID_NEXT_TOKEN),
    get(
        "nextToken-of-other-call",
        f"/calls/other-call-{RUN}/events?limit=1&nextToken={{call_token}}",
        INVALID_NEXT_TOKEN,
    ),
]

ROUTE_CASES = [
    no_route("unknown-route", "GET", "/nothing-here"),
    no_route("root", "GET", "/"),
    no_route("events-upper-case", "GET", "/EVENTS"),
    no_route("events-id-extra-segment", "GET", "/events/a/b"),
    no_route("calls-without-events", "GET", f"/calls/call-{RUN}"),
    no_route("calls-extra-segment", "GET", f"{CALL_PATH}/x"),
    no_route("health-extra-segment", "GET", "/health/deep"),
    *(
        no_route(f"{method.lower()}-events", method, "/events")
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS")
    ),
    no_route("post-health", "POST", "/health"),
    no_route("delete-event", "DELETE", f"/events/bad-input-{RUN}"),
    no_route("put-event", "PUT", f"/events/bad-input-{RUN}"),
    no_route("post-event-id", "POST", f"/events/bad-input-{RUN}"),
    no_route("patch-call-events", "PATCH", CALL_PATH),
    no_route("post-call-events", "POST", CALL_PATH),
    # A HEAD response has no body, so only its status is checked.
    no_route("head-events", "HEAD", "/events"),
]

CASES = [*BODY_CASES, *PATH_ID_CASES, *QUERY_CASES, *ROUTE_CASES]


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def bucket_versions(stack: Stack) -> Callable[[], set[tuple[str, str, bool]]]:
    """Return a function that lists every object version and delete marker of the bucket."""
    s3 = boto3.client("s3")
    bucket = stack.outputs["EventsBucketName"]

    def list_versions() -> set[tuple[str, str, bool]]:
        found: set[tuple[str, str, bool]] = set()
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for version in page.get("Versions", []):
                found.add((version["Key"], version["VersionId"], False))
            for marker in page.get("DeleteMarkers", []):
                found.add((marker["Key"], marker["VersionId"], True))
        return found

    return list_versions


@pytest.fixture(scope="module")
def headers(make_token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(READ, WRITE)}"}


@pytest.fixture(scope="module")
def next_tokens(api: Api) -> dict[str, str]:
    """Store two events of one call, and return real nextTokens, changed copies and queries."""
    call_id = f"bad-input-paged-{RUN}"
    events = [
        event_with(
            eventId=f"bad-input-paged-{index}-{RUN}",
            callId=call_id,
            timestamp=f"2026-03-02T14:0{index}:00Z",
        )
        for index in range(2)
    ]
    stored = api.post_events(events)
    assert stored.status_code in (200, 201), stored.text

    list_query = {
        "startDate": "2026-03-02",
        "endDate": "2026-03-02",
        "callId": call_id,
        "limit": "1",
    }
    list_token = api.get("/events", params=list_query).json()["nextToken"]
    call_token = api.get(f"/calls/{call_id}/events", params={"limit": "1"}).json()["nextToken"]

    payload, signature = list_token.split(".")
    return {
        "list_path": "/events?" + "&".join(f"{name}={value}" for name, value in list_query.items()),
        "call_path": f"/calls/{call_id}/events?limit=1",
        "list_token": list_token,
        "call_token": call_token,
        "payload_changed": f"{flip(payload)}.{signature}",
        "signature_changed": f"{payload}.{flip(signature)}",
        "truncated": list_token[:-4],
    }


def flip(segment: str) -> str:
    """Replace the first base64url character of `segment` with another one."""
    replacement = "B" if segment[0] != "B" else "C"
    return replacement + segment[1:]


# ---------------------------------------------------------------------------
# Tests


def assert_rejected(response: RawResponse, case: Case) -> None:
    assert response.status == case.status, response.text
    if case.method == "HEAD":
        return

    assert response.content_type.startswith(JSON), response.content_type
    body = response.json()
    assert body["code"] == case.code, body
    assert isinstance(body["message"], str), body
    assert body["message"], body
    if case.detail is not None:
        pairs = {(detail.get("field"), detail.get("code")) for detail in body.get("details", [])}
        assert case.detail in pairs, body


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_request_is_rejected(case, stack, headers, next_tokens, bucket_versions):
    if case.emulator_gap and stack.on_emulator:
        pytest.skip(case.emulator_gap)
    request_headers: dict[str, str | bytes] = dict(headers)
    if case.content_type is not None:
        request_headers["Content-Type"] = case.content_type
    target = case.target.format_map(next_tokens) if "{" in case.target else case.target
    before = bucket_versions()

    response = send(stack.base_url, case.method, target, headers=request_headers, body=case.body)

    assert_rejected(response, case)
    assert bucket_versions() == before, "the rejected request changed the events bucket"


def test_corpus_ids_are_unique():
    ids = [case.id for case in CASES]

    assert len(ids) >= 50
    assert len(set(ids)) == len(ids)
