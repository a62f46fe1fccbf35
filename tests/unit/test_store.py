"""Conditional writes, reads and listings against S3 (callflow.store), under moto."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from moto import mock_aws

import callflow.store as store_module
from callflow.errors import StorageUnavailableError, ValidationError
from callflow.events import CallEvent, parse_event, parse_request_body
from callflow.keys import call_index_key, event_key, time_index_key
from callflow.settings import get_settings
from callflow.store import EventStore, PutResult, make_s3_client

BUCKET = "callflow-test"
SHARDS = 16


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    # Waiting between retries of 409 responses would only slow the tests down.
    monkeypatch.setattr(store_module, "CONDITIONAL_CONFLICT_DELAY_SECONDS", 0)


def put_each(client: Any, *, Bucket: str, Puts: list[dict[str, Any]]) -> list[Any]:  # noqa: N803
    """Put each object with `client.put_object`, as the layer client's put_objects would.

    Like the real one it returns each put's result, or the S3 failure it
    raised, in order. The puts run one after another, which the store does not notice.
    """
    results: list[Any] = []
    for put in Puts:
        try:
            results.append(client.put_object(Bucket=Bucket, **put))
        except store_module.S3_FAILURES as error:
            results.append(error)
    return results


class SendingTogether:
    """A boto3 S3 client with the layer client's put_objects, recording the keys of each call."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.sent_together: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_objects(self, **kwargs: Any) -> list[Any]:
        self.sent_together.append([put["Key"] for put in kwargs["Puts"]])
        return put_each(self, **kwargs)


@pytest.fixture
def plain_s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(params=["boto3", "put_objects"])
def s3(request: pytest.FixtureRequest, plain_s3: Any) -> Any:
    """The S3 client under test: boto3's, whose writes the store makes on its pool, or one with
    put_objects, like the layer's, which the store sends up to 30 writes to at once."""
    return plain_s3 if request.param == "boto3" else SendingTogether(plain_s3)


@pytest.fixture
def store(s3: Any) -> EventStore:
    return EventStore(BUCKET, s3, time_index_shards=SHARDS, max_workers=4)


class InterceptingClient:
    """Forward every call to a real S3 client, passing each put_object to `before_put` first.

    `before_put` receives the put_object arguments and may write to S3 itself
    (a competing writer) or raise (a failing S3).
    """

    def __init__(self, client: Any, before_put: Callable[[dict[str, Any]], None]) -> None:
        self._client = client
        self._before_put = before_put
        self.put_keys: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name == "put_objects":
            # Offered only when the wrapped client has it. Each put then goes through put_object.
            getattr(self._client, name)
            return lambda **kwargs: put_each(self, **kwargs)
        return getattr(self._client, name)

    def put_object(self, **kwargs: Any) -> Any:
        self.put_keys.append(kwargs["Key"])
        self._before_put(kwargs)
        return self._client.put_object(**kwargs)


def client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": f"simulated {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


def make_event(event_id: str = "evt-9c21-002", **overrides: Any) -> CallEvent:
    raw: dict[str, Any] = {
        "eventId": event_id,
        "eventType": "SIP_INVITE",
        "callId": "call-7f3a9c21",
        "timestamp": "2026-03-02T14:05:00.118Z",
        "from": "sip:alice@pbx.example.net",
        "to": "sip:proxy.example.net",
        "payload": {"cseq": "1 INVITE"},
    }
    raw.update(overrides)
    return parse_event(raw, max_event_bytes=64 * 1024)


def all_keys(s3: Any) -> list[str]:
    response = s3.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in response.get("Contents", []))


def index_keys(event: CallEvent) -> list[str]:
    return [call_index_key(event), time_index_key(event, SHARDS)]


# -- moto ----------------------------------------------------------------------


def test_moto_rejects_conditional_put_of_existing_key(s3):
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"first", IfNoneMatch="*")

    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"second", IfNoneMatch="*")

    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"first"


# -- new, duplicate and conflicting events -------------------------------------


