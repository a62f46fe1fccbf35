"""Parsing, validation and canonical JSON of call events (callflow.events)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from callflow.errors import PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError
from callflow.events import (
    EVENT_TYPE_PATTERN,
    ID_PATTERN,
    CallEvent,
    parse_event,
    parse_request_body,
    validate_event_id,
)
from callflow.settings import MAX_BATCH_SIZE, Settings
from tests.support import load_case

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc)
MAX_EVENT_BYTES = 64 * 1024
CASES = ["sip-basic-call.json", "contact-center-transfer.json", "pbx-unanswered-call.json"]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "events_bucket": "callflow-test",
        "time_index_shards": 16,
        "max_event_bytes": MAX_EVENT_BYTES,
        "max_request_bytes": 1024 * 1024,
        "jwt_secret_arn": "",
        "jwks_url": "",
        "jwt_issuer": "callflow-service",
        "jwt_audience": "callflow-api",
        "pagination_secret_arn": "",
    }
    values.update(overrides)
    return Settings(**values)


def make_raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "eventId": "evt-9c21-002",
        "eventType": "SIP_INVITE",
        "callId": "call-7f3a9c21",
        "timestamp": "2026-03-02T14:05:00.118Z",
        "source": "sip-proxy",
        "from": "sip:alice@pbx.example.net",
        "to": "sip:proxy.example.net",
        "payload": {"cseq": "1 INVITE", "sdpCodecs": ["PCMU", "opus"]},
    }
    raw.update(overrides)
    return {name: value for name, value in raw.items() if value is not DROP}


DROP = object()


def parse(raw: Any, **kwargs: Any) -> CallEvent:
    max_event_bytes = kwargs.pop("max_event_bytes", MAX_EVENT_BYTES)
    return parse_event(raw, max_event_bytes=max_event_bytes, now=NOW, **kwargs)


def field_errors(raw: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        parse(raw)
    assert caught.value.code == "VALIDATION_ERROR"
    return caught.value.details


def single_error(raw: Any) -> dict[str, Any]:
    details = field_errors(raw)
    assert len(details) == 1, details
    return details[0]


def parse_body(body: str | None, *, content_type: str | None = "application/json", **kwargs: Any):
    settings = kwargs.pop("settings", make_settings())
    return parse_request_body(
        body,
        is_base64=kwargs.pop("is_base64", False),
        content_type=content_type,
        settings=settings,
        now=NOW,
    )


# -- canonical form ------------------------------------------------------------


def test_to_json_bytes_is_sorted_compact_utf8():
    event = parse(make_raw(source="zentrale-köln"))

    stored = event.to_json_bytes()

    assert stored == json.dumps(
        event.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert "zentrale-köln".encode("utf-8") in stored
    assert b" " not in stored.replace(b"1 INVITE", b"")


def test_to_dict_normalises_timestamp_and_keeps_original():
    event = parse(make_raw(timestamp="2026-03-04T09:15:03.004+01:00"))

    data = event.to_dict()

    assert data["timestamp"] == "2026-03-04T08:15:03.004Z"
    assert data["timestampOriginal"] == "2026-03-04T09:15:03.004+01:00"
    assert event.timestamp == datetime(2026, 3, 4, 8, 15, 3, 4000, tzinfo=timezone.utc)


def test_to_dict_uses_microseconds_only_when_needed():
    whole_second = parse(make_raw(timestamp="2026-03-02T14:05:00Z")).to_dict()
    microseconds = parse(make_raw(timestamp="2026-03-02T14:05:00.000250Z")).to_dict()
    nanoseconds = parse(make_raw(timestamp="2026-03-02T14:05:00.123456789Z")).to_dict()

    assert whole_second["timestamp"] == "2026-03-02T14:05:00.000Z"
    assert microseconds["timestamp"] == "2026-03-02T14:05:00.000250Z"
    assert nanoseconds["timestamp"] == "2026-03-02T14:05:00.123456Z"
    assert nanoseconds["timestampOriginal"] == "2026-03-02T14:05:00.123456789Z"


def test_to_dict_omits_absent_optional_fields():
    event = parse(make_raw(source=DROP, to=DROP, payload=DROP, **{"from": DROP}))

    data = event.to_dict()

    assert set(data) == {"eventId", "eventType", "callId", "timestamp", "timestampOriginal"}


def test_to_dict_keeps_empty_payload():
    event = parse(make_raw(payload={}))

    assert event.to_dict()["payload"] == {}


def test_from_field_maps_to_from_attribute():
    event = parse(make_raw())

    assert event.from_ == "sip:alice@pbx.example.net"
    assert event.to_dict()["from"] == "sip:alice@pbx.example.net"


# -- derived eventId -----------------------------------------------------------


def test_missing_event_id_is_derived_from_content():
    event = parse(make_raw(eventId=DROP))

    without_id = dict(event.to_dict())
    del without_id["eventId"]
    canonical = json.dumps(without_id, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = "evt-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
    assert event.event_id == expected


def test_derived_event_id_ignores_key_order():
    raw = make_raw(eventId=DROP)
    reordered = dict(reversed(list(raw.items())))

    assert parse(raw).event_id == parse(reordered).event_id


def test_derived_event_id_changes_with_content():
    first = parse(make_raw(eventId=DROP))
    second = parse(make_raw(eventId=DROP, payload={"cseq": "2 INVITE"}))

    assert first.event_id != second.event_id


def test_derived_event_id_matches_id_pattern():
    event = parse(make_raw(eventId=DROP))

    assert ID_PATTERN.fullmatch(event.event_id)
    assert len(event.event_id) == len("evt-") + 32


# -- field rules ---------------------------------------------------------------


@pytest.mark.parametrize("field", ["eventType", "callId", "timestamp"])
def test_required_field_missing_is_reported(field):
    error = single_error(make_raw(**{field: DROP}))

    assert error["field"] == field
    assert error["code"] == "MISSING_FIELD"
    assert "value" not in error


def test_every_missing_field_is_reported_at_once():
    details = field_errors({"payload": {}})

    assert [(d["field"], d["code"]) for d in details] == [
        ("eventType", "MISSING_FIELD"),
        ("callId", "MISSING_FIELD"),
        ("timestamp", "MISSING_FIELD"),
    ]


def test_unknown_field_is_rejected():
    error = single_error(make_raw(caller="+15550100001"))

    assert error["field"] == "caller"
    assert error["code"] == "UNKNOWN_FIELD"


def test_timestamp_original_is_not_an_input_field():
    error = single_error(make_raw(timestampOriginal="2026-03-02T14:05:00.118Z"))

    assert error["code"] == "UNKNOWN_FIELD"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eventId", 42),
        ("eventId", None),
        ("eventType", ["SIP_INVITE"]),
        ("callId", True),
        ("timestamp", 1772460300),
        ("source", None),
        ("from", {"uri": "sip:alice@pbx.example.net"}),
        ("to", 15550100123),
        ("payload", ["not", "an", "object"]),
        ("payload", "text"),
    ],
)
def test_wrong_type_is_rejected(field, value):
    error = single_error(make_raw(**{field: value}))

    assert error["field"] == field
    assert error["code"] == "INVALID_TYPE"


@pytest.mark.parametrize(
    "value",
    ["evt-1", "A", "9", "call.7f3a@pbx:5060", "a+b=c_d-e", "x" * 128],
)
def test_valid_ids_are_accepted(value):
    event = parse(make_raw(eventId=value, callId=value))

    assert event.event_id == value
    assert event.call_id == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "..",
        "-evt",
        "_evt",
        "evt/1",
        "evt%2F1",
        "evt\\1",
        "evt 1",
        "evt\n",
        "evt!1",
        "évt",
        "evt#1",
    ],
)
@pytest.mark.parametrize("field", ["eventId", "callId"])
def test_invalid_ids_are_rejected(field, value):
    error = single_error(make_raw(**{field: value}))

    assert error["field"] == field
    assert error["code"] == "INVALID_FORMAT"
    assert "A-Z a-z 0-9" in error["message"]


@pytest.mark.parametrize("field", ["eventId", "callId"])
def test_id_over_128_characters_is_too_long(field):
    error = single_error(make_raw(**{field: "x" * 129}))

    assert error["code"] == "TOO_LONG"


@pytest.mark.parametrize("value", ["CALL_STARTED", "SIP_180", "HANGUP", "A", "A" * 64])
def test_valid_event_types_are_accepted(value):
    assert parse(make_raw(eventType=value)).event_type == value


@pytest.mark.parametrize(
    "value",
    ["call_started", "Call_Started", "CALL__STARTED", "_CALL", "CALL_", "1CALL", "CALL-1", ""],
)
def test_invalid_event_types_are_rejected(value):
    error = single_error(make_raw(eventType=value))

    assert error["code"] == "INVALID_FORMAT"


def test_event_type_over_64_characters_is_too_long():
    error = single_error(make_raw(eventType="A" * 65))

    assert error["code"] == "TOO_LONG"


def test_event_type_pattern_caps_length():
    assert EVENT_TYPE_PATTERN.fullmatch("A" * 64)
    assert not EVENT_TYPE_PATTERN.fullmatch("A" * 65)


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T14:05:00Z",
        "2026-03-02T14:05Z",
        "2026-03-02T14:05:00.1+05:30",
        "2026-03-02T14:05:00.118-08:00",
        "1970-01-01T00:00:00Z",
    ],
)
def test_valid_timestamps_are_accepted(value):
    assert parse(make_raw(timestamp=value)).timestamp_original == value


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T14:05:00",  # no offset
        "2026-03-02",  # date only
        "2026-03-02 14:05:00Z",  # space separator
        "20260302T140500Z",  # basic format
        "2026-03-02T14:05:00+0100",  # offset without colon
        "2026-03-02T14:05:00z",
        "2026-03-02T24:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-03-02T14:05:60Z",
        "1772460300",
        "2026-03-02T14:05:00.1234567890Z",
    ],
)
def test_invalid_timestamps_are_rejected(value):
    error = single_error(make_raw(timestamp=value))

    assert error["field"] == "timestamp"
    assert error["code"] == "INVALID_FORMAT"
    assert error["value"] == value


@pytest.mark.parametrize(
    "value",
    [
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:30:00+01:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_timestamp_out_of_range_years(value):
    error = single_error(make_raw(timestamp=value))

    assert error["code"] == "OUT_OF_RANGE"


def test_timestamp_over_24_hours_ahead():
    ahead = (NOW + timedelta(hours=24, seconds=1)).isoformat()

    error = single_error(make_raw(timestamp=ahead))

    assert error["code"] == "OUT_OF_RANGE"
    assert "24 hours" in error["message"]


def test_timestamp_24_hours_ahead_is_accepted():
    ahead = (NOW + timedelta(hours=24)).isoformat()

    assert parse(make_raw(timestamp=ahead)).timestamp == NOW + timedelta(hours=24)


@pytest.mark.parametrize("field", ["source", "from", "to"])
def test_text_field_over_256_characters_is_too_long(field):
    error = single_error(make_raw(**{field: "x" * 257}))

    assert error["code"] == "TOO_LONG"


@pytest.mark.parametrize("field", ["source", "from", "to"])
def test_text_field_of_256_characters_is_accepted(field):
    event = parse(make_raw(**{field: "x" * 256}))

    assert event.to_dict()[field] == "x" * 256


@pytest.mark.parametrize("character", ["\n", "\t", "\x00", "\x7f", "\x85"])
@pytest.mark.parametrize("field", ["source", "from", "to"])
def test_text_field_with_control_character_is_rejected(field, character):
    error = single_error(make_raw(**{field: f"sip:alice{character}@pbx.example.net"}))

    assert error["code"] == "INVALID_FORMAT"
    assert "control character" in error["message"]


def test_text_field_message_does_not_repeat_phone_number():
    error = single_error(make_raw(**{"from": "+15550100777\n"}))

    assert "+15550100777" not in error["message"]


def nested_payload(depth: int) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for _ in range(depth - 1):
        payload = {"level": payload}
    return payload


def test_payload_nested_32_levels_is_accepted():
    event = parse(make_raw(payload=nested_payload(32)))

    assert event.payload == nested_payload(32)


def test_payload_nested_33_levels_is_rejected():
    error = single_error(make_raw(payload=nested_payload(33)))

    assert error["field"] == "payload"
    assert error["code"] == "INVALID_FORMAT"


def test_payload_arrays_count_as_levels():
    payload: dict[str, Any] = {"items": [[[]]]}
    for _ in range(29):
        payload = {"level": payload}

    error = single_error(make_raw(payload=payload))

    assert error["field"] == "payload"


def test_error_value_is_cut_to_100_characters():
    error = single_error(make_raw(eventId="x" * 500))

    assert error["value"] == "x" * 100


def test_event_that_is_not_an_object_is_rejected():
    error = single_error(["evt-1"])

    assert error["field"] == "$"
    assert error["code"] == "INVALID_TYPE"


def test_event_over_max_event_bytes_is_too_large():
    raw = make_raw(payload={"blob": "x" * 2000})

    with pytest.raises(PayloadTooLargeError) as caught:
        parse(raw, max_event_bytes=2000)

    assert caught.value.code == "EVENT_TOO_LARGE"
    assert caught.value.status == 413
    assert caught.value.details[0]["value"] > 2000


def test_event_at_max_event_bytes_is_accepted():
    size = len(parse(make_raw()).to_json_bytes())

    assert parse(make_raw(), max_event_bytes=size).event_id == "evt-9c21-002"


# -- validate_event_id ---------------------------------------------------------


def test_validate_event_id_returns_valid_id():
    assert validate_event_id("evt-9c21-002") == "evt-9c21-002"


def test_validate_event_id_rejects_with_invalid_event_id():
    with pytest.raises(ValidationError) as caught:
        validate_event_id("../evt")

    assert caught.value.code == "INVALID_EVENT_ID"
    assert "'../evt'" in caught.value.message


def test_validate_call_id_code():
    with pytest.raises(ValidationError) as caught:
        validate_event_id("call 1", "callId")

    assert caught.value.code == "INVALID_CALL_ID"


# -- request bodies ------------------------------------------------------------


def test_object_body_is_one_event():
    events, is_batch = parse_body(json.dumps(make_raw()))

    assert is_batch is False
    assert [event.event_id for event in events] == ["evt-9c21-002"]


def test_array_body_is_a_batch_in_order():
    raws = [make_raw(eventId=f"evt-{n}") for n in range(3)]

    events, is_batch = parse_body(json.dumps(raws))

    assert is_batch is True
    assert [event.event_id for event in events] == ["evt-0", "evt-1", "evt-2"]


@pytest.mark.parametrize("case", CASES)
def test_sample_cases_parse_as_batches(case):
    raws = load_case(case)

    events, is_batch = parse_body(json.dumps(raws))

    assert is_batch is True
    assert len(events) == len(raws)
    assert len({event.event_id for event in events}) == len(raws)


def test_pbx_case_gets_derived_event_ids():
    events, _ = parse_body(json.dumps(load_case("pbx-unanswered-call.json")))

    assert all(event.event_id.startswith("evt-") for event in events)


def test_empty_batch_is_rejected():
    with pytest.raises(ValidationError) as caught:
        parse_body("[]")

    assert caught.value.code == "EMPTY_BATCH"


def test_batch_of_max_size_is_accepted():
    raws = [make_raw(eventId=f"evt-{n}") for n in range(MAX_BATCH_SIZE)]

    events, _ = parse_body(json.dumps(raws))

    assert len(events) == MAX_BATCH_SIZE


def test_batch_over_max_size_is_rejected():
    raws = [make_raw(eventId=f"evt-{n}") for n in range(MAX_BATCH_SIZE + 1)]

    with pytest.raises(ValidationError) as caught:
        parse_body(json.dumps(raws))

    assert caught.value.code == "BATCH_TOO_LARGE"


@pytest.mark.parametrize("body", ['"event"', "42", "null", "true"])
def test_scalar_body_is_rejected(body):
    with pytest.raises(ValidationError) as caught:
        parse_body(body)

    assert caught.value.code == "VALIDATION_ERROR"


def test_batch_collects_errors_of_every_event_with_index():
    raws = [
        make_raw(eventId="evt-0"),
        make_raw(eventId="evt 1", eventType=DROP),
        make_raw(eventId="evt-2"),
        make_raw(eventId="evt-3", timestamp="yesterday"),
    ]

    with pytest.raises(ValidationError) as caught:
        parse_body(json.dumps(raws))

    details = caught.value.details
    assert caught.value.code == "VALIDATION_ERROR"
    assert [(d["index"], d["field"], d["code"]) for d in details] == [
        (1, "eventId", "INVALID_FORMAT"),
        (1, "eventType", "MISSING_FIELD"),
        (3, "timestamp", "INVALID_FORMAT"),
    ]
    assert "2 of" in caught.value.message
    assert "(indexes 1, 3, counting from 0)" in caught.value.message


def test_single_event_details_have_no_index():
    with pytest.raises(ValidationError) as caught:
        parse_body(json.dumps(make_raw(eventType=DROP)))

    assert "index" not in caught.value.details[0]


def test_batch_with_oversized_event_is_413_naming_index():
    raws = [make_raw(eventId="evt-0"), make_raw(eventId="evt-1", payload={"blob": "x" * 3000})]

    with pytest.raises(PayloadTooLargeError) as caught:
        parse_body(json.dumps(raws), settings=make_settings(max_event_bytes=2048))

    assert caught.value.code == "EVENT_TOO_LARGE"
    assert [detail["index"] for detail in caught.value.details] == [1]
    assert "1 of 2 events (index 1, counting from 0)" in caught.value.message


def test_request_over_max_request_bytes_is_413():
    body = json.dumps(make_raw(payload={"blob": "x" * 1100}))

    with pytest.raises(PayloadTooLargeError) as caught:
        parse_body(body, settings=make_settings(max_request_bytes=1024))

    assert caught.value.code == "REQUEST_TOO_LARGE"
    assert f"{len(body)} bytes, over the limit of 1024 bytes" in caught.value.message
    assert "shrink the event" in caught.value.message


def test_request_size_counts_utf8_bytes_not_characters():
    body = json.dumps(make_raw(payload={"note": "ü" * 400}), ensure_ascii=False)
    assert len(body) < 1024 < len(body.encode("utf-8"))

    with pytest.raises(PayloadTooLargeError) as caught:
        parse_body(body, settings=make_settings(max_request_bytes=1024))

    assert caught.value.code == "REQUEST_TOO_LARGE"


def test_request_size_is_checked_before_json_syntax():
    with pytest.raises(PayloadTooLargeError):
        parse_body("{" * 2000, settings=make_settings(max_request_bytes=1024))


@pytest.mark.parametrize("body", [None, ""])
def test_empty_body_is_invalid_json(body):
    with pytest.raises(ValidationError) as caught:
        parse_body(body)

    assert caught.value.code == "INVALID_JSON"


def test_malformed_json_reports_position():
    with pytest.raises(ValidationError) as caught:
        parse_body('{"eventType": "CALL_STARTED",\n "callId" "call-1"}')

    assert caught.value.code == "INVALID_JSON"
    assert caught.value.details == [{"line": 2, "column": 11, "position": 40}]
    assert "line 2, column 11" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        '{"eventType": "A", "eventType": "B"}',
        '{"payload": {"dtmf": "1", "dtmf": "2"}}',
    ],
)
def test_duplicate_key_is_invalid_json_naming_key(body):
    with pytest.raises(ValidationError) as caught:
        parse_body(body)

    assert caught.value.code == "INVALID_JSON"
    assert "appears twice" in caught.value.message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_invalid_json(constant):
    with pytest.raises(ValidationError) as caught:
        parse_body(json.dumps(make_raw()).replace('"1 INVITE"', constant))

    assert caught.value.code == "INVALID_JSON"
    assert constant.lstrip("-") in caught.value.message


def test_float_overflowing_to_infinity_is_invalid_json():
    with pytest.raises(ValidationError) as caught:
        parse_body(json.dumps(make_raw()).replace('"1 INVITE"', "1e400"))

    assert caught.value.code == "INVALID_JSON"


def test_integer_over_digit_limit_is_invalid_json():
    with pytest.raises(ValidationError) as caught:
        parse_body(json.dumps(make_raw()).replace('"1 INVITE"', "9" * 5000))

    assert caught.value.code == "INVALID_JSON"
    assert "5000 digits" in caught.value.message


def test_nesting_deeper_than_parser_stack_is_invalid_json():
    depth = 200_000
    body = '{"payload":' + "[" * depth + "]" * depth + "}"

    with pytest.raises(ValidationError) as caught:
        parse_body(body)

    assert caught.value.code == "INVALID_JSON"


def test_unpaired_surrogate_escape_is_invalid_json():
    with pytest.raises(ValidationError) as caught:
        parse_body(json.dumps(make_raw()).replace("1 INVITE", "\\ud800"))

    assert caught.value.code == "INVALID_JSON"


def test_surrogate_pair_escape_is_accepted():
    events, _ = parse_body(json.dumps(make_raw()).replace("1 INVITE", "\\ud83d\\ude00"))

    assert events[0].payload["cseq"] == "\U0001f600"


def test_base64_body_is_decoded():
    body = base64.b64encode(json.dumps(make_raw()).encode("utf-8")).decode("ascii")

    events, _ = parse_body(body, is_base64=True)

    assert events[0].event_id == "evt-9c21-002"


def test_invalid_base64_body_is_rejected():
    with pytest.raises(ValidationError) as caught:
        parse_body("not base64!", is_base64=True)

    assert caught.value.code == "INVALID_JSON"


def test_body_that_is_not_utf8_reports_byte_offset():
    body = base64.b64encode(b'{"eventType": "\xff"}').decode("ascii")

    with pytest.raises(ValidationError) as caught:
        parse_body(body, is_base64=True)

    assert caught.value.code == "INVALID_JSON"
    assert "byte 15" in caught.value.message


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        'application/json; charset="utf-8"',
    ],
)
def test_json_content_types_are_accepted(content_type):
    events, _ = parse_body(json.dumps(make_raw()), content_type=content_type)

    assert len(events) == 1


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonl",
        "application/json; charset=iso-8859-1",
    ],
)
def test_other_content_types_are_415(content_type):
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        parse_body(json.dumps(make_raw()), content_type=content_type)

    assert caught.value.status == 415
    assert caught.value.code == "UNSUPPORTED_MEDIA_TYPE"


def test_batch_repeated_event_id_is_rejected():
    first = make_raw(eventId="evt-1")
    second = make_raw(eventId="evt-2")
    repeat = make_raw(eventId="evt-1", source="another-proxy")

    with pytest.raises(ValidationError) as raised:
        parse_body(json.dumps([first, second, repeat]))

    assert [detail["index"] for detail in raised.value.details] == [2]
    assert raised.value.details[0]["code"] == "DUPLICATE_IN_BATCH"
    assert "index 0" in raised.value.message
