"""POST /events through the storer's lambda_handler, with S3 under moto."""

from __future__ import annotations

import base64
import copy
import json
import re
import sys
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from callflow.keys import event_key
from callflow.settings import get_settings
from callflow.store import EventStore, make_s3_client
from tests.support import load_case, load_fixture, load_handler

BUCKET = "callflow-test"
CASES = ["sip-basic-call.json", "contact-center-transfer.json", "pbx-unanswered-call.json"]
CONTEXT = SimpleNamespace(function_name="callflow-storer-test", aws_request_id="lambda-request-1")
STORER_LOG_FIELDS = {
    "requestId",
    "functionName",
    "eventId",
    "eventType",
    "callId",
    "s3Key",
    "s3Bucket",
    "processingTimeMs",
    "eventSize",
    "status",
}
PHONE_NUMBER = re.compile(r"\+\d{7,}")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("EVENTS_BUCKET", BUCKET)
    monkeypatch.setenv("MAX_REQUEST_BYTES", str(64 * 1024))
    get_settings.cache_clear()
    make_s3_client.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    get_settings.cache_clear()
    make_s3_client.cache_clear()


@pytest.fixture
def storer(s3: Any) -> ModuleType:
    return load_handler("storer")


class CurrentStdout:
    """A stream that writes to whatever sys.stdout is at the time of the write."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def logs(
    storer: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> pytest.CaptureFixture[str]:
    """Capture the storer's log lines with capsys.

    Powertools binds a service's log handler to the sys.stdout current when the
    first Logger of that service is created, and pytest swaps sys.stdout
    between tests and between a test's setup and call.
    """
    for handler in storer.logger.handlers:
        monkeypatch.setattr(handler, "stream", CurrentStdout())
    return capsys


def invoke(storer: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = storer.lambda_handler(event, CONTEXT)
    headers = {name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()}
    headers.update(response.get("headers") or {})
    return response["statusCode"], headers, json.loads(response["body"])


def post(
    storer: ModuleType,
    body: Any,
    *,
    content_type: str | None = "application/json",
    raw: bool = False,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    event = copy.deepcopy(load_fixture("post-event.json"))
    event["body"] = body if raw else json.dumps(body)
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type")
    if content_type is not None:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    return invoke(storer, event)


def all_keys(s3: Any) -> list[str]:
    response = s3.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in response.get("Contents", []))


def fixture_event_body(name: str) -> Any:
    return json.loads(load_fixture(name)["body"])


def log_records(output: str) -> list[dict[str, Any]]:
    """Parse the JSON log lines, leaving out the metric lines (EMF, with an _aws key)."""
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [record for record in records if "_aws" not in record]


def metric_values(output: str) -> dict[str, float]:
    """Add up the values of each metric in the EMF lines of the output."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "_aws" not in record:
            continue
        for definition in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            name = definition["Name"]
            value = record[name]
            totals[name] = totals.get(name, 0) + (sum(value) if isinstance(value, list) else value)
    return totals