def test_new_event_is_stored(store, s3):
    event = make_event()

    result = store.put_event(event)

    assert result == PutResult("evt-9c21-002", event_key("evt-9c21-002"), "stored")
    stored = s3.get_object(Bucket=BUCKET, Key=result.s3_key)
    assert stored["Body"].read() == event.to_json_bytes()
    assert stored["ContentType"] == "application/json"
    assert stored["Metadata"]["content-sha256"] == hashlib.sha256(event.to_json_bytes()).hexdigest()


def test_new_event_writes_both_index_entries(store, s3):
    event = make_event()

    store.put_event(event)

    assert all_keys(s3) == sorted([event_key(event.event_id), *index_keys(event)])
    for key in index_keys(event):
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 0


def test_duplicate_event_is_stored_once(store, s3):
    event = make_event()
    store.put_event(event)
    first_etag = s3.head_object(Bucket=BUCKET, Key=event_key(event.event_id))["ETag"]

    result = store.put_event(make_event())

    assert result.status == "duplicate"
    assert len(all_keys(s3)) == 3
    assert s3.head_object(Bucket=BUCKET, Key=event_key(event.event_id))["ETag"] == first_etag


def test_conflicting_event_keeps_stored_content(store, s3):
    original = make_event()
    store.put_event(original)
    changed = make_event(payload={"cseq": "2 INVITE"}, timestamp="2026-03-02T14:06:00Z")

    result = store.put_event(changed)

    assert result == PutResult(
        original.event_id,
        event_key(original.event_id),
        "conflict",
        ("payload.cseq", "timestamp", "timestampOriginal"),
    )
    body = s3.get_object(Bucket=BUCKET, Key=result.s3_key)["Body"].read()
    assert body == original.to_json_bytes()


def test_conflicting_event_leaves_no_index_entries(store, s3):
    store.put_event(make_event())
    changed = make_event(timestamp="2026-03-02T14:06:00Z")

    store.put_event(changed)

    assert not set(index_keys(changed)) & set(all_keys(s3))
    assert len(all_keys(s3)) == 3


def test_conflict_deletes_index_entries_it_created(s3):
    original = make_event()
    EventStore(BUCKET, s3, time_index_shards=SHARDS).put_event(original)
    changed = make_event(callId="call-other", timestamp="2026-03-02T14:06:00Z")
    client = InterceptingClient(s3, lambda kwargs: None)
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    result = store.put_event(changed)

    assert result.status == "conflict"
    # Both entries were written, concurrently with the event object, then deleted.
    assert set(index_keys(changed)) <= set(client.put_keys)
    assert all_keys(s3) == sorted([event_key(original.event_id), *index_keys(original)])


def test_conflict_keeps_index_entry_that_existed(store, s3):
    original = make_event()
    store.put_event(original)
    changed = make_event(callId="call-other", timestamp="2026-03-02T14:06:00Z")
    existing_entry, created_entry = index_keys(changed)
    # An earlier request wrote this entry, so this request's put of it gets 412.
    s3.put_object(Bucket=BUCKET, Key=existing_entry, Body=b"")

    result = store.put_event(changed)

    assert result.status == "conflict"
    assert existing_entry in all_keys(s3)
    assert created_entry not in all_keys(s3)


def test_conflict_keeps_created_entries_of_stored_event(store, s3):
    # The stored event's own index writes failed. A conflicting post with the same
    # callId, timestamp and event type writes the very keys the stored event needs.
    original = make_event()
    s3.put_object(Bucket=BUCKET, Key=event_key(original.event_id), Body=original.to_json_bytes())
    changed = make_event(payload={"cseq": "2 INVITE"})
    assert index_keys(changed) == index_keys(original)

    result = store.put_event(changed)

    assert result.status == "conflict"
    assert all_keys(s3) == sorted([event_key(original.event_id), *index_keys(original)])


