"""Call events: parse, validate and normalise them, and write their canonical JSON.

The field rules are the event model in docs/architecture.md. A request body is
one event (a JSON object) or a batch (a JSON array of 1 to MAX_BATCH_SIZE
events). A batch with any invalid event is rejected whole, with every error of
every event in the details, so a client fixes all of them in one round trip.

When an event has no eventId, parse_event derives one from its content:
"evt-" and the first 32 hex digits of the SHA-256 of the event's canonical JSON
without eventId (the normalised form that to_dict returns). A producer that
retries an event without an id therefore sends the same eventId again, and the
store reports the retry as a duplicate instead of storing the event twice.
The derived id covers timestampOriginal, so the same moment written with a
different offset is a different event.

This module uses only the standard library, so importing it costs little.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from callflow.errors import PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError
from callflow.settings import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from callflow.settings import Settings

ID_MAX_LENGTH = 128
EVENT_TYPE_MAX_LENGTH = 64
TEXT_FIELD_MAX_LENGTH = 256
PAYLOAD_MAX_DEPTH = 32
MAX_FUTURE_SKEW = timedelta(hours=24)
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=timezone.utc)
UTC_MIN = datetime.min.replace(tzinfo=timezone.utc)
UTC_MAX = datetime.max.replace(tzinfo=timezone.utc)
DETAIL_VALUE_MAX_CHARS = 100
DERIVED_ID_PREFIX = "evt-"
DERIVED_ID_HEX_DIGITS = 32
BATCH_INDEXES_IN_MESSAGE = 10

JSON_MEDIA_TYPE = "application/json"
UTF8_CHARSETS = frozenset({"utf-8", "utf8"})

# Use these patterns with fullmatch(). ID_PATTERN cannot match "." or "..",
# and it excludes "%", "/", "\", "!", white space and control characters, so
# an id is always safe as one S3 key segment and "!" can separate key parts.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")
ID_RULE = "1 to 128 characters of A-Z a-z 0-9 . _ : @ + = -, starting with a letter or digit"
# The lookahead caps the whole match at EVENT_TYPE_MAX_LENGTH characters.
EVENT_TYPE_PATTERN = re.compile(r"(?=.{1,64}\Z)[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
EVENT_TYPE_RULE = (
    "upper snake case such as CALL_STARTED: words of A-Z and 0-9 joined by single "
    "underscores, starting with a letter"
)
# datetime.fromisoformat on Python 3.11 also accepts date-only text, missing
# offsets, basic format and a space separator, so this pattern comes first.
TIMESTAMP_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"
    r"(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
TIMESTAMP_RULE = (
    "an ISO 8601 date and time with a Z or +hh:mm/-hh:mm offset, "
    "such as 2026-03-02T14:05:00.112Z"
)
# Unicode category Cc: C0 controls, DEL and C1 controls.
CONTROL_CHARACTER_PATTERN = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A \u escape of a UTF-16 surrogate. Only such escapes can put an unpaired
# surrogate into a parsed string, which UTF-8 cannot encode.
SURROGATE_ESCAPE_PATTERN = re.compile(r"\\u[dD][89a-fA-F]")

REQUIRED_FIELDS = ("eventType", "callId", "timestamp")
OPTIONAL_TEXT_FIELDS = ("source", "from", "to")
KNOWN_FIELDS = ("eventId", "eventType", "callId", "timestamp", "source", "from", "to", "payload")

_NO_VALUE = object()


@dataclass(frozen=True)
class CallEvent:
    """One validated call event. Treat `payload` as read-only."""

    event_id: str
    event_type: str
    call_id: str
    timestamp: datetime
    timestamp_original: str
    source: str | None = None
    from_: str | None = None
    to: str | None = None
    payload: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the API and stored form; absent optional fields are left out."""
        data: dict[str, Any] = {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "callId": self.call_id,
            "timestamp": format_event_timestamp(self.timestamp),
            "timestampOriginal": self.timestamp_original,
        }
        optional = {
            "source": self.source,
            "from": self.from_,
            "to": self.to,
            "payload": self.payload,
        }
        for name, value in optional.items():
            if value is not None:
                data[name] = value
        return data

    def to_json_bytes(self) -> bytes:
        """Return the canonical JSON of to_dict(): the bytes stored in S3."""
        return self._json_bytes

    @cached_property
    def _json_bytes(self) -> bytes:
        # Computed once: the storer writes, logs and counts these bytes.
        return canonical_json_bytes(self.to_dict())


