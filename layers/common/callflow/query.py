"""Query parameters, query planning and signed pagination tokens of the retriever.

GET /events reads the time index: every shard is listed from the start of the
range and the shards are merged by key, so the result is in timestamp order.
GET /calls/{callId}/events, and GET /events with a callId, read the call's own
index, which is not partitioned by date and so returns a call that spans
midnight UTC in one listing. The event type sits in every index key, so a type
filter costs LIST calls but no GETs: every event object fetched is returned,
unless its index entry is stale (see _fetch_events).

A nextToken carries the position after the last returned index entry. It is
signed with HMAC-SHA256 so that a client can neither change the position nor
use the token with another query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from callflow.errors import InvalidNextTokenError, ValidationError
from callflow.events import EVENT_TYPE_PATTERN, validate_event_id
from callflow.keys import (
    IndexEntry,
    call_index_prefix,
    parse_index_key,
    time_index_prefix,
    time_index_shard,
    time_start_after,
)
from callflow.store import EventStore

DEFAULT_LIST_LIMIT = 100
DEFAULT_CALL_LIMIT = 1000
MAX_LIMIT = 1000
DEFAULT_RANGE = timedelta(hours=24)
MAX_RANGE = timedelta(days=31)
# Events are stored from 1970 on, and earlier dates would not fit the
# fixed-width timestamp of the index keys.
EARLIEST_QUERY_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_QUERY_TIME = datetime.max.replace(tzinfo=UTC)

# Each index listing (one time shard, or the call index) gets this many LIST
# calls per page. When they run out the page ends early with a nextToken, so
# a rare event type in a busy range cannot make one request list for minutes.
MAX_LIST_CALLS_PER_INDEX = 4
LIST_PAGE_SIZE = 1000
MAX_LIST_WORKERS = 16

NEXT_TOKEN_VERSION = 1
MAX_NEXT_TOKEN_CHARS = 2048
MAX_CURSOR_FIELD_CHARS = 512
MAX_SHOWN_VALUE_CHARS = 80

LIST_ROUTE = "events"
CALL_ROUTE = "call"

LIST_PARAMETERS = ("startDate", "endDate", "eventType", "callId", "limit", "nextToken")
CALL_PARAMETERS = ("limit", "nextToken")

DATE_ONLY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
LIMIT_PATTERN = re.compile(r"[0-9]{1,7}")
TOKEN_PART_PATTERN = re.compile(r"[A-Za-z0-9_-]+")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventQuery:
    """One page request of GET /events or GET /calls/{callId}/events.

    `start` and `end` are aware UTC datetimes and both are inclusive.
    `relative_range` is true when the client gave neither startDate nor endDate,
    so the range is the 24 hours before the request. The first page's token
    then pins that range for the following pages.
    """

    start: datetime
    end: datetime
    event_type: str | None
    call_id: str | None
    limit: int
    next_token: str | None = field(default=None, repr=False)
    relative_range: bool = False
    route: str = LIST_ROUTE

    def log_fields(self) -> dict[str, Any]:
        """Return the query as a log object, with nextToken reduced to whether one was sent."""
        fields: dict[str, Any] = {
            "route": self.route,
            "limit": self.limit,
            "nextToken": self.next_token is not None,
        }
        if self.route == LIST_ROUTE:
            fields["startDate"] = _format_moment(self.start)
            fields["endDate"] = _format_moment(self.end)
        if self.event_type is not None:
            fields["eventType"] = self.event_type
        if self.call_id is not None:
            fields["callId"] = self.call_id
        return fields


@dataclass(frozen=True)
class QueryResult:
    """One page of events, in timestamp order.

    `next_cursor` is None on the last page. `objects_scanned` counts the event
    objects fetched, which equals len(events) unless an index entry pointed at
    a missing event object or at an event that does not match the entry.
    `list_calls` counts the LIST requests made. `window` is the date range
    read, as (startDate, endDate) in the API's format, for GET /events: the
    one the client gave, or the 24 hours a first page chose.
    """

    events: list[dict[str, Any]]
    next_cursor: dict[str, str] | None
    objects_scanned: int
    list_calls: int
    window: tuple[str, str] | None = None


@dataclass
class _IndexScan:
    """Result of listing one index prefix for a page."""

    entries: list[IndexEntry]
    list_calls: int
    # Suffix of the last index key listed. Entries after it are unknown.
    last_suffix: str | None
    # True when the index contains no further entry for the query.
    exhausted: bool

    def stopped_by_budget(self, needed: int) -> bool:
        return not self.exhausted and len(self.entries) < needed


# ---------------------------------------------------------------------------
# Parameters


def parse_list_query(
    params: Mapping[str, str] | None,
    *,
    now: datetime,
    multi_params: Mapping[str, list[str]] | None = None,
) -> EventQuery:
    """Validate the query string of GET /events and return it as an EventQuery.

    `now` is the aware request time, used when neither date is given.
    `multi_params` is API Gateway's multiValueQueryStringParameters. When it
    is given, a parameter sent more than once is rejected, because
    queryStringParameters keeps only its last value.
    Raises ValidationError with code UNKNOWN_PARAMETER, INVALID_PARAMETER,
    INVALID_CALL_ID, INVALID_DATE_RANGE or RANGE_TOO_WIDE.
    """
    params = dict(params or {})
    reject_unknown_parameters(params, LIST_PARAMETERS)
    _reject_repeated_parameters(multi_params)

    start: datetime | None = None
    end: datetime | None = None
    if "startDate" in params:
        start = _parse_moment("startDate", params["startDate"], end_of_day=False)
    if "endDate" in params:
        end = _parse_moment("endDate", params["endDate"], end_of_day=True)

    relative_range = start is None and end is None
    if start is None and end is None:
        # Milliseconds, the precision the API writes timestamps with.
        end = now.astimezone(UTC)
        end = end.replace(microsecond=end.microsecond // 1000 * 1000)
        start = end - DEFAULT_RANGE
    elif start is None and end is not None:
        start = max(end - DEFAULT_RANGE, EARLIEST_QUERY_TIME)
    elif end is None and start is not None:
        end = _add_clamped(start, DEFAULT_RANGE)
    assert start is not None and end is not None

    event_type = params.get("eventType")
    if event_type is not None and not EVENT_TYPE_PATTERN.fullmatch(event_type):
        raise _invalid_parameter(
            "eventType",
            event_type,
            "must be upper snake case, at most 64 characters, such as CALL_STARTED",
        )

    call_id = params.get("callId")
    if call_id is not None:
        call_id = validate_event_id(call_id, "callId")

    limit = _parse_limit(params.get("limit"), DEFAULT_LIST_LIMIT)

    if start > end:
        raise ValidationError(
            f"startDate {_format_moment(start)} is after endDate {_format_moment(end)}: "
            "send a startDate that is before or equal to the endDate.",
            code="INVALID_DATE_RANGE",
        )

    # A query with a callId lists only that call's index, so a wide range costs no more.
    if call_id is None and end - start > MAX_RANGE:
        raise ValidationError(
            f"The range from {_format_moment(start)} to {_format_moment(end)} is wider than "
            f"{MAX_RANGE.days} days: split it into several queries, or add a callId.",
            code="RANGE_TOO_WIDE",
        )

    return EventQuery(
        start=start,
        end=end,
        event_type=event_type,
        call_id=call_id,
        limit=limit,
        next_token=params.get("nextToken"),
        relative_range=relative_range,
        route=LIST_ROUTE,
    )


def parse_call_query(
    call_id: str,
    params: Mapping[str, str] | None,
    *,
    multi_params: Mapping[str, list[str]] | None = None,
) -> EventQuery:
    """Validate the callId and query string of GET /calls/{callId}/events.

    The query covers the whole call, so it has no date range or type filter.
    Raises ValidationError with code INVALID_CALL_ID, UNKNOWN_PARAMETER or
    INVALID_PARAMETER.
    """
    call_id = validate_event_id(call_id, "callId")
    params = dict(params or {})
    reject_unknown_parameters(params, CALL_PARAMETERS)
    _reject_repeated_parameters(multi_params)

    return EventQuery(
        start=EARLIEST_QUERY_TIME,
        end=LATEST_QUERY_TIME,
        event_type=None,
        call_id=call_id,
        limit=_parse_limit(params.get("limit"), DEFAULT_CALL_LIMIT),
        next_token=params.get("nextToken"),
        relative_range=False,
        route=CALL_ROUTE,
    )


def reject_unknown_parameters(params: Mapping[str, str], known: tuple[str, ...] = ()) -> None:
    """Raise ValidationError UNKNOWN_PARAMETER for each query parameter not in `known`.

    A route that takes no query parameters passes no `known`.
    """
    unknown = sorted(name for name in params if name not in known)
    if not unknown:
        return

    names = ", ".join(_shown(name) for name in unknown)
    noun = "parameter" if len(unknown) == 1 else "parameters"
    accepted = (
        f"this route accepts only {', '.join(known)}."
        if known
        else "this route accepts no query parameters, so remove them."
    )
    raise ValidationError(
        f"Unknown query {noun} {names}: {accepted}",
        code="UNKNOWN_PARAMETER",
        details=[{"field": name, "code": "UNKNOWN_PARAMETER"} for name in unknown],
    )


def _reject_repeated_parameters(multi_params: Mapping[str, list[str]] | None) -> None:
    for name, values in (multi_params or {}).items():
        if len(values) > 1:
            raise ValidationError(
                f"Query parameter {name} is given {len(values)} times: send it once.",
                code="INVALID_PARAMETER",
                details=[{"field": name, "code": "INVALID_PARAMETER"}],
            )


def _parse_moment(name: str, value: str, *, end_of_day: bool) -> datetime:
    """Parse an ISO 8601 date-time with offset, or a date meaning that UTC day's start or end."""
    hint = (
        "must be an ISO 8601 date-time with a Z or ±hh:mm offset, such as "
        "2026-03-02T14:05:00Z, or a date such as 2026-03-02; send + as %2B in a URL"
    )

    if DATE_ONLY_PATTERN.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise _invalid_parameter(name, value, hint) from None
        moment = datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _invalid_parameter(name, value, hint) from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise _invalid_parameter(name, value, hint)
        try:
            moment = parsed.astimezone(UTC)
        except OverflowError:
            raise _invalid_parameter(name, value, "is outside the supported years") from None

    if moment < EARLIEST_QUERY_TIME:
        raise _invalid_parameter(name, value, "must be 1970-01-01T00:00:00Z or later")
    return moment