def test_failed_stray_delete_is_logged(s3, caplog):
    EventStore(BUCKET, s3, time_index_shards=SHARDS).put_event(make_event())
    changed = make_event(timestamp="2026-03-02T14:06:00Z")

    class FailingDeletes(InterceptingClient):
        def delete_object(self, **kwargs: Any) -> Any:
            raise client_error("AccessDenied", 403)

    store = EventStore(BUCKET, FailingDeletes(s3, lambda kwargs: None), time_index_shards=SHARDS)

    with caplog.at_level(logging.WARNING, logger="callflow.store"):
        result = store.put_event(changed)

    assert result.status == "conflict"
    logged_keys = {getattr(record, "s3Key", None) for record in caplog.records}
    assert set(index_keys(changed)) <= logged_keys
    assert set(index_keys(changed)) <= set(all_keys(s3))


def test_batch_conflict_keeps_other_events_entries(store, s3):
    original = make_event()
    store.put_event(original)
    changed = make_event(timestamp="2026-03-02T14:06:00Z")
    new = make_event("evt-9c21-003")

    results = store.put_events([changed, new])

    assert [result.status for result in results] == ["conflict", "stored"]
    expected = [event_key(original.event_id), *index_keys(original)]
    expected += [event_key(new.event_id), *index_keys(new)]
    assert all_keys(s3) == sorted(expected)


# -- concurrency of the writes -------------------------------------------------


class BarrierClient(InterceptingClient):
    """Hold every put_object until `parties` puts are in flight at once.

    With sequential puts the barrier times out and put_object raises
    threading.BrokenBarrierError, so a test fails instead of hanging. It has
    no put_objects, so the store makes its writes on the pool.
    """

    put_objects = None

    def __init__(self, client: Any, parties: int, timeout: float = 5.0) -> None:
        super().__init__(client, lambda kwargs: None)
        self.barrier = threading.Barrier(parties, timeout=timeout)

    def put_object(self, **kwargs: Any) -> Any:
        self.barrier.wait()
        return super().put_object(**kwargs)


def test_event_writes_are_issued_concurrently(plain_s3):
    event = make_event()
    client = BarrierClient(plain_s3, parties=3)
    store = EventStore(BUCKET, client, time_index_shards=SHARDS, max_workers=4)

    result = store.put_event(event)

    assert result.status == "stored"
    assert sorted(client.put_keys) == sorted([event_key(event.event_id), *index_keys(event)])


def test_event_writes_are_sent_together(plain_s3):
    event = make_event()
    client = SendingTogether(plain_s3)
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    result = store.put_event(event)

    assert result.status == "stored"
    assert client.sent_together == [[event_key(event.event_id), *index_keys(event)]]


def test_ten_events_are_sent_together(plain_s3):
    events = [make_event(f"evt-{n}") for n in range(10)]
    client = SendingTogether(plain_s3)
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    results = store.put_events(events)

    assert [result.status for result in results] == ["stored"] * 10
    assert len(client.sent_together) == 1
    assert len(client.sent_together[0]) == 30


def test_more_than_ten_events_go_to_the_pool(plain_s3):
    events = [make_event(f"evt-{n}") for n in range(11)]
    client = SendingTogether(plain_s3)
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    results = store.put_events(events)

    assert [result.status for result in results] == ["stored"] * 11
    assert client.sent_together == []
    assert len(all_keys(plain_s3)) == 33


def test_large_batch_on_small_pool_completes(s3):
    events = [make_event(f"evt-{n}") for n in range(40)]
    store = EventStore(BUCKET, s3, time_index_shards=SHARDS, max_workers=2)
    results: list[Any] = []
    # A deadlocked pool would block put_events for ever, so it runs in a thread
    # that the test waits for with a timeout.
    worker = threading.Thread(target=lambda: results.extend(store.put_events(events)), daemon=True)

    worker.start()
    worker.join(timeout=60)

    assert not worker.is_alive()
    assert [result.status for result in results] == ["stored"] * len(events)
    assert len(all_keys(s3)) == 3 * len(events)


# -- concurrent writers --------------------------------------------------------


