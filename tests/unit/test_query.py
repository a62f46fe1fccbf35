"""Query parameters, nextTokens and query planning of the retriever (callflow.query)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from callflow import query as query_module
from callflow.errors import InvalidNextTokenError, ValidationError
from callflow.events import CallEvent, parse_event
from callflow.keys import call_index_key, event_key, time_index_key
from callflow.query import (
    MAX_NEXT_TOKEN_CHARS,
    EventQuery,
    QueryResult,
    decode_next_token,
    encode_next_token,
    parse_call_query,
    parse_list_query,
    reject_unknown_parameters,
    run_query,
)
from callflow.store import EventStore
from tests.support import load_case

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
KEY = b"pagination-key-of-this-stack"
OTHER_KEY = b"pagination-key-of-another-stack"
BUCKET = "callflow-query-test"
SHARDS = 8
MAX_EVENT_BYTES = 64 * 1024


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def rejection_of(params: dict[str, str] | None) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_list_query(params, now=NOW)
    return caught.value


# ---------------------------------------------------------------------------
# GET /events parameters


def test_list_query_without_dates_reads_last_24_hours():
    query = parse_list_query(None, now=NOW)

    assert query.end == NOW
    assert query.start == NOW - timedelta(hours=24)
    assert query.relative_range is True
    assert query.limit == 100
    assert query.event_type is None
    assert query.call_id is None
    assert query.next_token is None


def test_list_query_converts_offsets_to_utc():
    query = parse_list_query(
        {"startDate": "2026-03-02T15:05:00+01:00", "endDate": "2026-03-02T10:00:00-05:00"},
        now=NOW,
    )

    assert query.start == datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
    assert query.end == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert query.start.tzinfo is UTC
    assert query.relative_range is False


def test_list_query_date_only_covers_whole_utc_days():
    query = parse_list_query({"startDate": "2026-03-02", "endDate": "2026-03-03"}, now=NOW)

    assert query.start == datetime(2026, 3, 2, tzinfo=UTC)
    assert query.end == datetime(2026, 3, 3, 23, 59, 59, 999999, tzinfo=UTC)


def test_start_date_alone_reads_next_24_hours():
    query = parse_list_query({"startDate": "2026-03-02T14:00:00Z"}, now=NOW)

    assert query.start == datetime(2026, 3, 2, 14, tzinfo=UTC)
    assert query.end == datetime(2026, 3, 3, 14, tzinfo=UTC)
    assert query.relative_range is False


def test_end_date_alone_reads_previous_24_hours():
    query = parse_list_query({"endDate": "2026-03-02T14:00:00Z"}, now=NOW)

    assert query.start == datetime(2026, 3, 1, 14, tzinfo=UTC)
    assert query.end == datetime(2026, 3, 2, 14, tzinfo=UTC)


def test_list_query_keeps_filters_limit_and_token():
    query = parse_list_query(
        {
            "eventType": "SIP_INVITE",
            "callId": "call-7f3a9c21",
            "limit": "25",
            "nextToken": "abc.def",
        },
        now=NOW,
    )

    assert query.event_type == "SIP_INVITE"
    assert query.call_id == "call-7f3a9c21"
    assert query.limit == 25
    assert query.next_token == "abc.def"


def test_list_query_repr_hides_next_token():
    query = parse_list_query({"nextToken": "secret-looking-token"}, now=NOW)

    assert "secret-looking-token" not in repr(query)


def test_unknown_parameter_is_named_with_known_ones():
    error = rejection_of({"start": "2026-03-02"})

    assert error.code == "UNKNOWN_PARAMETER"
    assert "'start'" in error.message
    for known in ("startDate", "endDate", "eventType", "callId", "limit", "nextToken"):
        assert known in error.message


def test_route_without_parameters_rejects_any():
    with pytest.raises(ValidationError) as caught:
        reject_unknown_parameters({"colour": "blue", "b" * 200: "x"})

    assert caught.value.code == "UNKNOWN_PARAMETER"
    assert [detail["field"] for detail in caught.value.details] == ["b" * 200, "colour"]
    assert "accepts no query parameters" in caught.value.message
    assert "b" * 81 not in caught.value.message


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2026-13-01",
        "2026-02-30",
        "2026-03-02T14:05:00",
        "2026-03-02T25:00:00Z",
        "2026-03-02T14:05:00 01:00",
        "1969-12-31T23:59:59Z",
        "1969-12-31",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_invalid_start_date_is_rejected(value):
    error = rejection_of({"startDate": value})

    assert error.code == "INVALID_PARAMETER"
    assert "startDate" in error.message
    assert repr(value) in error.message


def test_invalid_end_date_is_rejected():
    error = rejection_of({"endDate": "2026-03-02T14:05"})

    assert error.code == "INVALID_PARAMETER"
    assert "endDate='2026-03-02T14:05'" in error.message


@pytest.mark.parametrize(
    "value", ["call_started", "", "CALL STARTED", "1CALL", "A" * 65, "CALL__X"]
)
def test_invalid_event_type_is_rejected(value):
    error = rejection_of({"eventType": value})

    assert error.code == "INVALID_PARAMETER"
    assert "eventType" in error.message


@pytest.mark.parametrize("value", ["", "-starts-with-dash", "has space", "a" * 129, "semi;colon"])
def test_invalid_call_id_is_rejected(value):
    error = rejection_of({"callId": value})

    assert error.code == "INVALID_CALL_ID"


@pytest.mark.parametrize(
    "value", ["0", "1001", "-1", "1.5", "", " 5", "5_0", "ten", "+5", "99999999"]
)
def test_invalid_limit_is_rejected(value):
    error = rejection_of({"limit": value})

    assert error.code == "INVALID_PARAMETER"
    assert "limit" in error.message
    assert "1 to 1000" in error.message


@pytest.mark.parametrize("value, expected", [("1", 1), ("1000", 1000), ("0042", 42)])
def test_limit_bounds_are_accepted(value, expected):
    assert parse_list_query({"limit": value}, now=NOW).limit == expected


def test_long_invalid_value_is_shortened_in_message():
    error = rejection_of({"eventType": "X" * 5000})

    assert len(error.message) < 400


def test_start_after_end_is_invalid_date_range():
    error = rejection_of({"startDate": "2026-03-03T00:00:00Z", "endDate": "2026-03-02T00:00:00Z"})

    assert error.code == "INVALID_DATE_RANGE"


def test_equal_start_and_end_are_accepted():
    query = parse_list_query(
        {"startDate": "2026-03-02T14:05:00.112Z", "endDate": "2026-03-02T14:05:00.112Z"}, now=NOW
    )

    assert query.start == query.end


def test_range_of_31_days_is_accepted():
    query = parse_list_query(
        {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-02-01T00:00:00Z"}, now=NOW
    )

    assert query.end - query.start == timedelta(days=31)


def test_range_wider_than_31_days_is_rejected():
    error = rejection_of(
        {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-02-01T00:00:00.000001Z"}
    )

    assert error.code == "RANGE_TOO_WIDE"


def test_wide_range_is_accepted_with_call_id():
    query = parse_list_query(
        {"startDate": "2025-01-01", "endDate": "2026-03-01", "callId": "call-7f3a9c21"}, now=NOW
    )

    assert query.call_id == "call-7f3a9c21"


def test_repeated_parameter_is_rejected():
    with pytest.raises(ValidationError) as caught:
        parse_list_query(
            {"eventType": "SIP_OK"},
            now=NOW,
            multi_params={"eventType": ["SIP_INVITE", "SIP_OK"]},
        )

    assert caught.value.code == "INVALID_PARAMETER"
    assert "eventType" in caught.value.message


def test_start_date_near_year_9999_gets_clamped_end():
    query = parse_list_query({"startDate": "9999-12-31T12:00:00Z"}, now=NOW)

    assert query.end == datetime.max.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------
# GET /calls/{callId}/events parameters


def test_call_query_defaults_to_limit_1000():
    query = parse_call_query("call-c0ffee42", None)

    assert query.call_id == "call-c0ffee42"
    assert query.limit == 1000
    assert query.event_type is None


def test_call_query_rejects_date_parameters():
    with pytest.raises(ValidationError) as caught:
        parse_call_query("call-c0ffee42", {"startDate": "2026-03-02"})

    assert caught.value.code == "UNKNOWN_PARAMETER"
    assert "limit, nextToken" in caught.value.message


def test_call_query_rejects_invalid_call_id():
    with pytest.raises(ValidationError) as caught:
        parse_call_query("bad!id", None)

    assert caught.value.code == "INVALID_CALL_ID"


def test_call_query_rejects_invalid_limit():
    with pytest.raises(ValidationError) as caught:
        parse_call_query("call-c0ffee42", {"limit": "1001"})

    assert caught.value.code == "INVALID_PARAMETER"


# ---------------------------------------------------------------------------
# nextToken


def sample_query(**changes) -> EventQuery:
    params = {"startDate": "2026-03-02", "endDate": "2026-03-03", "eventType": "SIP_INVITE"}
    params.update(changes)
    return parse_list_query(params, now=NOW)


CURSOR = {"after": "2026/03/02/20260302T140500.118000Z!SIP_INVITE!evt-9c21-002"}


def test_token_round_trip_returns_cursor():
    query = sample_query()
    token = encode_next_token(query, CURSOR, KEY)

    assert decode_next_token(token, query, KEY) == CURSOR


def test_token_is_url_safe():
    token = encode_next_token(sample_query(), CURSOR, KEY)

    assert all(character.isalnum() or character in "-_." for character in token)


def test_token_stays_valid_when_limit_changes():
    token = encode_next_token(sample_query(limit="10"), CURSOR, KEY)

    assert decode_next_token(token, sample_query(limit="50"), KEY) == CURSOR


def test_tampered_token_is_rejected():
    query = sample_query()
    token = encode_next_token(query, CURSOR, KEY)
    payload, tag = token.split(".")
    forged_cursor = {"after": "2026/03/03/20260303T000000.000000Z!SIP_INVITE!evt-x"}
    forged_payload = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_payload["c"] = forged_cursor
    forged = base64.urlsafe_b64encode(json.dumps(forged_payload).encode()).rstrip(b"=").decode()

    with pytest.raises(InvalidNextTokenError) as caught:
        decode_next_token(f"{forged}.{tag}", query, KEY)

    assert caught.value.code == "INVALID_NEXT_TOKEN"
    assert caught.value.status == 400


def test_token_with_one_changed_character_is_rejected():
    query = sample_query()
    token = encode_next_token(query, CURSOR, KEY)
    changed = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]

    with pytest.raises(InvalidNextTokenError):
        decode_next_token(changed, query, KEY)


@pytest.mark.parametrize(
    "other",
    [
        {"eventType": "SIP_OK"},
        {"startDate": "2026-03-01"},
        {"endDate": "2026-03-04"},
        {"callId": "call-7f3a9c21"},
    ],
)
def test_token_of_another_query_is_rejected(other):
    token = encode_next_token(sample_query(), CURSOR, KEY)

    with pytest.raises(InvalidNextTokenError) as caught:
        decode_next_token(token, sample_query(**other), KEY)

    assert "another query" in caught.value.message


def test_list_token_rejected_on_call_route():
    list_query = parse_list_query({"callId": "call-c0ffee42"}, now=NOW)
    call_query = parse_call_query("call-c0ffee42", None)
    token = encode_next_token(list_query, {"after": "x"}, KEY)

    with pytest.raises(InvalidNextTokenError):
        decode_next_token(token, call_query, KEY)


def test_token_of_relative_range_survives_later_request():
    first = parse_list_query({"eventType": "SIP_OK"}, now=NOW)
    later = parse_list_query({"eventType": "SIP_OK"}, now=NOW + timedelta(minutes=5))
    token = encode_next_token(first, CURSOR, KEY)

    assert decode_next_token(token, later, KEY) == CURSOR


def test_token_signed_with_another_key_is_rejected():
    query = sample_query()
    token = encode_next_token(query, CURSOR, OTHER_KEY)

    with pytest.raises(InvalidNextTokenError) as caught:
        decode_next_token(token, query, KEY)

    assert "signature" in caught.value.message


def test_over_long_token_is_rejected():
    query = sample_query()

    with pytest.raises(InvalidNextTokenError) as caught:
        decode_next_token("A" * (MAX_NEXT_TOKEN_CHARS + 1), query, KEY)

    assert str(MAX_NEXT_TOKEN_CHARS) in caught.value.message


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "a.b.c", "!!!.???", "é.é", "abc.def", "A.B", "=.=", "%2F.%2F", "a b.c"],
)
def test_garbage_token_is_rejected(token):
    with pytest.raises(InvalidNextTokenError):
        decode_next_token(token, sample_query(), KEY)


def test_signed_token_with_unexpected_payload_is_rejected():
    query = sample_query()
    payload = b'["not", "an", "object"]'
    import hashlib
    import hmac

    tag = hmac.new(KEY, payload, hashlib.sha256).digest()
    token = ".".join(
        base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in (payload, tag)
    )

    with pytest.raises(InvalidNextTokenError):
        decode_next_token(token, query, KEY)


def test_token_for_longest_key_fits_length_limit():
    query = parse_list_query(
        {"eventType": "E" * 64, "callId": "c" * 128, "startDate": "2026-03-02"}, now=NOW
    )
    cursor = {
        "after": f"20260302T140500.112000Z!{'E' * 64}!{'e' * 128}",
        "start": "2026-03-02T14:05:00.112000Z",
        "end": "2026-03-03T14:05:00.112000Z",
    }

    token = encode_next_token(query, cursor, KEY)

    assert len(token) <= MAX_NEXT_TOKEN_CHARS
    assert decode_next_token(token, query, KEY) == cursor


# ---------------------------------------------------------------------------
# Planning against a moto-backed store


class RecordingStore:
    """EventStore wrapper that records the eventIds fetched and the LIST calls made."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.fetched_ids: list[str] = []
        self.list_prefixes: list[str] = []

    def get_events_bytes(self, event_ids):
        self.fetched_ids.extend(event_ids)
        return self._store.get_events_bytes(event_ids)

    def list_keys(self, prefix, *, start_after, max_keys):
        self.list_prefixes.append(prefix)
        return self._store.list_keys(prefix, start_after=start_after, max_keys=max_keys)


