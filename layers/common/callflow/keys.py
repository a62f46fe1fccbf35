"""The S3 key layout of events and their index entries, in one place.

    events/{h2}/{eventId}.json
    index/calls/{c2}/{callId}/{ts}!{eventType}!{eventId}
    index/time/{shard}/{yyyy}/{mm}/{dd}/{ts}!{eventType}!{eventId}

h2 and c2 are the first byte of SHA-256 of the eventId or callId in hex, which
spreads keys over S3 partitions. shard is SHA-256(eventId) read as a big-endian
integer, modulo the number of time shards, as two decimal digits. ts is the UTC
timestamp in a fixed-width form, so key order is time order. "!" cannot occur
in an id or an event type (see callflow.events), so an index key splits back
into its parts without ambiguity.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callflow.events import CallEvent

EVENTS_PREFIX = "events/"
CALL_INDEX_PREFIX = "index/calls/"
TIME_INDEX_PREFIX = "index/time/"
EVENT_KEY_SUFFIX = ".json"
INDEX_SEPARATOR = "!"
KEY_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
# The form KEY_TIMESTAMP_FORMAT writes. Matching it and building the datetime
# from its fields takes about a quarter of the time of strptime, which matters
# because a query parses every index key it lists.
KEY_TIMESTAMP_PATTERN = re.compile(
    r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})\.([0-9]{6})Z"
)
DATE_PATH_FORMAT = "%Y/%m/%d/"


@dataclass(frozen=True)
class IndexEntry:
    """One index key split into its parts."""

    timestamp: datetime
    event_type: str
    event_id: str
    # The key without its call or shard prefix, used as a pagination cursor.
    suffix: str


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_key(event_id: str) -> str:
    """Return the key of the event object: events/{h2}/{eventId}.json."""
    return f"{EVENTS_PREFIX}{_sha256_hex(event_id)[:2]}/{event_id}{EVENT_KEY_SUFFIX}"


def call_index_prefix(call_id: str) -> str:
    """Return the prefix under which one call's index entries sit: index/calls/{c2}/{callId}/."""
    return f"{CALL_INDEX_PREFIX}{_sha256_hex(call_id)[:2]}/{call_id}/"


def call_index_key(event: CallEvent) -> str:
    """Return the call index key of `event`."""
    return call_index_prefix(event.call_id) + _entry_name(event)


def time_index_shard(event_id: str, shard_count: int) -> int:
    """Return the time shard of an eventId: SHA-256(eventId) modulo `shard_count`."""
    return int(_sha256_hex(event_id), 16) % shard_count


def time_index_prefix(shard: int) -> str:
    """Return the prefix of one time shard: index/time/{shard:02d}/."""
    return f"{TIME_INDEX_PREFIX}{shard:02d}/"


def time_index_key(event: CallEvent, shard_count: int) -> str:
    """Return the time index key of `event`."""
    shard = time_index_shard(event.event_id, shard_count)
    return time_index_prefix(shard) + _date_path(event.timestamp) + _entry_name(event)


def time_start_after(shard: int, moment: datetime) -> str:
    """Return the StartAfter value that makes a listing of `shard` begin at `moment`.

    The value is the shard prefix, the date path and ts without the
    "!{eventType}!{eventId}" tail. It sorts after every entry older than
    `moment` and before every entry at or after it, because ts has a fixed width.
    """
    return time_index_prefix(shard) + _date_path(moment) + format_key_timestamp(moment)


def format_key_timestamp(moment: datetime) -> str:
    """Format an aware datetime as the fixed-width UTC ts of keys: 20260302T140500.112000Z."""
    return _to_utc(moment).strftime(KEY_TIMESTAMP_FORMAT)


def parse_index_key(key: str, prefix: str) -> IndexEntry:
    """Split a call or time index key listed under `prefix` into its parts.

    Raises ValueError when `key` does not start with `prefix` or its last
    segment is not "{ts}!{eventType}!{eventId}".
    """
    if not key.startswith(prefix):
        raise ValueError(f"index key {key!r} does not start with prefix {prefix!r}")

    suffix = key[len(prefix):]
    entry_name = suffix.rpartition("/")[2]
    parts = entry_name.split(INDEX_SEPARATOR)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"index key {key!r} does not end in {{ts}}!{{eventType}}!{{eventId}}")

    ts, event_type, event_id = parts
    try:
        timestamp = _parse_key_timestamp(ts)
    except ValueError as error:
        raise ValueError(f"index key {key!r} has an invalid timestamp {ts!r}") from error
    return IndexEntry(timestamp=timestamp, event_type=event_type, event_id=event_id, suffix=suffix)


def _entry_name(event: CallEvent) -> str:
    return INDEX_SEPARATOR.join(
        (format_key_timestamp(event.timestamp), event.event_type, event.event_id)
    )


def _parse_key_timestamp(ts: str) -> datetime:
    match = KEY_TIMESTAMP_PATTERN.fullmatch(ts)
    if match is None:
        # Not the fixed-width form: strptime accepts or rejects it as it always has.
        return datetime.strptime(ts, KEY_TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    # datetime() raises ValueError for an impossible date or time, as strptime does.
    return datetime(*(int(field) for field in match.groups()), tzinfo=timezone.utc)


def _date_path(moment: datetime) -> str:
    return _to_utc(moment).strftime(DATE_PATH_FORMAT)


def _to_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment.isoformat()} has no time zone; pass an aware datetime")
    return moment.astimezone(timezone.utc)