def competing_writer(s3: Any, key: str, body: bytes) -> Callable[[dict[str, Any]], None]:
    """Write `body` to `key` just before the store's own put of that key, once."""
    done: list[bool] = []

    def before_put(kwargs: dict[str, Any]) -> None:
        if kwargs["Key"] == key and not done:
            done.append(True)
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    return before_put


def test_race_lost_to_identical_write_is_duplicate(s3):
    event = make_event()
    key = event_key(event.event_id)
    client = InterceptingClient(s3, competing_writer(s3, key, event.to_json_bytes()))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    result = store.put_event(event)

    assert result.status == "duplicate"
    assert set(index_keys(event)) <= set(all_keys(s3))


def test_race_lost_to_different_write_is_conflict(s3):
    event = make_event()
    key = event_key(event.event_id)
    other = make_event(payload={"cseq": "9 INVITE"}).to_json_bytes()
    client = InterceptingClient(s3, competing_writer(s3, key, other))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    result = store.put_event(event)

    assert result.status == "conflict"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == other
    # The other content has the same callId, timestamp and event type, so the
    # entries this post created index the stored event and are kept.
    assert all_keys(s3) == sorted([key, *index_keys(event)])


def fail_puts(
    matches: Callable[[str], bool], error: Exception, times: int | None = None
) -> Callable[[dict[str, Any]], None]:
    """Raise `error` for puts whose key `matches`, the first `times` times (always if None)."""
    raised: list[str] = []

    def before_put(kwargs: dict[str, Any]) -> None:
        if matches(kwargs["Key"]) and (times is None or len(raised) < times):
            raised.append(kwargs["Key"])
            raise error

    return before_put


def test_conditional_request_conflict_is_retried(s3):
    event = make_event()
    key = event_key(event.event_id)
    conflict = client_error("ConditionalRequestConflict", 409)
    client = InterceptingClient(s3, fail_puts(lambda k: k == key, conflict, times=2))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    result = store.put_event(event)

    assert result.status == "stored"
    assert client.put_keys.count(key) == 3


def test_lasting_conditional_conflict_rechecks_stored_object(s3):
    event = make_event()
    key = event_key(event.event_id)
    s3.put_object(Bucket=BUCKET, Key=key, Body=event.to_json_bytes())
    conflict = client_error("ConditionalRequestConflict", 409)
    client = InterceptingClient(s3, fail_puts(lambda k: k == key, conflict))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    result = store.put_event(event)

    assert result.status == "duplicate"
    assert client.put_keys.count(key) == store_module.CONDITIONAL_CONFLICT_ATTEMPTS
    assert set(index_keys(event)) <= set(all_keys(s3))


def test_lasting_conditional_conflict_without_object_is_unavailable(s3):
    event = make_event()
    conflict = client_error("ConditionalRequestConflict", 409)
    client = InterceptingClient(s3, fail_puts(lambda k: k.startswith("events/"), conflict))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    with pytest.raises(StorageUnavailableError):
        store.put_event(event)

    # The index entries were written concurrently, and a retry writes the event object.
    assert event_key(event.event_id) not in all_keys(s3)


def test_lasting_conditional_conflict_on_index_entry_is_unavailable(s3):
    event = make_event()
    conflict = client_error("ConditionalRequestConflict", 409)
    client = InterceptingClient(s3, fail_puts(lambda k: k.startswith("index/calls/"), conflict))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    with pytest.raises(StorageUnavailableError):
        store.put_event(event)


# -- partial writes and index repair -------------------------------------------


def test_duplicate_repairs_missing_index_entries(store, s3):
    event = make_event()
    store.put_event(event)
    for key in index_keys(event):
        s3.delete_object(Bucket=BUCKET, Key=key)

    result = store.put_event(event)

    assert result.status == "duplicate"
    assert set(index_keys(event)) <= set(all_keys(s3))