def canonical_json_bytes(value: Any) -> bytes:
    """Serialise `value` with sorted keys, no insignificant white space, as UTF-8."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def format_event_timestamp(moment: datetime) -> str:
    """Format an aware datetime as UTC with milliseconds, or microseconds when needed.

    Example: 2026-03-02T23:58:10.000Z, or 2026-03-02T23:58:10.000250Z.
    """
    utc = moment.astimezone(timezone.utc)
    whole_seconds = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond % 1000 == 0:
        return f"{whole_seconds}.{utc.microsecond // 1000:03d}Z"
    return f"{whole_seconds}.{utc.microsecond:06d}Z"


def derive_event_id(event: CallEvent) -> str:
    """Return the content-derived eventId of `event`, ignoring its current eventId."""
    data = event.to_dict()
    del data["eventId"]
    digest = hashlib.sha256(canonical_json_bytes(data)).hexdigest()
    return DERIVED_ID_PREFIX + digest[:DERIVED_ID_HEX_DIGITS]


def validate_event_id(value: str, field: str = "eventId") -> str:
    """Return `value` if it is a valid eventId (or callId, with field="callId").

    Raises ValidationError with code INVALID_CALL_ID for field "callId" and
    INVALID_EVENT_ID otherwise.
    """
    if ID_PATTERN.fullmatch(value):
        return value

    code = "INVALID_CALL_ID" if field == "callId" else "INVALID_EVENT_ID"
    message = f"{field} {_quote(value)} is invalid: use {ID_RULE}."
    detail = _detail(field, "INVALID_FORMAT", message, value)
    raise ValidationError(message, code=code, details=[detail])


# ---------------------------------------------------------------------------
# One event


def parse_event(raw: object, *, max_event_bytes: int, now: datetime | None = None) -> CallEvent:
    """Validate one decoded JSON event and return it normalised.

    Raises ValidationError (VALIDATION_ERROR) listing every field error, or
    PayloadTooLargeError (EVENT_TOO_LARGE) when the canonical JSON exceeds
    `max_event_bytes`. `now` is the server clock for the 24-hour future limit;
    it defaults to the current time.
    """
    if not isinstance(raw, dict):
        message = f"An event must be a JSON object, not a JSON {_json_type(raw)}."
        raise ValidationError(message, details=[_detail("$", "INVALID_TYPE", message, raw)])

    clock = now or datetime.now(timezone.utc)
    errors: list[dict[str, Any]] = []
    for name, value in raw.items():
        if name not in KNOWN_FIELDS:
            message = (
                f"Field {_quote(name)} is not part of the event model; "
                "remove it or move it into payload."
            )
            errors.append(_detail(name, "UNKNOWN_FIELD", message, value))

    event_id = _check_id(raw, "eventId", errors, required=False)
    event_type = _check_event_type(raw, errors)
    call_id = _check_id(raw, "callId", errors, required=True)
    timestamp = _check_timestamp(raw, errors, clock)
    texts = {name: _check_text(raw, name, errors) for name in OPTIONAL_TEXT_FIELDS}
    payload = _check_payload(raw, errors)

    # A check that returns None for a required field has appended an error, so
    # the None tests below only narrow the types.
    if errors or event_type is None or call_id is None or timestamp is None:
        raise ValidationError(_summarise_event_errors(errors), details=errors)

    event = CallEvent(
        event_id=event_id or "",
        event_type=event_type,
        call_id=call_id,
        timestamp=timestamp[0],
        timestamp_original=timestamp[1],
        source=texts["source"],
        from_=texts["from"],
        to=texts["to"],
        payload=payload,
    )
    if event_id is None:
        event = replace(event, event_id=derive_event_id(event))

    size = len(event.to_json_bytes())
    if size > max_event_bytes:
        message = (
            f"Event {event.event_id} is {size} bytes as canonical JSON; the limit is "
            f"{max_event_bytes} bytes. Move bulky data out of payload."
        )
        raise PayloadTooLargeError(
            message,
            code="EVENT_TOO_LARGE",
            details=[_detail("$", "EVENT_TOO_LARGE", message, size)],
        )
    return event


def _check_id(
    raw: dict[str, Any], field: str, errors: list[dict[str, Any]], *, required: bool
) -> str | None:
    if field not in raw:
        if required:
            errors.append(_missing(field))
        return None

    value = raw[field]
    if not isinstance(value, str):
        errors.append(_wrong_type(field, value, "a string"))
        return None
    if len(value) > ID_MAX_LENGTH:
        message = f"{field} is {len(value)} characters long; the maximum is {ID_MAX_LENGTH}."
        errors.append(_detail(field, "TOO_LONG", message, value))
        return None
    if not ID_PATTERN.fullmatch(value):
        message = f"{field} {_quote(value)} is invalid: use {ID_RULE}."
        errors.append(_detail(field, "INVALID_FORMAT", message, value))
        return None
    return value


def _check_event_type(raw: dict[str, Any], errors: list[dict[str, Any]]) -> str | None:
    field = "eventType"
    if field not in raw:
        errors.append(_missing(field))
        return None

    value = raw[field]
    if not isinstance(value, str):
        errors.append(_wrong_type(field, value, "a string"))
        return None
    if len(value) > EVENT_TYPE_MAX_LENGTH:
        message = (
            f"eventType is {len(value)} characters long; the maximum is {EVENT_TYPE_MAX_LENGTH}."
        )
        errors.append(_detail(field, "TOO_LONG", message, value))
        return None
    if not EVENT_TYPE_PATTERN.fullmatch(value):
        message = f"eventType {_quote(value)} is invalid: use {EVENT_TYPE_RULE}."
        errors.append(_detail(field, "INVALID_FORMAT", message, value))
        return None
    return value


def _check_timestamp(
    raw: dict[str, Any], errors: list[dict[str, Any]], now: datetime
) -> tuple[datetime, str] | None:
    """Return (the moment in UTC, the client's text), or None after recording an error."""
    field = "timestamp"
    if field not in raw:
        errors.append(_missing(field))
        return None

    value = raw[field]
    if not isinstance(value, str):
        errors.append(_wrong_type(field, value, "a string"))
        return None
    if not TIMESTAMP_PATTERN.fullmatch(value):
        message = f"timestamp {_quote(value)} is invalid: use {TIMESTAMP_RULE}."
        errors.append(_detail(field, "INVALID_FORMAT", message, value))
        return None

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        message = (
            f"timestamp {_quote(value)} is not a real date and time ({error}): "
            f"use {TIMESTAMP_RULE}."
        )
        errors.append(_detail(field, "INVALID_FORMAT", message, value))
        return None

    # Converting year 1 or year 9999 with an offset leaves datetime's range.
    # Such a moment is out of range on the side of its local year.
    try:
        moment = parsed.astimezone(timezone.utc)
    except OverflowError:
        moment = UTC_MIN if parsed.year < EARLIEST_TIMESTAMP.year else UTC_MAX
    if moment < EARLIEST_TIMESTAMP:
        message = (
            f"timestamp {_quote(value)} is before 1970-01-01T00:00:00Z; "
            "send the time the event happened."
        )
        errors.append(_detail(field, "OUT_OF_RANGE", message, value))
        return None
    if moment > now + MAX_FUTURE_SKEW:
        message = (
            f"timestamp {_quote(value)} is more than 24 hours ahead of the server clock "
            f"({format_event_timestamp(now)}); check the producer's clock and time zone."
        )
        errors.append(_detail(field, "OUT_OF_RANGE", message, value))
        return None
    return moment, value


def _check_text(raw: dict[str, Any], field: str, errors: list[dict[str, Any]]) -> str | None:
    # Messages here never repeat the value: from and to often hold phone numbers.
    if field not in raw:
        return None

    value = raw[field]
    if not isinstance(value, str):
        errors.append(_wrong_type(field, value, "a string"))
        return None
    if len(value) > TEXT_FIELD_MAX_LENGTH:
        message = (
            f"{field} is {len(value)} characters long; the maximum is {TEXT_FIELD_MAX_LENGTH}."
        )
        errors.append(_detail(field, "TOO_LONG", message, value))
        return None
    control = CONTROL_CHARACTER_PATTERN.search(value)
    if control:
        message = (
            f"{field} contains the control character U+{ord(control.group()):04X} at position "
            f"{control.start()}; remove it."
        )
        errors.append(_detail(field, "INVALID_FORMAT", message, value))
        return None
    return value


def _check_payload(raw: dict[str, Any], errors: list[dict[str, Any]]) -> dict[str, Any] | None:
    field = "payload"
    if field not in raw:
        return None

    value = raw[field]
    if not isinstance(value, dict):
        errors.append(_wrong_type(field, value, "a JSON object"))
        return None
    depth = _json_depth(value, stop_after=PAYLOAD_MAX_DEPTH)
    if depth > PAYLOAD_MAX_DEPTH:
        message = (
            f"payload nests objects and arrays more than {PAYLOAD_MAX_DEPTH} levels deep; "
            "flatten it."
        )
        errors.append(_detail(field, "INVALID_FORMAT", message, value))
        return None
    return value


def _json_depth(value: Any, *, stop_after: int) -> int:
    """Return the nesting depth of objects and arrays (a flat object is 1).

    Stops at the first level past `stop_after`, so a hostile document costs
    little. Iterative, so it cannot exhaust the Python stack.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > stop_after:
            return deepest
        pending.extend((child, level + 1) for child in children)
    return deepest


def _summarise_event_errors(errors: list[dict[str, Any]]) -> str:
    if len(errors) == 1:
        return str(errors[0]["message"])
    fields = ", ".join(dict.fromkeys(str(error["field"]) for error in errors))
    return (
        f"The event has {len(errors)} errors in fields {fields}; "
        "see details and correct each one."
    )


# ---------------------------------------------------------------------------
# A request body


def parse_request_body(
    body: str | None,
    *,
    is_base64: bool,
    content_type: str | None,
    settings: Settings,
    now: datetime | None = None,
) -> tuple[list[CallEvent], bool]:
    """Parse a POST /events body into events; return (events, is_batch).

    Checks, in order: the Content-Type (415; a missing one is read as JSON),
    the raw size against settings.max_request_bytes (413 REQUEST_TOO_LARGE),
    UTF-8 and JSON syntax (400 INVALID_JSON), the batch size (400 EMPTY_BATCH,
    BATCH_TOO_LARGE), then every event. Raises the matching CallflowError;
    nothing is returned for a partly valid batch.
    """
    _check_content_type(content_type)
    text = _decode_body(body, is_base64=is_base64, max_request_bytes=settings.max_request_bytes)
    document = _load_json(text)
    clock = now or datetime.now(timezone.utc)

    if isinstance(document, dict):
        return [parse_event(document, max_event_bytes=settings.max_event_bytes, now=clock)], False
    if isinstance(document, list):
        return _parse_batch(document, max_event_bytes=settings.max_event_bytes, now=clock), True

    raise ValidationError(
        "The request body must be one event as a JSON object or a batch as a JSON array, "
        f"not a JSON {_json_type(document)}."
    )


def _parse_batch(document: list[Any], *, max_event_bytes: int, now: datetime) -> list[CallEvent]:
    if not document:
        raise ValidationError(
            f"The batch is an empty JSON array; send 1 to {MAX_BATCH_SIZE} events.",
            code="EMPTY_BATCH",
        )
    if len(document) > MAX_BATCH_SIZE:
        raise ValidationError(
            f"The batch has {len(document)} events; the maximum is {MAX_BATCH_SIZE}. "
            "Split it into several requests.",
            code="BATCH_TOO_LARGE",
        )

    events: list[CallEvent] = []
    invalid: list[dict[str, Any]] = []
    too_large: list[dict[str, Any]] = []
    for index, raw in enumerate(document):
        try:
            events.append(parse_event(raw, max_event_bytes=max_event_bytes, now=now))
        except PayloadTooLargeError as error:
            too_large.extend({"index": index, **detail} for detail in error.details)
        except ValidationError as error:
            invalid.extend({"index": index, **detail} for detail in error.details)

    # One oversized event makes the whole request 413, even if others are invalid.
    if too_large:
        raise PayloadTooLargeError(
            "The batch was rejected and nothing was stored. Over the limit of "
            f"{max_event_bytes} bytes as canonical JSON: "
            f"{_which_events(too_large, len(document))}. Shrink them and resend the whole batch.",
            code="EVENT_TOO_LARGE",
            details=too_large,
        )
    if invalid:
        raise ValidationError(
            "The batch was rejected and nothing was stored. Invalid: "
            f"{_which_events(invalid, len(document))}. Correct the fields listed in details "
            "and resend the whole batch.",
            details=invalid,
        )
    _reject_repeated_event_ids(events)
    return events


def _reject_repeated_event_ids(events: list[CallEvent]) -> None:
    """Reject a batch that contains one eventId twice.

    The events of a batch are written concurrently, so which copy is stored
    would depend on timing.
    """
    first_index: dict[str, int] = {}
    repeated: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if event.event_id in first_index:
            message = (
                f"eventId {event.event_id!r} at index {index} repeats the event at index "
                f"{first_index[event.event_id]}"
            )
            detail = _detail("eventId", "DUPLICATE_IN_BATCH", message, event.event_id)
            repeated.append({"index": index, **detail})
        else:
            first_index[event.event_id] = index
    if repeated:
        raise ValidationError(
            f"The batch was rejected and nothing was stored: {repeated[0]['message']}. "
            "Send each eventId once per batch.",
            details=repeated,
        )


def _which_events(details: list[dict[str, Any]], total: int) -> str:
    """Name the events of a batch that `details` are about.

    Example: "2 of 5 events (indexes 1, 3, counting from 0)".
    """
    indexes = list(dict.fromkeys(int(detail["index"]) for detail in details))
    shown = ", ".join(str(index) for index in indexes[:BATCH_INDEXES_IN_MESSAGE])
    if len(indexes) > BATCH_INDEXES_IN_MESSAGE:
        shown += f" and {len(indexes) - BATCH_INDEXES_IN_MESSAGE} more"
    noun = "index" if len(indexes) == 1 else "indexes"
    events = "event" if total == 1 else "events"
    return f"{len(indexes)} of {total} {events} ({noun} {shown}, counting from 0)"


def _check_content_type(content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        return

    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaTypeError(
            f"Content-Type {_quote(content_type)} is not supported; "
            f"send the body as {JSON_MEDIA_TYPE}."
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in UTF8_CHARSETS:
            raise UnsupportedMediaTypeError(
                f"Content-Type {_quote(content_type)} is not supported: JSON must be UTF-8, "
                "so send charset=utf-8 or no charset."
            )


def _decode_body(body: str | None, *, is_base64: bool, max_request_bytes: int) -> str:
    if not body:
        raise ValidationError(
            "The request body is empty; send one event as a JSON object "
            "or a batch as a JSON array.",
            code="INVALID_JSON",
        )

    if is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValidationError(
                "The request body is marked as base64-encoded but is not valid base64.",
                code="INVALID_JSON",
            ) from error
        _check_request_size(len(raw), max_request_bytes)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValidationError(
                f"The request body is not valid UTF-8: byte {error.start} cannot be decoded. "
                "Send JSON encoded as UTF-8.",
                code="INVALID_JSON",
            ) from error

    try:
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise ValidationError(
            f"The request body is not valid UTF-8: character {error.start} is an unpaired "
            "UTF-16 surrogate. Send JSON encoded as UTF-8.",
            code="INVALID_JSON",
        ) from error
    _check_request_size(size, max_request_bytes)
    return body


def _check_request_size(size: int, max_request_bytes: int) -> None:
    if size > max_request_bytes:
        raise PayloadTooLargeError(
            f"The request body is {size} bytes, over the limit of {max_request_bytes} bytes. "
            "Split a batch into smaller requests, or shrink the event.",
            code="REQUEST_TOO_LARGE",
        )


class _RejectedJsonError(ValueError):
    """Raised by the json.loads hooks for input that is JSON but not accepted here."""


def _load_json(text: str) -> Any:
    try:
        document = json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_parse_finite_float,
            parse_int=_parse_int,
        )
    except json.JSONDecodeError as error:
        raise ValidationError(
            f"The request body is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno} (character {error.pos}). Send one event as a JSON object "
            "or a batch as a JSON array.",
            code="INVALID_JSON",
            details=[{"line": error.lineno, "column": error.colno, "position": error.pos}],
        ) from error
    except _RejectedJsonError as error:
        raise ValidationError(str(error), code="INVALID_JSON") from error
    except RecursionError as error:
        raise ValidationError(
            "The request body nests JSON arrays and objects too deeply to parse; "
            f"payload may nest at most {PAYLOAD_MAX_DEPTH} levels.",
            code="INVALID_JSON",
        ) from error

    if SURROGATE_ESCAPE_PATTERN.search(text):
        try:
            canonical_json_bytes(document)
        except UnicodeEncodeError as error:
            raise ValidationError(
                "The request body contains a \\u escape of an unpaired UTF-16 surrogate, "
                "which is not valid Unicode; escape characters outside the BMP as surrogate pairs.",
                code="INVALID_JSON",
            ) from error
    return document


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RejectedJsonError(
                f"The request body is rejected: key {_quote(key)} appears twice in one JSON "
                "object. Send each key once."
            )
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise _RejectedJsonError(
        f"The request body contains {name}, which JSON does not allow; "
        "send a finite number or null."
    )


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _RejectedJsonError(
            f"The number {text[:DETAIL_VALUE_MAX_CHARS]} is outside the range of a 64-bit float; "
            "send it as a string."
        )
    return value


def _parse_int(text: str) -> int:
    # Python limits int() to sys.get_int_max_str_digits() digits (4300 by default).
    try:
        return int(text)
    except ValueError as error:
        raise _RejectedJsonError(
            f"The request body contains an integer of {len(text)} digits; at most "
            f"{sys.get_int_max_str_digits()} are accepted. Send it as a string."
        ) from error


# ---------------------------------------------------------------------------
# Error details


def _detail(field: str, code: str, message: str, value: Any = _NO_VALUE) -> dict[str, Any]:
    detail: dict[str, Any] = {"field": field, "code": code, "message": message}
    if value is not _NO_VALUE:
        detail["value"] = _shorten_value(value)
    return detail


def _missing(field: str) -> dict[str, Any]:
    return _detail(field, "MISSING_FIELD", f"{field} is required.")


def _wrong_type(field: str, value: Any, expected: str) -> dict[str, Any]:
    message = f"{field} must be {expected}, not a JSON {_json_type(value)}."
    return _detail(field, "INVALID_TYPE", message, value)


def _shorten_value(value: Any) -> Any:
    """Return a detail's value, with strings cut to 100 characters.

    Objects and arrays become JSON text, cut the same way. Other values pass unchanged.
    """
    if isinstance(value, str):
        return value[:DETAIL_VALUE_MAX_CHARS]
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:DETAIL_VALUE_MAX_CHARS]
    return value


def _quote(value: str) -> str:
    """Quote `value` for a message, cut to 100 characters."""
    if len(value) > DETAIL_VALUE_MAX_CHARS:
        return repr(value[:DETAIL_VALUE_MAX_CHARS]) + "..."
    return repr(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
