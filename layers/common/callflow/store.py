"""S3 access of the Callflow Service: conditional put, get and list.

This is the only module that calls S3. Every write is a conditional put with
If-None-Match: *, so an event object is written once and never overwritten:

- 412 PreconditionFailed means the key exists. For an event object the store
  reads it back: equal bytes make the post a duplicate, different bytes a
  conflict. For an index entry (zero bytes) it means the entry is already there.
- 409 ConditionalRequestConflict means another conditional write of the same key
  is in flight. The store retries a few times, then checks what the key holds.

put_event reports "stored" or "duplicate" only after the event object and both
index entries exist. A duplicate also writes any missing index entry, so a
client that got 503 after a partial write repairs the index by retrying.

The event object is written before its index entries, so an index entry never
points at an object that was not stored, and a conflicting post writes no index
entry. The two index entries do not depend on each other and are written
concurrently: storing one event takes two S3 round trips, not three.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from callflow.errors import StorageUnavailableError
from callflow.keys import call_index_key, event_key, time_index_key

if TYPE_CHECKING:
    from callflow.events import CallEvent

STATUS_STORED = "stored"
STATUS_DUPLICATE = "duplicate"
STATUS_CONFLICT = "conflict"

EVENT_CONTENT_TYPE = "application/json"
CONTENT_SHA256_METADATA = "content-sha256"
DEFAULT_MAX_WORKERS = 16

# Retries of 409 ConditionalRequestConflict, on top of botocore's own retries:
# waits of 0.05, 0.1 and 0.2 seconds, then the store checks the key instead.
CONDITIONAL_CONFLICT_ATTEMPTS = 4
CONDITIONAL_CONFLICT_DELAY_SECONDS = 0.05

# botocore client settings. In standard mode botocore retries throttling, 5xx
# responses and connection errors with backoff. total_max_attempts counts the
# first attempt too, so one call stalls for at most about 3 x (1 + 3) seconds
# plus backoff, inside the storer's default 15-second timeout. The pool has a
# connection for every worker of an EventStore with the default max_workers.
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
    """The outcome of storing one event: status is "stored", "duplicate" or "conflict"."""

    event_id: str
    s3_key: str
    status: str


class _WriteInFlightError(Exception):
    """S3 kept returning 409 ConditionalRequestConflict for one key."""


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
        """Store one event, then write its two index entries concurrently.

        Raises StorageUnavailableError when S3 fails after botocore's retries;
        the event may then be partly written, and a retry completes it.
        """
        result = self._put_event_object(event)
        if result.status != STATUS_CONFLICT:
            self._map(self._put_index_entry, self._index_keys(event))
        return result

    def put_events(self, events: Sequence[CallEvent]) -> list[PutResult | StorageUnavailableError]:
        """Store events concurrently; return one result or error per event, in input order.

        The event objects are written first, then the index entries of every
        event that is stored or a duplicate. Each phase maps over the pool, so
        no pool task waits for another pool task, which could deadlock a full pool.
        """
        results = self._map(self._put_event_object_or_error, events)

        pending = [
            (position, index_key)
            for position, (event, result) in enumerate(zip(events, results, strict=True))
            if isinstance(result, PutResult) and result.status != STATUS_CONFLICT
            for index_key in self._index_keys(event)
        ]
        failures = self._map(self._put_index_entry_or_error, [key for _, key in pending])

        for (position, _), failure in zip(pending, failures, strict=True):
            if failure is not None and isinstance(results[position], PutResult):
                results[position] = failure
        return results

    def _put_event_object(self, event: CallEvent) -> PutResult:
        """Write the event object unless it exists; after "conflict" no index entry may follow."""
        key = event_key(event.event_id)
        body = event.to_json_bytes()
        metadata = {CONTENT_SHA256_METADATA: hashlib.sha256(body).hexdigest()}

        try:
            written = self._put_if_absent(
                key, body, ContentType=EVENT_CONTENT_TYPE, Metadata=metadata
            )
        except _WriteInFlightError:
            written = False

        if written:
            return PutResult(event.event_id, key, STATUS_STORED)
        return PutResult(event.event_id, key, self._compare_stored(event.event_id, key, body))

    def _put_event_object_or_error(self, event: CallEvent) -> PutResult | StorageUnavailableError:
        try:
            return self._put_event_object(event)
        except StorageUnavailableError as error:
            return error

    def _index_keys(self, event: CallEvent) -> tuple[str, str]:
        return call_index_key(event), time_index_key(event, self.time_index_shards)

    def _compare_stored(self, event_id: str, key: str, body: bytes) -> str:
        """Return "duplicate" or "conflict" for an event object that already exists."""
        stored = self.get_event_bytes(event_id)
        if stored is None:
            # S3 reported the key as existing (412) or being written (409), but the
            # object cannot be read, for example because that other write failed.
            raise StorageUnavailableError(
                f"S3 object {key} was reported as existing but could not be read; "
                "retry the request."
            )
        return STATUS_DUPLICATE if stored == body else STATUS_CONFLICT

    def _put_index_entry(self, key: str) -> None:
        try:
            self._put_if_absent(key, b"")
        except _WriteInFlightError:
            if not self._exists(key):
                raise StorageUnavailableError(
                    f"S3 kept reporting a concurrent write of index entry {key}; retry the request."
                ) from None

    def _put_index_entry_or_error(self, key: str) -> StorageUnavailableError | None:
        try:
            self._put_index_entry(key)
        except StorageUnavailableError as error:
            return error
        return None

    def _put_if_absent(self, key: str, body: bytes, **extra: Any) -> bool:
        """Write `key` only if it does not exist; return False if it already existed.

        Raises _WriteInFlightError when S3 returns 409 ConditionalRequestConflict
        on every attempt, and StorageUnavailableError on any other S3 failure.
        """
        for attempt in range(CONDITIONAL_CONFLICT_ATTEMPTS):
            try:
                self.s3_client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **extra
                )
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

    boto3 reads the region, credentials and an optional AWS_ENDPOINT_URL_S3
    (for a local emulator) from the environment.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": S3_TOTAL_MAX_ATTEMPTS},
        connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
        read_timeout=S3_READ_TIMEOUT_SECONDS,
        max_pool_connections=S3_MAX_POOL_CONNECTIONS,
    )
    return boto3.client("s3", config=config)