def test_failed_index_write_raises_and_retry_completes(s3):
    event = make_event()
    internal_error = client_error("InternalError", 500)
    fails_time_index = fail_puts(lambda k: k.startswith("index/time/"), internal_error)
    failing = InterceptingClient(s3, fails_time_index)

    with pytest.raises(StorageUnavailableError):
        EventStore(BUCKET, failing, time_index_shards=SHARDS).put_event(event)
    assert time_index_key(event, SHARDS) not in all_keys(s3)

    result = EventStore(BUCKET, s3, time_index_shards=SHARDS).put_event(event)

    assert result.status == "duplicate"
    assert set(index_keys(event)) <= set(all_keys(s3))


def test_duplicate_repairs_one_missing_index_entry(store, s3):
    event = make_event()
    store.put_event(event)
    kept_entry, missing_entry = index_keys(event)
    s3.delete_object(Bucket=BUCKET, Key=missing_entry)

    result = store.put_event(event)

    assert result.status == "duplicate"
    assert kept_entry in all_keys(s3)
    assert missing_entry in all_keys(s3)


def test_failed_event_write_raises_and_retry_stores(s3):
    event = make_event()
    key = event_key(event.event_id)
    internal_error = client_error("InternalError", 500)
    failing = InterceptingClient(s3, fail_puts(lambda k: k == key, internal_error))

    with pytest.raises(StorageUnavailableError):
        EventStore(BUCKET, failing, time_index_shards=SHARDS).put_event(event)
    assert all_keys(s3) == sorted(index_keys(event))

    result = EventStore(BUCKET, s3, time_index_shards=SHARDS).put_event(event)

    assert result.status == "stored"
    assert all_keys(s3) == sorted([key, *index_keys(event)])


# -- S3 failures ---------------------------------------------------------------


def test_missing_bucket_is_storage_unavailable(s3):
    store = EventStore("callflow-absent", s3, time_index_shards=SHARDS)

    with pytest.raises(StorageUnavailableError) as caught:
        store.put_event(make_event())

    assert caught.value.status == 503
    assert caught.value.code == "STORAGE_UNAVAILABLE"
    assert "Retry-After" in caught.value.headers


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://s3.us-east-1.amazonaws.com"),
        client_error("SlowDown", 503),
    ],
)
def test_connection_failure_is_storage_unavailable(s3, error):
    client = InterceptingClient(s3, fail_puts(lambda k: True, error))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS)

    with pytest.raises(StorageUnavailableError):
        store.put_event(make_event())

    assert all_keys(s3) == []


def test_read_failure_after_precondition_is_storage_unavailable(s3):
    event = make_event()
    s3.put_object(Bucket=BUCKET, Key=event_key(event.event_id), Body=b"{}")

    class FailingReads(InterceptingClient):
        def get_object(self, **kwargs: Any) -> Any:
            raise client_error("InternalError", 500)

    store = EventStore(BUCKET, FailingReads(s3, lambda kwargs: None), time_index_shards=SHARDS)

    with pytest.raises(StorageUnavailableError):
        store.put_event(event)


def test_put_events_reports_failures_in_order(s3):
    events = [make_event(f"evt-{n}") for n in range(5)]
    failing_key = event_key("evt-2")
    internal_error = client_error("InternalError", 500)
    client = InterceptingClient(s3, fail_puts(lambda k: k == failing_key, internal_error))
    store = EventStore(BUCKET, client, time_index_shards=SHARDS, max_workers=3)

    results = store.put_events(events)

    assert [type(result).__name__ for result in results] == [
        "PutResult",
        "PutResult",
        "StorageUnavailableError",
        "PutResult",
        "PutResult",
    ]
    assert [result.event_id for result in results if isinstance(result, PutResult)] == [
        "evt-0",
        "evt-1",
        "evt-3",
        "evt-4",
    ]


def test_rejected_batch_writes_nothing(s3, monkeypatch):
    monkeypatch.setenv("EVENTS_BUCKET", BUCKET)
    get_settings.cache_clear()
    body = json.dumps([make_event("evt-0").to_dict(), {"eventType": "CALL_STARTED"}])

    with pytest.raises(ValidationError):
        parse_request_body(
            body, is_base64=False, content_type="application/json", settings=get_settings()
        )

    get_settings.cache_clear()
    assert all_keys(s3) == []