class FailingClient:
    """Forward to a real S3 client, failing every put_object whose key passes `fails`."""

    def __init__(self, client: Any, fails: Any) -> None:
        self._client = client
        self._fails = fails

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **kwargs: Any) -> Any:
        if self._fails(kwargs["Key"]):
            error = {
                "Error": {"Code": "InternalError", "Message": "simulated"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
            raise ClientError(error, "PutObject")
        return self._client.put_object(**kwargs)


def use_failing_store(
    storer: ModuleType, s3: Any, monkeypatch: pytest.MonkeyPatch, fails: Any
) -> None:
    shards = get_settings().time_index_shards
    store = EventStore(BUCKET, FailingClient(s3, fails), time_index_shards=shards)
    monkeypatch.setattr(storer, "get_store", lambda: store)


# -- fixtures in events/ -------------------------------------------------------


def test_post_event_fixture_is_stored(storer, s3):
    status, headers, body = invoke(storer, load_fixture("post-event.json"))

    assert status == 201
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "eventId": "evt-9c21-002",
        "s3Key": event_key("evt-9c21-002"),
        "status": "stored",
    }
    assert event_key("evt-9c21-002") in all_keys(s3)


def test_post_event_twice_is_duplicate(storer, s3):
    invoke(storer, load_fixture("post-event.json"))
    before = all_keys(s3)

    status, _, body = invoke(storer, load_fixture("post-event.json"))

    assert status == 200
    assert body["status"] == "duplicate"
    assert all_keys(s3) == before


def test_post_event_with_changed_content_is_conflict(storer, s3):
    invoke(storer, load_fixture("post-event.json"))
    changed = fixture_event_body("post-event.json")
    changed["payload"]["cseq"] = "2 INVITE"
    before = all_keys(s3)

    status, _, body = post(storer, changed)

    assert status == 409
    assert body["code"] == "EVENT_CONFLICT"
    assert "evt-9c21-002" in body["message"]
    assert "different" in body["message"]
    assert "payload.cseq" in body["message"]
    assert body["details"] == [
        {
            "eventId": "evt-9c21-002",
            "s3Key": event_key("evt-9c21-002"),
            "differingFields": ["payload.cseq"],
        }
    ]
    assert all_keys(s3) == before


def test_post_batch_fixture_is_stored(storer, s3):
    status, _, body = invoke(storer, load_fixture("post-batch.json"))

    assert status == 201
    assert body["summary"] == {"stored": 11, "duplicate": 0, "conflict": 0, "failed": 0}
    assert [result["index"] for result in body["results"]] == list(range(11))
    assert body["results"][0] == {
        "index": 0,
        "eventId": "evt-ee42-001",
        "s3Key": event_key("evt-ee42-001"),
        "status": "stored",
    }
    assert len(all_keys(s3)) == 33


def test_post_batch_fixture_matches_contact_center_case():
    assert fixture_event_body("post-batch.json") == load_case("contact-center-transfer.json")


# -- sample cases as batches ---------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_sample_case_batch_is_stored(storer, s3, case):
    events = load_case(case)

    status, _, body = post(storer, events)

    assert status == 201
    assert body["summary"]["stored"] == len(events)
    assert len(all_keys(s3)) == 3 * len(events)


@pytest.mark.parametrize("case", CASES)
def test_sample_case_batch_posted_twice_is_all_duplicates(storer, s3, case):
    events = load_case(case)
    post(storer, events)
    before = all_keys(s3)

    status, _, body = post(storer, events)

    assert status == 200
    assert body["summary"] == {"stored": 0, "duplicate": len(events), "conflict": 0, "failed": 0}
    assert all_keys(s3) == before


def test_batch_without_event_ids_returns_derived_ids(storer, s3):
    _, _, body = post(storer, load_case("pbx-unanswered-call.json"))

    event_ids = [result["eventId"] for result in body["results"]]
    assert all(re.fullmatch(r"evt-[0-9a-f]{32}", event_id) for event_id in event_ids)
    assert len(set(event_ids)) == len(event_ids)


def test_batch_with_stored_and_duplicate_events_is_201(storer, s3):
    events = load_case("sip-basic-call.json")
    post(storer, events[:5])

    status, _, body = post(storer, events)

    assert status == 201
    assert body["summary"] == {"stored": 9, "duplicate": 5, "conflict": 0, "failed": 0}


def test_batch_with_some_conflicts_is_207(storer, s3):
    events = load_case("sip-basic-call.json")
    post(storer, events[:2])
    changed = copy.deepcopy(events)
    changed[1]["payload"]["cseq"] = "7 INVITE"

    status, _, body = post(storer, changed)

    assert status == 207
    assert body["summary"] == {"stored": 12, "duplicate": 1, "conflict": 1, "failed": 0}
    assert body["results"][1]["status"] == "conflict"
    assert body["results"][1]["code"] == "EVENT_CONFLICT"
    assert "resend the stored content unchanged" in body["results"][1]["message"]


def test_batch_of_only_conflicts_is_409(storer, s3):
    events = load_case("sip-basic-call.json")[:3]
    post(storer, events)
    changed = copy.deepcopy(events)
    for event in changed:
        event["source"] = "sip-proxy-2"

    status, _, body = post(storer, changed)

    assert status == 409
    assert body["code"] == "EVENT_CONFLICT"
    assert body["summary"]["conflict"] == 3


# -- storage failures ----------------------------------------------------------


def test_storage_failure_on_single_event_is_503(storer, s3, monkeypatch):
    use_failing_store(storer, s3, monkeypatch, fails=lambda key: True)

    status, headers, body = invoke(storer, load_fixture("post-event.json"))

    assert status == 503
    assert body["code"] == "STORAGE_UNAVAILABLE"
    assert headers["Retry-After"].isdigit()


def test_storage_failure_log_has_ids(storer, s3, monkeypatch, logs):
    use_failing_store(storer, s3, monkeypatch, fails=lambda key: True)

    invoke(storer, load_fixture("post-event.json"))

    records = log_records(logs.readouterr().out)
    request_id = load_fixture("post-event.json")["requestContext"]["requestId"]
    s3_failures = [r for r in records if r["message"].startswith("S3 failed to write")]
    outcomes = [r for r in records if r["message"] == "Event store failed"]
    assert s3_failures and s3_failures[0]["requestId"] == request_id
    assert s3_failures[0]["errorCode"] == "InternalError"
    assert outcomes and outcomes[0]["eventId"] == "evt-9c21-002"
    assert outcomes[0]["status"] == "failed"


def test_partial_batch_failure_is_503(storer, s3, monkeypatch):
    failing_key = event_key("evt-ee42-004")
    use_failing_store(storer, s3, monkeypatch, fails=lambda key: key == failing_key)

    status, headers, body = invoke(storer, load_fixture("post-batch.json"))

    assert status == 503
    assert body["code"] == "STORAGE_UNAVAILABLE"
    assert "Retry-After" in headers
    assert body["summary"] == {"stored": 10, "duplicate": 0, "conflict": 0, "failed": 1}
    assert body["results"][3]["status"] == "failed"
    assert body["results"][3]["code"] == "STORAGE_UNAVAILABLE"
    assert body["results"][3]["s3Key"] == failing_key


def test_batch_retry_after_partial_failure_completes(storer, s3, monkeypatch):
    failing_key = event_key("evt-ee42-004")
    use_failing_store(storer, s3, monkeypatch, fails=lambda key: key == failing_key)
    invoke(storer, load_fixture("post-batch.json"))
    monkeypatch.undo()
    retry = load_handler("storer")

    status, _, body = invoke(retry, load_fixture("post-batch.json"))

    assert status == 201
    assert body["summary"] == {"stored": 1, "duplicate": 10, "conflict": 0, "failed": 0}
    assert len(all_keys(s3)) == 33


def test_failed_index_write_is_not_reported_as_stored(storer, s3, monkeypatch):
    use_failing_store(storer, s3, monkeypatch, fails=lambda key: key.startswith("index/time/"))

    status, _, body = invoke(storer, load_fixture("post-event.json"))

    assert status == 503
    assert body["code"] == "STORAGE_UNAVAILABLE"


# -- rejected requests change nothing ------------------------------------------


SIP_EVENTS = load_case("sip-basic-call.json")
JSON = "application/json"
# name: (body, Content-Type, expected status, expected code)
REJECTED_REQUESTS = {
    "invalid event in batch": (
        SIP_EVENTS[:2] + [{"eventType": "call started"}], JSON, 400, "VALIDATION_ERROR"
    ),
    "invalid single event": (
        {"eventType": "CALL_STARTED", "callId": "call 1", "timestamp": "2026-03-02T14:05:00Z"},
        JSON,
        400,
        "VALIDATION_ERROR",
    ),
    "invalid JSON": ('[{"eventType": "CALL_STARTED",]', JSON, 400, "INVALID_JSON"),
    "empty batch": ([], JSON, 400, "EMPTY_BATCH"),
    "batch over 100 events": ([SIP_EVENTS[0]] * 101, JSON, 400, "BATCH_TOO_LARGE"),
    "not JSON content type": (SIP_EVENTS[0], "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    "request too large": (
        [{**SIP_EVENTS[0], "payload": {"blob": "x" * 70_000}}], JSON, 413, "REQUEST_TOO_LARGE"
    ),
}


@pytest.mark.parametrize("name", REJECTED_REQUESTS)
def test_rejected_request_changes_nothing(storer, s3, name):
    body, content_type, expected_status, expected_code = REJECTED_REQUESTS[name]
    invoke(storer, load_fixture("post-event.json"))
    before = all_keys(s3)

    is_text = isinstance(body, str)
    status, headers, response_body = post(storer, body, content_type=content_type, raw=is_text)

    assert status == expected_status
    assert response_body["code"] == expected_code
    assert response_body["message"]
    assert headers["Content-Type"] == "application/json"
    assert all_keys(s3) == before


def test_rejected_batch_details_name_index_and_field(storer, s3):
    events = load_case("sip-basic-call.json")[:3]
    events[2] = {**events[2], "timestamp": "2026-03-02 14:05:00"}

    status, _, body = post(storer, events)

    assert status == 400
    assert body["details"] == [
        {
            "index": 2,
            "field": "timestamp",
            "code": "INVALID_FORMAT",
            "message": body["details"][0]["message"],
            "value": "2026-03-02 14:05:00",
        }
    ]


def test_missing_content_type_is_read_as_json(storer, s3):
    status, _, _ = post(storer, fixture_event_body("post-event.json"), content_type=None)

    assert status == 201


def test_base64_encoded_body_is_accepted(storer, s3):
    event = load_fixture("post-event.json")
    event["body"] = base64.b64encode(event["body"].encode("utf-8")).decode("ascii")
    event["isBase64Encoded"] = True

    status, _, body = invoke(storer, event)

    assert status == 201
    assert body["eventId"] == "evt-9c21-002"


# -- routes and unexpected errors ----------------------------------------------


def test_unknown_route_is_404_json(storer, s3):
    event = load_fixture("post-event.json")
    event.update(httpMethod="GET", path="/calls", resource="/calls", body=None)

    status, _, body = invoke(storer, event)

    assert status == 404
    assert body["code"] == "ROUTE_NOT_FOUND"
    assert "GET /calls" in body["message"]
    assert "POST /events" in body["message"]


def test_unexpected_error_is_500_json_with_request_id(storer, s3, monkeypatch, logs):
    def broken_store() -> EventStore:
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(storer, "get_store", broken_store)

    status, _, body = invoke(storer, load_fixture("post-event.json"))

    assert status == 500
    assert body["code"] == "INTERNAL_ERROR"
    assert load_fixture("post-event.json")["requestContext"]["requestId"] in body["message"]
    assert "simulated defect" not in body["message"]
    assert "simulated defect" in logs.readouterr().out


def test_missing_bucket_setting_is_500(monkeypatch, s3):
    monkeypatch.setenv("EVENTS_BUCKET", "")
    get_settings.cache_clear()
    storer = load_handler("storer")

    status, _, body = invoke(storer, load_fixture("post-event.json"))

    assert status == 500
    assert body["code"] == "INTERNAL_ERROR"


# -- logs ----------------------------------------------------------------------


def test_stored_event_log_line_has_storer_fields(storer, s3, logs):
    invoke(storer, load_fixture("post-event.json"))

    records = [r for r in log_records(logs.readouterr().out) if r.get("message") == "Event stored"]

    assert len(records) == 1
    assert STORER_LOG_FIELDS <= set(records[0])
    assert records[0]["requestId"] == load_fixture("post-event.json")["requestContext"]["requestId"]
    assert records[0]["functionName"] == "callflow-storer-test"
    assert records[0]["status"] == "stored"


def test_outcome_messages_per_status(storer, s3, logs):
    invoke(storer, load_fixture("post-event.json"))
    invoke(storer, load_fixture("post-event.json"))
    changed = fixture_event_body("post-event.json")
    changed["payload"]["cseq"] = "2 INVITE"
    post(storer, changed)

    records = log_records(logs.readouterr().out)
    messages = [(r["message"], r["status"]) for r in records if "status" in r]

    assert messages == [
        ("Event stored", "stored"),
        ("Duplicate event skipped", "duplicate"),
        ("Event conflict", "conflict"),
    ]


def sensitive_values(events: list[dict[str, Any]]) -> set[str]:
    """Return the from/to values and payload strings of `events`, five characters or longer."""
    found: set[str] = set()
    pending: list[Any] = []
    for event in events:
        pending.extend([event.get("from"), event.get("to"), event.get("payload")])
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and len(value) >= 5:
            found.add(value)
    return found


@pytest.mark.parametrize("case", CASES)
def test_logs_contain_no_payload_or_participants(storer, s3, logs, case):
    events = load_case(case)
    post(storer, events)
    post(storer, events)
    changed = copy.deepcopy(events)
    changed[0]["payload"] = {"note": "changed"}
    post(storer, changed)
    invalid = copy.deepcopy(events)
    invalid[0]["from"] = invalid[0].get("from", "+15550100999") + "\n"
    post(storer, invalid)

    output = logs.readouterr().out

    assert log_records(output)
    assert PHONE_NUMBER.search(output) is None
    for value in sensitive_values(events):
        assert value not in output, value
    for record in log_records(output):
        assert not {"payload", "from", "to"} & set(record)


def test_batch_outcomes_are_counted_as_metrics(storer, s3, logs):
    events = load_case("sip-basic-call.json")
    post(storer, events[:2])
    logs.readouterr()
    conflicting = {**events[0], "source": "another-proxy"}

    post(storer, [conflicting, events[1], events[2]])

    totals = metric_values(logs.readouterr().out)
    assert totals["EventsStored"] == 1
    assert totals["DuplicatesSkipped"] == 1
    assert totals["Conflicts"] == 1
    assert totals["BytesStored"] > 0


def test_error_body_carries_request_id(storer, s3):
    status, _, body = post(storer, '{"eventType": ', raw=True)

    assert status == 400
    assert body["code"] == "INVALID_JSON"
    assert body["requestId"] == load_fixture("post-event.json")["requestContext"]["requestId"]
    assert all_keys(s3) == []