@pytest.fixture
def s3_client(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def store(s3_client) -> RecordingStore:
    return RecordingStore(EventStore(BUCKET, s3_client, time_index_shards=SHARDS))


def make_event(
    event_id: str, timestamp: str, event_type: str = "SIP_INVITE", call_id: str = "call-1"
) -> CallEvent:
    raw = {"eventId": event_id, "eventType": event_type, "callId": call_id, "timestamp": timestamp}
    return parse_event(raw, max_event_bytes=MAX_EVENT_BYTES)


def store_events(store: RecordingStore, events: list[CallEvent]) -> None:
    results = store._store.put_events(events)
    assert all(getattr(result, "status", None) == "stored" for result in results)


def store_case(store: RecordingStore, name: str) -> list[CallEvent]:
    events = [parse_event(raw, max_event_bytes=MAX_EVENT_BYTES) for raw in load_case(name)]
    store_events(store, events)
    return events


def read_all_pages(
    store, query: EventQuery, *, max_pages: int = 100
) -> tuple[list[str], list[QueryResult]]:
    """Follow nextTokens to the last page and return the eventIds read and every page."""
    event_ids: list[str] = []
    pages: list[QueryResult] = []
    cursor = None
    for _ in range(max_pages):
        result = run_query(query, store, time_index_shards=SHARDS, cursor=cursor)
        pages.append(result)
        event_ids.extend(event["eventId"] for event in result.events)
        if result.next_cursor is None:
            return event_ids, pages
        token = encode_next_token(query, result.next_cursor, KEY)
        cursor = decode_next_token(token, query, KEY)
    raise AssertionError(f"no last page after {max_pages} pages")


def in_time_order(events: list[CallEvent]) -> list[str]:
    ordered = sorted(events, key=lambda event: (event.timestamp, event.event_type, event.event_id))
    return [event.event_id for event in ordered]


def test_call_spanning_midnight_is_returned_complete_in_order(store):
    events = store_case(store, "contact-center-transfer.json")

    result = run_query(parse_call_query("call-c0ffee42", None), store, time_index_shards=SHARDS)

    assert [event["eventId"] for event in result.events] == in_time_order(events)
    assert result.events[0]["timestamp"].startswith("2026-03-02T23:58")
    assert result.events[-1]["timestamp"].startswith("2026-03-03T00:15")
    assert result.next_cursor is None
    assert result.objects_scanned == len(events)


def test_call_events_equal_stored_json(store):
    events = store_case(store, "sip-basic-call.json")

    result = run_query(parse_call_query("call-7f3a9c21", None), store, time_index_shards=SHARDS)

    assert result.events == [json.loads(event.to_json_bytes()) for event in events]


def test_call_is_paged_with_limit(store):
    events = store_case(store, "contact-center-transfer.json")
    query = parse_call_query("call-c0ffee42", {"limit": "4"})

    event_ids, pages = read_all_pages(store, query)

    assert event_ids == in_time_order(events)
    assert [len(page.events) for page in pages] == [4, 4, 3]


def test_call_with_limit_equal_to_size_has_no_next_page(store):
    events = store_case(store, "sip-basic-call.json")
    query = parse_call_query("call-7f3a9c21", {"limit": str(len(events))})

    result = run_query(query, store, time_index_shards=SHARDS)

    assert len(result.events) == len(events)
    assert result.next_cursor is None


def test_unknown_call_returns_no_events(store):
    store_case(store, "sip-basic-call.json")

    result = run_query(parse_call_query("call-unknown", None), store, time_index_shards=SHARDS)

    assert result.events == []
    assert result.next_cursor is None
    assert result.objects_scanned == 0


def test_list_query_with_call_id_filters_range_and_type(store):
    store_case(store, "contact-center-transfer.json")
    query = parse_list_query(
        {"callId": "call-c0ffee42", "startDate": "2026-03-03", "eventType": "AGENT_CONNECTED"},
        now=NOW,
    )

    result = run_query(query, store, time_index_shards=SHARDS)

    assert [event["eventId"] for event in result.events] == ["evt-ee42-005", "evt-ee42-009"]
    assert store.fetched_ids == ["evt-ee42-005", "evt-ee42-009"]


def many_events() -> list[CallEvent]:
    """Events over three UTC days, with shared timestamps, in several calls and types."""
    events = []
    base = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    for number in range(60):
        moment = base + timedelta(minutes=47 * (number // 2))
        event_type = "SIP_INVITE" if number % 5 else "CALL_ENDED"
        events.append(
            make_event(
                f"evt-{number:03d}",
                moment.isoformat().replace("+00:00", "Z"),
                event_type=event_type,
                call_id=f"call-{number % 7}",
            )
        )
    return events


def test_date_range_pages_return_every_event_once_in_order(store):
    events = many_events()
    store_events(store, events)
    query = parse_list_query(
        {"startDate": "2026-03-01", "endDate": "2026-03-03", "limit": "7"}, now=NOW
    )

    event_ids, pages = read_all_pages(store, query)

    assert event_ids == in_time_order(events)
    assert len(pages) == 9
    assert all(len(page.events) == 7 for page in pages[:-1])


def test_single_shard_pages_return_every_event_once(s3_client):
    store = RecordingStore(EventStore(BUCKET, s3_client, time_index_shards=1))
    events = many_events()[:5]
    store_events(store, events)
    query = parse_list_query(
        {"startDate": "2026-03-01", "endDate": "2026-03-03", "limit": "2"}, now=NOW
    )

    event_ids = []
    cursor = None
    for _ in range(10):
        result = run_query(query, store, time_index_shards=1, cursor=cursor)
        event_ids.extend(event["eventId"] for event in result.events)
        cursor = result.next_cursor
        if cursor is None:
            break

    assert event_ids == in_time_order(events)


def test_date_range_with_limit_equal_to_matches_has_no_next_page(store):
    events = many_events()[:10]
    store_events(store, events)
    query = parse_list_query(
        {"startDate": "2026-03-01", "endDate": "2026-03-03", "limit": "10"}, now=NOW
    )

    result = run_query(query, store, time_index_shards=SHARDS)

    assert len(result.events) == 10
    assert result.next_cursor is None


def test_date_range_excludes_events_outside_range(store):
    events = many_events()
    store_events(store, events)
    start, end = "2026-03-02T03:00:00Z", "2026-03-02T10:04:00Z"
    query = parse_list_query({"startDate": start, "endDate": end, "limit": "1000"}, now=NOW)

    result = run_query(query, store, time_index_shards=SHARDS)

    expected = [event for event in events if utc(start) <= event.timestamp <= utc(end)]
    assert [event["eventId"] for event in result.events] == in_time_order(expected)
    assert result.next_cursor is None


def test_date_range_end_is_inclusive(store):
    store_events(store, [make_event("evt-edge", "2026-03-02T14:05:00.112Z")])
    query = parse_list_query(
        {"startDate": "2026-03-02T14:00:00Z", "endDate": "2026-03-02T14:05:00.112Z"}, now=NOW
    )

    result = run_query(query, store, time_index_shards=SHARDS)

    assert [event["eventId"] for event in result.events] == ["evt-edge"]


def test_event_type_filter_fetches_only_matching_events(store):
    events = many_events()
    store_events(store, events)
    query = parse_list_query(
        {"startDate": "2026-03-01", "endDate": "2026-03-03", "eventType": "CALL_ENDED"}, now=NOW
    )

    result = run_query(query, store, time_index_shards=SHARDS)

    expected = [event for event in events if event.event_type == "CALL_ENDED"]
    assert [event["eventId"] for event in result.events] == in_time_order(expected)
    assert result.objects_scanned == len(result.events)
    assert sorted(store.fetched_ids) == sorted(event.event_id for event in expected)


def test_event_type_filter_pages_return_every_match_once(store):
    events = many_events()
    store_events(store, events)
    query = parse_list_query(
        {
            "startDate": "2026-03-01",
            "endDate": "2026-03-03",
            "eventType": "CALL_ENDED",
            "limit": "5",
        },
        now=NOW,
    )

    event_ids, pages = read_all_pages(store, query)

    expected = [event for event in events if event.event_type == "CALL_ENDED"]
    assert event_ids == in_time_order(expected)
    assert sum(page.objects_scanned for page in pages) == len(expected)


def test_list_budget_ends_page_early_with_next_token(store, monkeypatch):
    monkeypatch.setattr(query_module, "MAX_LIST_CALLS_PER_INDEX", 1)
    monkeypatch.setattr(query_module, "LIST_PAGE_SIZE", 2)
    events = many_events()
    store_events(store, events)
    query = parse_list_query(
        {"startDate": "2026-03-01", "endDate": "2026-03-03", "eventType": "CALL_ENDED"}, now=NOW
    )

    event_ids, pages = read_all_pages(store, query)

    expected = [event for event in events if event.event_type == "CALL_ENDED"]
    assert event_ids == in_time_order(expected)
    assert len(pages) > 1
    assert all(page.list_calls <= SHARDS for page in pages)


def test_list_budget_bounds_call_index_listing(store, monkeypatch):
    monkeypatch.setattr(query_module, "MAX_LIST_CALLS_PER_INDEX", 2)
    monkeypatch.setattr(query_module, "LIST_PAGE_SIZE", 2)
    events = store_case(store, "contact-center-transfer.json")
    query = parse_list_query(
        {
            "callId": "call-c0ffee42",
            "startDate": "2026-03-02",
            "endDate": "2026-03-04",
            "eventType": "CALL_ENDED",
        },
        now=NOW,
    )

    first = run_query(query, store, time_index_shards=SHARDS)
    event_ids, pages = read_all_pages(store, query)

    assert first.list_calls == 2
    assert first.events == []
    assert first.next_cursor is not None
    assert event_ids == [event.event_id for event in events if event.event_type == "CALL_ENDED"]
    assert all(page.list_calls <= 2 for page in pages)


def test_relative_range_token_keeps_first_window(store):
    store_events(store, [make_event("evt-early", "2026-03-04T11:00:00Z")])
    first_query = parse_list_query({"limit": "1"}, now=NOW)
    store_events(store, [make_event("evt-in-window", "2026-03-04T11:30:00Z")])

    first = run_query(first_query, store, time_index_shards=SHARDS)
    assert first.next_cursor is not None
    token = encode_next_token(first_query, first.next_cursor, KEY)

    # Stored after the first page, and inside only the later request's own window.
    store_events(store, [make_event("evt-after-window", "2026-03-04T12:30:00Z")])
    later_query = parse_list_query(
        {"limit": "10", "nextToken": token}, now=NOW + timedelta(hours=1)
    )
    cursor = decode_next_token(token, later_query, KEY)
    second = run_query(later_query, store, time_index_shards=SHARDS, cursor=cursor)

    assert [event["eventId"] for event in first.events] == ["evt-early"]
    assert [event["eventId"] for event in second.events] == ["evt-in-window"]
    assert second.next_cursor is None


def test_missing_event_object_is_skipped_and_counted(store, s3_client, caplog):
    events = store_case(store, "sip-basic-call.json")
    missing = events[3]
    s3_client.delete_object(Bucket=BUCKET, Key=event_key(missing.event_id))

    with caplog.at_level(logging.WARNING):
        result = run_query(parse_call_query("call-7f3a9c21", None), store, time_index_shards=SHARDS)

    returned = [event["eventId"] for event in result.events]
    assert missing.event_id not in returned
    assert len(returned) == len(events) - 1
    assert result.objects_scanned == len(events)
    assert any(missing.event_id in str(record.__dict__.get("eventId")) for record in caplog.records)
    logged_keys = {record.__dict__.get("s3Key") for record in caplog.records}
    assert call_index_key(missing) in logged_keys


def write_index_entries(s3_client, *keys: str) -> None:
    for key in keys:
        s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"")


def test_entries_without_event_object_return_nothing(store, s3_client):
    # The event object write failed after both index entries were written.
    unwritten = make_event("evt-unwritten", "2026-03-02T10:00:00Z")
    write_index_entries(s3_client, call_index_key(unwritten), time_index_key(unwritten, SHARDS))
    range_query = parse_list_query({"startDate": "2026-03-02", "endDate": "2026-03-02"}, now=NOW)

    by_call = run_query(parse_call_query("call-1", None), store, time_index_shards=SHARDS)
    by_range = run_query(range_query, store, time_index_shards=SHARDS)

    assert by_call.events == []
    assert by_call.objects_scanned == 1
    assert by_range.events == []
    assert by_range.objects_scanned == 1


def test_stray_call_index_entry_is_skipped(store, s3_client, caplog):
    stored = make_event("evt-shared", "2026-03-02T10:00:00Z", call_id="call-1")
    store_events(store, [stored])
    # Left by a conflicting post of evt-shared with another callId whose cleanup failed.
    stray = make_event("evt-shared", "2026-03-02T10:00:00Z", call_id="call-2")
    write_index_entries(s3_client, call_index_key(stray))

    with caplog.at_level(logging.WARNING, logger="callflow.query"):
        other_call = run_query(parse_call_query("call-2", None), store, time_index_shards=SHARDS)
    own_call = run_query(parse_call_query("call-1", None), store, time_index_shards=SHARDS)

    assert other_call.events == []
    assert other_call.objects_scanned == 1
    assert [event["eventId"] for event in own_call.events] == ["evt-shared"]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [record.__dict__.get("s3Key") for record in warnings] == [call_index_key(stray)]
    assert warnings[0].__dict__.get("mismatchedFields") == ["callId"]


def test_stray_call_entry_skipped_by_list_query(store, s3_client):
    stored = make_event("evt-shared", "2026-03-02T10:00:00Z", call_id="call-1")
    store_events(store, [stored])
    stray = make_event("evt-shared", "2026-03-02T10:00:00Z", call_id="call-2")
    write_index_entries(s3_client, call_index_key(stray))
    query = parse_list_query({"callId": "call-2", "startDate": "2026-03-02"}, now=NOW)

    result = run_query(query, store, time_index_shards=SHARDS)

    assert result.events == []
    assert result.objects_scanned == 1


@pytest.mark.parametrize(
    ("timestamp", "event_type", "mismatched"),
    [
        ("2026-03-02T11:30:00Z", "SIP_INVITE", ["timestamp"]),
        ("2026-03-02T10:00:00Z", "CALL_ENDED", ["eventType"]),
    ],
)
def test_stray_time_index_entry_is_skipped(
    store, s3_client, caplog, timestamp, event_type, mismatched
):
    stored = make_event("evt-shared", "2026-03-02T10:00:00Z")
    store_events(store, [stored])
    stray = make_event("evt-shared", timestamp, event_type=event_type)
    write_index_entries(s3_client, time_index_key(stray, SHARDS))
    query = parse_list_query({"startDate": "2026-03-02", "endDate": "2026-03-02"}, now=NOW)

    with caplog.at_level(logging.WARNING, logger="callflow.query"):
        result = run_query(query, store, time_index_shards=SHARDS)

    assert [event["eventId"] for event in result.events] == ["evt-shared"]
    assert result.objects_scanned == 2
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [record.__dict__.get("s3Key") for record in warnings] == [time_index_key(stray, SHARDS)]
    assert warnings[0].__dict__.get("mismatchedFields") == mismatched


def test_precise_timestamps_match_their_entries(store):
    events = [
        make_event("evt-offset", "2026-03-02T12:00:00.5+02:00"),
        make_event("evt-micro", "2026-03-02T10:00:00.000250Z"),
        make_event("evt-nano", "2026-03-02T10:00:01.123456789Z"),
    ]
    store_events(store, events)
    range_query = parse_list_query({"startDate": "2026-03-02", "endDate": "2026-03-02"}, now=NOW)

    by_call = run_query(parse_call_query("call-1", None), store, time_index_shards=SHARDS)
    by_range = run_query(range_query, store, time_index_shards=SHARDS)

    expected = sorted(event.event_id for event in events)
    assert sorted(event["eventId"] for event in by_call.events) == expected
    assert sorted(event["eventId"] for event in by_range.events) == expected


def test_range_query_lists_every_shard_once_per_round(store):
    store_events(store, many_events()[:3])
    query = parse_list_query({"startDate": "2026-03-01", "endDate": "2026-03-02"}, now=NOW)

    result = run_query(query, store, time_index_shards=SHARDS)

    assert result.list_calls == SHARDS
    assert len(set(store.list_prefixes)) == SHARDS