# -- reads and listings --------------------------------------------------------


def test_get_event_bytes_returns_stored_bytes(store):
    event = make_event()
    store.put_event(event)

    assert store.get_event_bytes(event.event_id) == event.to_json_bytes()


def test_get_event_bytes_of_missing_event_is_none(store):
    assert store.get_event_bytes("evt-absent") is None


def test_get_events_bytes_keeps_order(store):
    events = [make_event(f"evt-{n}") for n in range(6)]
    store.put_events(events)
    ids = ["evt-5", "evt-absent", "evt-0", "evt-3"]

    stored = store.get_events_bytes(ids)

    expected = [events[5], None, events[0], events[3]]
    assert stored == [event.to_json_bytes() if event else None for event in expected]


def test_get_event_bytes_failure_is_storage_unavailable(s3):
    store = EventStore("callflow-absent", s3, time_index_shards=SHARDS)

    with pytest.raises(StorageUnavailableError):
        store.get_event_bytes("evt-1")


def test_list_keys_pages_in_key_order(store, s3):
    for name in ["p/c", "p/a", "p/b", "q/a"]:
        s3.put_object(Bucket=BUCKET, Key=name, Body=b"")

    first, truncated = store.list_keys("p/", start_after=None, max_keys=2)
    rest, rest_truncated = store.list_keys("p/", start_after=first[-1], max_keys=2)

    assert (first, truncated) == (["p/a", "p/b"], True)
    assert (rest, rest_truncated) == (["p/c"], False)


def test_list_keys_of_empty_prefix_is_empty(store):
    assert store.list_keys("index/calls/00/", start_after=None, max_keys=10) == ([], False)


def test_check_bucket_passes_for_existing_bucket(store):
    store.check_bucket()


def test_check_bucket_of_missing_bucket_is_unavailable(s3):
    store = EventStore("callflow-absent", s3, time_index_shards=SHARDS)

    with pytest.raises(StorageUnavailableError):
        store.check_bucket()


# -- client --------------------------------------------------------------------


def test_make_s3_client_is_cached_with_standard_retries():
    make_s3_client.cache_clear()

    client = make_s3_client()

    assert make_s3_client() is client
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert client.meta.config.connect_timeout == store_module.S3_CONNECT_TIMEOUT_SECONDS
    assert client.meta.config.read_timeout == store_module.S3_READ_TIMEOUT_SECONDS
    make_s3_client.cache_clear()


@pytest.mark.parametrize(
    ("stored", "posted", "expected"),
    [
        ({"a": 1, "payload": {"x": 1, "y": 2}}, {"a": 1, "payload": {"x": 1, "y": 3}}, ("payload.y",)),
        ({"a": 1, "t": "12:00:00Z"}, {"a": 1, "t": "12:00:00.000Z"}, ("t",)),
        ({"a": 1}, {"a": 1, "source": "pbx"}, ("source",)),
        ({"a": 1, "payload": {"x": 1}}, {"a": 1, "payload": {}}, ("payload.x",)),
        ({"a": 1, "payload": {"x": None}}, {"a": 1, "payload": {}}, ("payload.x",)),
        ({"a": 1, "payload": {"x": 1}}, {"a": 1, "payload": "text"}, ("payload",)),
        ({"a": 1}, {"a": 1}, ()),
    ],
)
def test_differing_fields_names_what_changed(stored, posted, expected):
    from callflow.store import differing_fields

    as_bytes = [json.dumps(document, sort_keys=True).encode() for document in (stored, posted)]

    assert differing_fields(*as_bytes) == expected


def test_differing_fields_of_non_objects():
    from callflow.store import differing_fields

    assert differing_fields(b"[1]", b'{"a": 1}') == ("*",)
    assert differing_fields(b"not json", b'{"a": 1}') == ("*",)
