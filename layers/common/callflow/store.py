"""S3 access of the Callflow Service: conditional put, get and list.

This is the only module that calls S3. Every write is a conditional put with
If-None-Match: *, so an event object is written once and never overwritten:

- 412 PreconditionFailed means the key exists. For an event object the store
  reads it back: equal bytes make the post a duplicate, different bytes a
  conflict. For an index entry (zero bytes) it means the entry is already there.
- 409 ConditionalRequestConflict means another conditional write of the same key
  is in flight. The store retries a few times, then checks what the key holds.

Storing an event writes its event object and its two index entries (call and
time) concurrently, so a new event takes one S3 round trip. The writes of all
events of a request go out together: from the calling thread through the
client's put_objects for up to 10 events, on the pool for more or for boto3's
client. put_event and put_events report "stored" or "duplicate" only after
all three writes succeeded, so the event object and both index entries exist.
A duplicate also writes any missing index entry, so a client that got 503
after a partial write repairs the index by retrying. Writing the three keys
in any order is safe for these reasons:

- When the event object write fails, its index entries may point at a missing
  object until a retry of the request writes it. The retriever skips an index
  entry whose event object is missing.
- When the post conflicts with a stored event (same eventId, other content), its
  index entries may name the other content's callId, timestamp or event type.
  The store deletes each index entry that this request created (its conditional
  put succeeded) unless the stored event has the same index key. It never
  deletes an entry that existed before (412), because the stored event or an
  earlier post may rely on it. When a delete fails the store logs it, and the
  retriever skips an index entry that does not match its event object.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from callflow.errors import StorageUnavailableError
from callflow.events import CallEvent
from callflow.keys import call_index_key, event_key, time_index_key

STATUS_STORED = "stored"
STATUS_DUPLICATE = "duplicate"
STATUS_CONFLICT = "conflict"

EVENT_CONTENT_TYPE = "application/json"
CONTENT_SHA256_METADATA = "content-sha256"
DEFAULT_MAX_WORKERS = 32
# The maximum number of writes put_events sends at once from the calling
# thread: the writes of 10 events, on no more connections than the client's pool keeps.
# NOTE: 30 was measured on the local emulator only. Against S3 in a region the
# best cut-off between this and the thread pool is unmeasured.
SEND_TOGETHER_MAX_WRITES = 30

# Retries of 409 ConditionalRequestConflict, on top of the client's own retries:
# waits of 0.05, 0.1 and 0.2 seconds, then the store checks the key instead.
CONDITIONAL_CONFLICT_ATTEMPTS = 4
CONDITIONAL_CONFLICT_DELAY_SECONDS = 0.05

# S3 client settings, for the layer's client and boto3's alike. Both retry
# throttling, 5xx responses and connection errors with backoff (standard mode).
# The attempts count the first one too, so one call stalls for at most about
# 3 x (1 + 3) seconds plus backoff, inside the storer's default 15-second
# timeout. The pool has a connection for every worker of an EventStore with the
# default max_workers: a batch of 100 events is 300 writes, which 32 workers
# finish in 10 round trips.
S3_TOTAL_MAX_ATTEMPTS = 3
S3_CONNECT_TIMEOUT_SECONDS = 1
S3_READ_TIMEOUT_SECONDS = 3
S3_MAX_POOL_CONNECTIONS = 32

NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
PRECONDITION_FAILED_CODE = "PreconditionFailed"
CONDITIONAL_CONFLICT_CODE = "ConditionalRequestConflict"

# ClientError covers every error response from S3. botocore's ConnectionError
# (EndpointConnectionError, ConnectTimeoutError) and HTTPClientError
# (ReadTimeoutError, ConnectionClosedError) cover responses that never arrived.
S3_FAILURES = (ClientError, BotocoreConnectionError, HTTPClientError)

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class PutResult:
    """The outcome of storing one event: status is "stored", "duplicate" or "conflict".

    A conflict names the fields whose values differ from the stored event's,
    such as "timestampOriginal" or "payload.codec". It names them without
    their values, because the values may be personal data another producer sent.
    """

    event_id: str
    s3_key: str
    status: str
    differing_fields: tuple[str, ...] = ()


class _WriteInFlightError(Exception):
    """S3 kept returning 409 ConditionalRequestConflict for one key."""


@dataclass(frozen=True)
class _EventObjectWrite:
    """The outcome of writing one event object, with the stored bytes when it already existed."""

    result: PutResult
    stored_body: bytes | None = None


@dataclass(frozen=True)
class _Write:
    """One conditional put of a request: the event object when index_key is None."""

    event: CallEvent
    index_key: str | None = None


# The outcome of one _Write: the event object's outcome, or for an index entry
# True when this put created it and False when it existed already.
_WriteOutcome = _EventObjectWrite | bool | StorageUnavailableError


class EventStore:
    """Events and index entries in one S3 bucket.

    The thread pool lives as long as the store, so a store created once per
    Lambda execution environment reuses its threads across invocations. At
    most `max_workers` pool threads and the calling thread make S3 requests at
    the same time.
    """

    def __init__(
        self,
        bucket: str,
        s3_client: Any,
        *,
        time_index_shards: int,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.bucket = bucket
        self.s3_client = s3_client
        self.time_index_shards = time_index_shards
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="callflow-s3")

    # -- writes ---------------------------------------------------------------

    def put_event(self, event: CallEvent) -> PutResult:
        """Store one event: write its event object and two index entries concurrently.

        Raises StorageUnavailableError when S3 fails after botocore's retries;
        the event may then be partly written, and a retry completes it.
        """
        result = self.put_events([event])[0]
        if isinstance(result, StorageUnavailableError):
            raise result
        return result

    def put_events(self, events: Sequence[CallEvent]) -> list[PutResult | StorageUnavailableError]:
        """Store events concurrently; return one result or error per event, in input order.

        All event objects and index entries form one list of writes, made
        together (see _write_all). No pool task waits for another pool task,
        which could deadlock a full pool. Only after a conflict does a second
        map delete the index entries that the conflicting events created.
        """
        index_keys = [self._index_keys(event) for event in events]
        writes = [
            _Write(event, key)
            for event, keys in zip(events, index_keys, strict=True)
            for key in (None, *keys)
        ]
        outcomes = iter(self._write_all(writes))

        results: list[PutResult | StorageUnavailableError] = []
        stray_keys: list[str] = []
        for keys in index_keys:
            # The outcomes come in the order of `writes`: the event object, then its entries.
            object_outcome = next(outcomes)
            entry_outcomes = {key: next(outcomes) for key in keys}
            results.append(self._event_result(object_outcome, list(entry_outcomes.values())))
            if isinstance(object_outcome, _EventObjectWrite):
                stray_keys.extend(self._stray_index_keys(object_outcome, entry_outcomes))

        if stray_keys:
            self._map(self._delete_stray_index_entry, stray_keys)
        return results

    def _write_all(self, writes: Sequence[_Write]) -> list[_WriteOutcome]:
        """Make every write and return their outcomes in order.

        Up to SEND_TOGETHER_MAX_WRITES writes go out at once from the calling
        thread when the client has put_objects (the layer's client does), so
        a one-event post makes its three writes without a hand-off to the pool.
        Only the writes that need more than their first put (a key that
        exists, a retry after 409) continue on the pool. More writes, or
        boto3's client, go to the pool from the start.
        """
        put_objects = getattr(self.s3_client, "put_objects", None)
        if put_objects is None or len(writes) > SEND_TOGETHER_MAX_WRITES:
            return self._map(self._write, writes)

        puts = [{**self._put_arguments(write), "IfNoneMatch": "*"} for write in writes]
        first_puts = put_objects(Bucket=self.bucket, Puts=puts)
        outcomes: dict[int, _WriteOutcome] = {}
        first_errors: dict[int, Exception] = {}
        for index, (write, first) in enumerate(zip(writes, first_puts, strict=True)):
            if isinstance(first, Exception):
                first_errors[index] = first
            else:
                outcomes[index] = self._created_outcome(write)

        failed = list(first_errors)
        followed_up = self._map(lambda index: self._write(writes[index], first_errors[index]), failed)
        outcomes.update(zip(failed, followed_up, strict=True))
        return [outcomes[index] for index in range(len(writes))]

    def _write(self, write: _Write, first_error: Exception | None = None) -> _WriteOutcome:
        """Make one write. `first_error` is the error of its first put when put_objects already sent it."""
        if write.index_key is None:
            return self._put_event_object_or_error(write.event, first_error)
        return self._put_index_entry_or_error(write.index_key, first_error)

    @staticmethod
    def _created_outcome(write: _Write) -> _WriteOutcome:
        """Return the outcome of a write whose first put created its key."""
        if write.index_key is not None:
            return True
        event_id = write.event.event_id
        return _EventObjectWrite(PutResult(event_id, event_key(event_id), STATUS_STORED))

    @staticmethod
    def _put_arguments(write: _Write) -> dict[str, Any]:
        """Return put_object's arguments for a write, without Bucket and IfNoneMatch."""
        if write.index_key is not None:
            return {"Key": write.index_key, "Body": b""}
        body = write.event.to_json_bytes()
        return {
            "Key": event_key(write.event.event_id),
            "Body": body,
            "ContentType": EVENT_CONTENT_TYPE,
            "Metadata": {CONTENT_SHA256_METADATA: hashlib.sha256(body).hexdigest()},
        }

    @staticmethod
    def _event_result(
        object_outcome: _WriteOutcome, index_outcomes: list[_WriteOutcome]
    ) -> PutResult | StorageUnavailableError:
        """Combine an event's three write outcomes into its result."""
        if isinstance(object_outcome, StorageUnavailableError):
            return object_outcome
        assert isinstance(object_outcome, _EventObjectWrite)
        result = object_outcome.result
        if result.status == STATUS_CONFLICT:
            # The conflict is final whatever happened to the index entries.
            return result
        for outcome in index_outcomes:
            if isinstance(outcome, StorageUnavailableError):
                return outcome
        return result

    def _stray_index_keys(
        self, object_outcome: _EventObjectWrite, index_outcomes: dict[str, _WriteOutcome]
    ) -> list[str]:
        """Return the index entries that a conflicting post created and the stored event lacks."""
        if object_outcome.result.status != STATUS_CONFLICT:
            return []
        assert object_outcome.stored_body is not None
        stored_keys = self._stored_index_keys(object_outcome.stored_body)
        return [
            key
            for key, outcome in index_outcomes.items()
            if outcome is True and key not in stored_keys
        ]

    def _stored_index_keys(self, body: bytes) -> frozenset[str]:
        """Return the index keys of a stored event, or none if its bytes are not an event."""
        try:
            data = json.loads(body)
            stored = CallEvent(
                event_id=data["eventId"],
                event_type=data["eventType"],
                call_id=data["callId"],
                timestamp=datetime.fromisoformat(data["timestamp"]),
                timestamp_original=data["timestampOriginal"],
            )
            return frozenset(self._index_keys(stored))
        except (ValueError, KeyError, TypeError):
            return frozenset()

    def _delete_stray_index_entry(self, key: str) -> None:
        """Delete an index entry that a conflicting post created.

        A failure is logged and not raised. The retriever skips an entry that
        does not match its event object, so no query returns an event through
        a stray entry left here.
        """
        try:
            self.s3_client.delete_object(Bucket=self.bucket, Key=key)
        except S3_FAILURES as error:
            cause = _error_code(error) if isinstance(error, ClientError) else type(error).__name__
            logger.warning(
                "Failed to delete an index entry written for a conflicting event",
                extra={"s3Key": key, "errorCode": cause, "error": str(error)},
            )

    def _put_event_object(self, event: CallEvent, first_error: Exception | None = None) -> _EventObjectWrite:
        """Write the event object unless it exists, and compare the stored bytes when it does."""
        arguments = self._put_arguments(_Write(event))
        key, body = arguments["Key"], arguments["Body"]

        try:
            written = self._put_if_absent(arguments, first_error)
        except _WriteInFlightError:
            written = False

        if written:
            return _EventObjectWrite(PutResult(event.event_id, key, STATUS_STORED))
        stored = self._read_existing(event.event_id, key)
        if stored == body:
            return _EventObjectWrite(PutResult(event.event_id, key, STATUS_DUPLICATE), stored_body=stored)
        result = PutResult(event.event_id, key, STATUS_CONFLICT, differing_fields(stored, body))
        return _EventObjectWrite(result, stored_body=stored)

    def _put_event_object_or_error(
        self, event: CallEvent, first_error: Exception | None = None
    ) -> _EventObjectWrite | StorageUnavailableError:
        try:
            return self._put_event_object(event, first_error)
        except StorageUnavailableError as error:
            return error

    def _index_keys(self, event: CallEvent) -> tuple[str, str]:
        return call_index_key(event), time_index_key(event, self.time_index_shards)

    def _read_existing(self, event_id: str, key: str) -> bytes:
        """Return the bytes of an event object that S3 reported as existing."""
        stored = self.get_event_bytes(event_id)
        if stored is None:
            # S3 reported the key as existing (412) or being written (409), but the
            # object cannot be read, for example because that other write failed.
            raise StorageUnavailableError(
                f"S3 object {key} was reported as existing but could not be read; "
                "retry the request."
            )
        return stored

    def _put_index_entry(self, key: str, first_error: Exception | None = None) -> bool:
        """Write an empty index entry unless it exists. Return True if this put created it."""
        try:
            return self._put_if_absent({"Key": key, "Body": b""}, first_error)
        except _WriteInFlightError:
            # Another request is writing the entry, so this one did not create it.
            if not self._exists(key):
                raise StorageUnavailableError(
                    f"S3 kept reporting a concurrent write of index entry {key}; retry the request."
                ) from None
            return False

    def _put_index_entry_or_error(
        self, key: str, first_error: Exception | None = None
    ) -> bool | StorageUnavailableError:
        try:
            return self._put_index_entry(key, first_error)
        except StorageUnavailableError as error:
            return error

    def _put_if_absent(self, arguments: dict[str, Any], first_error: Exception | None = None) -> bool:
        """Put an object only if its key does not exist, and return False if it already existed.

        `arguments` are put_object's, without Bucket and IfNoneMatch.
        `first_error` is the error of a first put that put_objects already
        sent, handled here as if this call had sent it. Raises
        _WriteInFlightError when S3 returns 409 ConditionalRequestConflict on
        every attempt, and StorageUnavailableError on any other S3 failure.
        """
        key = arguments["Key"]
        for attempt in range(CONDITIONAL_CONFLICT_ATTEMPTS):
            try:
                if attempt == 0 and first_error is not None:
                    raise first_error
                self.s3_client.put_object(Bucket=self.bucket, IfNoneMatch="*", **arguments)
                return True
            except ClientError as error:
                code = _error_code(error)
                if code == PRECONDITION_FAILED_CODE:
                    return False
                if code != CONDITIONAL_CONFLICT_CODE:
                    raise _unavailable("write", key, error) from error
                if attempt + 1 < CONDITIONAL_CONFLICT_ATTEMPTS:
                    delay = CONDITIONAL_CONFLICT_DELAY_SECONDS * 2**attempt
                    logger.warning(
                        "Retrying a conditional S3 write after 409 ConditionalRequestConflict",
                        extra={"s3Key": key, "attempt": attempt + 1, "delaySeconds": delay},
                    )
                    time.sleep(delay)
            except S3_FAILURES as error:
                raise _unavailable("write", key, error) from error
        raise _WriteInFlightError(key)

    # -- reads ----------------------------------------------------------------

    def get_event_bytes(self, event_id: str) -> bytes | None:
        """Return the stored canonical JSON of an event, or None if it does not exist."""
        key = event_key(event_id)
        try:
            response = self.s3_client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except ClientError as error:
            if _error_code(error) in NOT_FOUND_CODES:
                return None
            raise _unavailable("read", key, error) from error
        except S3_FAILURES as error:
            raise _unavailable("read", key, error) from error

    def get_events_bytes(self, event_ids: Sequence[str]) -> list[bytes | None]:
        """Return the stored bytes of each event concurrently, in input order.

        Raises StorageUnavailableError if any read fails.
        """
        return self._map(self.get_event_bytes, event_ids)

    def list_keys(
        self, prefix: str, *, start_after: str | None, max_keys: int
    ) -> tuple[list[str], bool]:
        """List up to `max_keys` keys under `prefix` in key order; return (keys, truncated)."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if start_after:
            request["StartAfter"] = start_after
        try:
            response = self.s3_client.list_objects_v2(**request)
        except S3_FAILURES as error:
            raise _unavailable("list", prefix, error) from error
        keys = [item["Key"] for item in response.get("Contents", [])]
        return keys, bool(response.get("IsTruncated", False))

    def check_bucket(self) -> None:
        """Raise StorageUnavailableError unless the bucket exists and is reachable."""
        try:
            self.s3_client.head_bucket(Bucket=self.bucket)
        except S3_FAILURES as error:
            raise _unavailable("reach", f"bucket {self.bucket}", error) from error

    # -- helpers --------------------------------------------------------------

    def _exists(self, key: str) -> bool:
        try:
            self.s3_client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if _error_code(error) in NOT_FOUND_CODES:
                return False
            raise _unavailable("read", key, error) from error
        except S3_FAILURES as error:
            raise _unavailable("read", key, error) from error

    def _map(self, function: Callable[[_Item], _Result], items: Iterable[_Item]) -> list[_Result]:
        """Apply `function` to every item concurrently; return the results in input order.

        The calling thread takes the first item itself instead of waiting idle,
        so a single item never changes threads. Raises the first exception in
        input order, after cancelling the tasks that have not started.
        """
        items = list(items)
        if len(items) <= 1:
            return [function(item) for item in items]

        futures = [self._pool.submit(function, item) for item in items[1:]]
        try:
            first = function(items[0])
            return [first, *(future.result() for future in futures)]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def differing_fields(stored: bytes, posted: bytes) -> tuple[str, ...]:
    """Return the names of the fields whose values differ between two canonical events.

    Top-level fields are compared, and the fields of an object such as
    payload one level down ("payload.codec"). Bytes that are not a JSON
    object differ as a whole, named "*".
    """
    try:
        old, new = json.loads(stored), json.loads(posted)
    except ValueError:
        return ("*",)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ("*",)
    names: list[str] = []
    for name in sorted(set(old) | set(new)):
        old_value, new_value = old.get(name), new.get(name)
        if old_value == new_value and (name in old) == (name in new):
            continue
        if isinstance(old_value, dict) and isinstance(new_value, dict):
            names += [
                f"{name}.{inner}"
                for inner in sorted(set(old_value) | set(new_value))
                if old_value.get(inner) != new_value.get(inner) or (inner in old_value) != (inner in new_value)
            ]
        else:
            names.append(name)
    return tuple(names)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _unavailable(action: str, target: str, error: Exception) -> StorageUnavailableError:
    """Log an S3 failure and return the StorageUnavailableError to raise for it."""
    cause = _error_code(error) if isinstance(error, ClientError) else type(error).__name__
    logger.error(
        f"S3 failed to {action} {target}",
        extra={"s3Target": target, "errorCode": cause, "error": str(error)},
    )
    return StorageUnavailableError(
        f"Storage is unavailable: S3 failed to {action} {target} ({cause}); retry the request."
    )


@lru_cache(maxsize=1)
def make_s3_client() -> Any:
    """Return the process-wide S3 client, created on first use.

    This is the layer's own client (callflow.awsclient), which saves a cold
    start the import of boto3 and the load of its S3 model. boto3's client is
    used instead when callflow.awsclient.S3Client.from_environment says so:
    CALLFLOW_AWS_CLIENT=boto3, traced AWS calls, or no credentials or region
    in the environment. Both read an optional AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL (a local emulator) and take the settings above.
    """
    from callflow.awsclient import S3Client

    client = S3Client.from_environment(
        connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
        read_timeout=S3_READ_TIMEOUT_SECONDS,
        max_attempts=S3_TOTAL_MAX_ATTEMPTS,
        max_pool_connections=S3_MAX_POOL_CONNECTIONS,
    )
    return client if client is not None else make_boto3_s3_client()


def make_boto3_s3_client() -> Any:
    """Return a new boto3 S3 client with the store's retry, timeout and pool settings."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": S3_TOTAL_MAX_ATTEMPTS},
        connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
        read_timeout=S3_READ_TIMEOUT_SECONDS,
        max_pool_connections=S3_MAX_POOL_CONNECTIONS,
    )
    return boto3.client("s3", config=config)