def _parse_limit(value: str | None, default: int) -> int:
    if value is None:
        return default

    expectation = f"must be a whole number from 1 to {MAX_LIMIT}"
    if not LIMIT_PATTERN.fullmatch(value):
        raise _invalid_parameter("limit", value, expectation)
    limit = int(value)
    if not 1 <= limit <= MAX_LIMIT:
        raise _invalid_parameter("limit", value, expectation)
    return limit


def _invalid_parameter(name: str, value: str, expectation: str) -> ValidationError:
    return ValidationError(
        f"Query parameter {name}={_shown(value)} is invalid: it {expectation}.",
        code="INVALID_PARAMETER",
        details=[{"field": name, "code": "INVALID_PARAMETER", "value": _truncated(value)}],
    )


def _truncated(value: str) -> str:
    if len(value) <= MAX_SHOWN_VALUE_CHARS:
        return value
    return value[:MAX_SHOWN_VALUE_CHARS] + "..."


def _shown(value: str) -> str:
    return repr(_truncated(value))


def _add_clamped(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return LATEST_QUERY_TIME


def _format_moment(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a Z, with only the fraction digits it needs.

    Whole seconds get none, whole milliseconds three, anything finer six.
    """
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    if not utc.microsecond:
        timespec = "seconds"
    elif utc.microsecond % 1000 == 0:
        timespec = "milliseconds"
    else:
        timespec = "microseconds"
    return utc.isoformat(timespec=timespec) + "Z"


# ---------------------------------------------------------------------------
# Pagination tokens


def encode_next_token(query: EventQuery, cursor: dict[str, str], key: bytes) -> str:
    """Return the nextToken for `cursor`, bound to `query` and signed with `key`.

    The token is `<payload>.<tag>`: base64url without padding of a small JSON
    object (format version, a hash of the query, the cursor), then of its
    HMAC-SHA256 tag.
    """
    payload = {"v": NEXT_TOKEN_VERSION, "q": _query_fingerprint(query), "c": cursor}
    payload_bytes = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    tag = hmac.new(key, payload_bytes, hashlib.sha256).digest()
    return f"{_b64encode(payload_bytes)}.{_b64encode(tag)}"


def decode_next_token(token: str, query: EventQuery, key: bytes) -> dict[str, str]:
    """Verify a nextToken against `query` and `key` and return its cursor.

    Raises InvalidNextTokenError when the token is too long, is not a token,
    was changed, was signed with another key (another stack), or belongs to
    another query.
    """
    restart = "Repeat the request without nextToken to start from the first page."

    if len(token) > MAX_NEXT_TOKEN_CHARS:
        raise InvalidNextTokenError(
            f"nextToken is {len(token)} characters long, more than any token this API "
            f"returns ({MAX_NEXT_TOKEN_CHARS}). {restart}"
        )

    parts = token.split(".")
    if len(parts) != 2 or not all(TOKEN_PART_PATTERN.fullmatch(part) for part in parts):
        raise InvalidNextTokenError(f"nextToken is not a token returned by this API. {restart}")
    try:
        payload_bytes = _b64decode(parts[0])
        tag = _b64decode(parts[1])
    except (binascii.Error, ValueError):
        raise InvalidNextTokenError(
            f"nextToken is not a token returned by this API. {restart}"
        ) from None

    expected_tag = hmac.new(key, payload_bytes, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected_tag):
        raise InvalidNextTokenError(
            "nextToken failed signature verification: it was changed, or another "
            f"deployment of this API issued it. {restart}"
        )

    payload = _load_token_payload(payload_bytes)
    if payload.get("v") != NEXT_TOKEN_VERSION:
        raise InvalidNextTokenError(
            f"nextToken has format version {payload.get('v')!r}, which this API no longer "
            f"reads. {restart}"
        )
    if payload.get("q") != _query_fingerprint(query):
        raise InvalidNextTokenError(
            "nextToken belongs to another query: send the same route, startDate, endDate, "
            f"eventType and callId as the request that returned it. {restart}"
        )

    cursor = payload.get("c")
    if not _is_valid_cursor(cursor):
        raise InvalidNextTokenError(f"nextToken contains no valid position. {restart}")
    return cursor


def _query_fingerprint(query: EventQuery) -> str:
    """Hash the parameters that select events.

    The limit is left out, so a client may change the page size between pages.
    """
    relative = query.relative_range
    normalised = {
        "route": query.route,
        "start": None if relative else _format_moment(query.start),
        "end": None if relative else _format_moment(query.end),
        "eventType": query.event_type,
        "callId": query.call_id,
    }
    text = json.dumps(normalised, separators=(",", ":"), sort_keys=True)
    return _b64encode(hashlib.sha256(text.encode("utf-8")).digest()[:16])


def _load_token_payload(payload_bytes: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(payload_bytes)
    except (UnicodeDecodeError, ValueError):
        payload = None
    if not isinstance(payload, dict):
        # Only a token signed with the right key gets here, so this is a
        # token written by an incompatible version of this code.
        raise InvalidNextTokenError(
            "nextToken cannot be read. Repeat the request without nextToken to start "
            "from the first page."
        )
    return payload


def _is_valid_cursor(cursor: object) -> bool:
    if not isinstance(cursor, dict) or "after" not in cursor:
        return False
    if not set(cursor) <= {"after", "start", "end"}:
        return False
    return all(
        isinstance(value, str) and 0 < len(value) <= MAX_CURSOR_FIELD_CHARS
        for value in cursor.values()
    )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


# ---------------------------------------------------------------------------
# Planning and execution


def run_query(
    query: EventQuery,
    store: EventStore,
    *,
    time_index_shards: int,
    cursor: dict[str, str] | None = None,
) -> QueryResult:
    """Read one page of events for `query`, continuing after `cursor` when given.

    A query with a callId lists the call's index. Any other query lists every
    one of the `time_index_shards` time shards and merges them. Raises
    StorageUnavailableError when S3 fails and InvalidNextTokenError when the
    cursor contains an invalid date range.
    """
    query = _pin_range(query, cursor)
    after = cursor["after"] if cursor else None

    if query.call_id is not None:
        entries, next_after, list_calls = _plan_call_page(query, store, after)
    else:
        entries, next_after, list_calls = _plan_range_page(query, store, after, time_index_shards)

    events = _fetch_events(
        store, entries, call_id=query.call_id, time_index_shards=time_index_shards
    )

    next_cursor: dict[str, str] | None = None
    if next_after is not None:
        next_cursor = {"after": next_after}
        if query.relative_range:
            next_cursor["start"] = _format_moment(query.start)
            next_cursor["end"] = _format_moment(query.end)

    window = None
    if query.route == LIST_ROUTE:
        window = (_format_moment(query.start), _format_moment(query.end))
    return QueryResult(
        events=events,
        next_cursor=next_cursor,
        objects_scanned=len(entries),
        list_calls=list_calls,
        window=window,
    )


def _pin_range(query: EventQuery, cursor: dict[str, str] | None) -> EventQuery:
    """Replace a relative range by the first page's range, so every page reads one window."""
    if not query.relative_range or not cursor or "start" not in cursor or "end" not in cursor:
        return query
    try:
        start = datetime.fromisoformat(cursor["start"]).astimezone(UTC)
        end = datetime.fromisoformat(cursor["end"]).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidNextTokenError(
            "nextToken contains an invalid date range. Repeat the request without nextToken "
            "to start from the first page."
        ) from None
    return replace(query, start=start, end=end)


def _plan_call_page(
    query: EventQuery, store: EventStore, after: str | None
) -> tuple[list[IndexEntry], str | None, int]:
    assert query.call_id is not None
    prefix = call_index_prefix(query.call_id)
    start_after = prefix + after if after else None
    needed = query.limit + 1

    # The call index starts at the call's first event, so entries before a
    # startDate are listed and skipped.
    may_skip = query.event_type is not None or query.start > EARLIEST_QUERY_TIME
    scan = _scan_index(store, query, prefix, start_after, needed=needed, may_skip=may_skip)
    page = scan.entries[: query.limit]

    if len(scan.entries) > query.limit:
        return page, page[-1].suffix, scan.list_calls
    if scan.stopped_by_budget(needed):
        return page, scan.last_suffix, scan.list_calls
    return page, None, scan.list_calls


def _plan_range_page(
    query: EventQuery, store: EventStore, after: str | None, shard_count: int
) -> tuple[list[IndexEntry], str | None, int]:
    """Merge the time shards into the first `limit` entries after `after`.

    Each shard is listed for up to limit + 1 matching entries: the first
    `limit` entries of the union are among them, and a surplus shows that
    more remain. A shard whose LIST budget ran out is known only up to its
    last listed key, so the page stops at the smallest such key.
    """
    needed = query.limit + 1

    def scan_shard(shard: int) -> _IndexScan:
        prefix = time_index_prefix(shard)
        start_after = time_start_after(shard, query.start)
        if after and prefix + after > start_after:
            start_after = prefix + after
        return _scan_index(
            store, query, prefix, start_after, needed=needed, may_skip=query.event_type is not None
        )

    if shard_count == 1:
        scans = [scan_shard(0)]
    else:
        scans = list(_list_pool().map(scan_shard, range(shard_count)))
    list_calls = sum(scan.list_calls for scan in scans)

    budget_limits = [
        scan.last_suffix
        for scan in scans
        if scan.stopped_by_budget(needed) and scan.last_suffix is not None
    ]
    boundary = min(budget_limits) if budget_limits else None

    candidates = [
        entry
        for scan in scans
        for entry in scan.entries
        if boundary is None or entry.suffix <= boundary
    ]
    candidates.sort(key=lambda entry: (entry.timestamp, entry.suffix))
    page = candidates[: query.limit]

    if len(candidates) > query.limit:
        return page, page[-1].suffix, list_calls
    if boundary is not None:
        # Every entry up to the boundary is on this page, so the next page
        # starts after the boundary even when this page is short or empty.
        return page, boundary, list_calls
    return page, None, list_calls


@lru_cache(maxsize=1)
def _list_pool() -> ThreadPoolExecutor:
    """Return the process-wide pool that lists time shards, created on first use.

    It lives as long as the Lambda execution environment, so a warm retriever
    starts no threads per request.
    """
    return ThreadPoolExecutor(max_workers=MAX_LIST_WORKERS, thread_name_prefix="callflow-list")


def _scan_index(
    store: EventStore,
    query: EventQuery,
    prefix: str,
    start_after: str | None,
    *,
    needed: int,
    may_skip: bool,
) -> _IndexScan:
    """List one index prefix in key order for up to `needed` entries that match the query.

    `may_skip` is true when the query can filter out entries inside the
    range. When it is false, each LIST requests only the keys still needed.
    """
    entries: list[IndexEntry] = []
    last_suffix: str | None = None
    list_calls = 0

    while list_calls < MAX_LIST_CALLS_PER_INDEX:
        max_keys = LIST_PAGE_SIZE if may_skip else min(LIST_PAGE_SIZE, needed - len(entries))
        keys, truncated = store.list_keys(prefix, start_after=start_after, max_keys=max_keys)
        list_calls += 1

        for key in keys:
            last_suffix = key[len(prefix) :]
            entry = _parse_entry(key, prefix)
            if entry is None:
                continue
            if entry.timestamp > query.end:
                return _IndexScan(entries, list_calls, last_suffix, exhausted=True)
            if entry.timestamp < query.start:
                continue
            if query.event_type is not None and entry.event_type != query.event_type:
                continue
            entries.append(entry)
            if len(entries) >= needed:
                return _IndexScan(entries, list_calls, last_suffix, exhausted=False)

        if not truncated or not keys:
            return _IndexScan(entries, list_calls, last_suffix, exhausted=True)
        start_after = keys[-1]

    return _IndexScan(entries, list_calls, last_suffix, exhausted=False)


def _parse_entry(key: str, prefix: str) -> IndexEntry | None:
    try:
        return parse_index_key(key, prefix)
    except ValueError:
        # A foreign object under an index prefix must not fail every query
        # that reads the prefix.
        logger.warning("Skipping unreadable index key", extra={"s3Key": key})
        return None


def _fetch_events(
    store: EventStore,
    entries: list[IndexEntry],
    *,
    call_id: str | None,
    time_index_shards: int,
) -> list[dict[str, Any]]:
    """Fetch the event object of each index entry and return the events that match their entry.

    `call_id` names the call whose index the entries come from, or is None for
    entries from the time index. The storer writes an event object and its
    index entries concurrently, so an entry can be stale. Its event object may
    be missing because the write failed and the client has not retried yet,
    or because the object was deleted after it was indexed. The entry may
    also come from a post that conflicted with the stored event, when the
    storer failed to delete it. This function skips both kinds and logs a
    warning with the entry's key.
    """
    bodies = store.get_events_bytes([entry.event_id for entry in entries])

    events: list[dict[str, Any]] = []
    for entry, body in zip(entries, bodies, strict=True):
        if body is None:
            logger.warning(
                "Skipping an index entry whose event object is missing",
                extra={
                    "s3Key": _index_key(entry, call_id, time_index_shards),
                    "eventId": entry.event_id,
                },
            )
            continue

        event = json.loads(body)
        mismatched = _mismatched_fields(entry, event, call_id)
        if mismatched:
            logger.warning(
                "Skipping an index entry that does not match its event object",
                extra={
                    "s3Key": _index_key(entry, call_id, time_index_shards),
                    "eventId": entry.event_id,
                    "mismatchedFields": mismatched,
                },
            )
            continue
        events.append(event)
    return events


def _mismatched_fields(entry: IndexEntry, event: Any, call_id: str | None) -> list[str]:
    """Return the fields of `event` that differ from what its index entry encodes.

    Every index key encodes the eventId, the event type and the timestamp, whose
    date is also the date path of a time index key. A call index key also encodes
    the callId.
    """
    if not isinstance(event, dict):
        return ["event"]

    mismatched = []
    if event.get("eventId") != entry.event_id:
        mismatched.append("eventId")
    if event.get("eventType") != entry.event_type:
        mismatched.append("eventType")
    if _event_moment(event) != entry.timestamp:
        mismatched.append("timestamp")
    if call_id is not None and event.get("callId") != call_id:
        mismatched.append("callId")
    return mismatched


def _event_moment(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(event["timestamp"])
    except (KeyError, TypeError, ValueError):
        return None


def _index_key(entry: IndexEntry, call_id: str | None, time_index_shards: int) -> str:
    """Return the full S3 key of an index entry read from the call index or the time index."""
    if call_id is not None:
        return call_index_prefix(call_id) + entry.suffix
    shard = time_index_shard(entry.event_id, time_index_shards)
    return time_index_prefix(shard) + entry.suffix
