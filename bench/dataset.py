"""The query benchmark's data set: 2,000 calls of 25 events over 30 days, written into S3.

The data set is generated from a fixed seed, so every run writes the same
50,000 events. One call in ten starts between 23:50 and 23:58 UTC and lasts
long enough to end after midnight, so the day boundary of the time index is
crossed by real calls. Phone numbers are in the fictional 555-01xx range.

`load` writes the events with callflow.store.EventStore, which is what the
storer uses: the same conditional puts and the same three keys per event.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import common  # noqa: F401  (puts the callflow package on sys.path)

from callflow.events import CallEvent, parse_event
from callflow.settings import DEFAULT_MAX_EVENT_BYTES

SEED = 20260302
CALL_COUNT = 2000
EVENTS_PER_CALL = 25
DAYS = 30
FIRST_DAY = datetime(2025, 3, 1, tzinfo=UTC)
MIDNIGHT_CALL_EVERY = 10
ID_PREFIX = "ds1"
LOAD_BATCH_SIZE = 100
LOAD_PROCESSES = 4

# Seconds between two events of a call. A midnight call starts at 23:58 at the
# latest and its 24 gaps add up to at least 24 x 40 s = 16 minutes, so it ends
# after midnight.
GAP_SECONDS = (5, 120)
MIDNIGHT_GAP_SECONDS = (40, 120)

# One call's flow. TRANSFER_FAILED replaces TRANSFER_COMPLETED in about one
# call in twenty, so it is a rare type for the filtered queries.
CALL_FLOW = (
    "CALL_STARTED",
    "SIP_INVITE",
    "SIP_TRYING",
    "SIP_RINGING",
    "CALL_ANSWERED",
    "IVR_STARTED",
    "IVR_PROMPT_PLAYED",
    "DTMF_RECEIVED",
    "DTMF_RECEIVED",
    "IVR_MENU_SELECTED",
    "QUEUE_ENTERED",
    "QUEUE_POSITION_UPDATED",
    "QUEUE_POSITION_UPDATED",
    "AGENT_ALERTED",
    "AGENT_CONNECTED",
    "RECORDING_STARTED",
    "HOLD_STARTED",
    "HOLD_ENDED",
    "TRANSFER_INITIATED",
    "TRANSFER_COMPLETED",
    "AGENT_CONNECTED",
    "RECORDING_STOPPED",
    "AGENT_DISCONNECTED",
    "CALL_ENDED",
    "CDR_WRITTEN",
)
RARE_TYPE = "TRANSFER_FAILED"
RARE_TYPE_SHARE = 0.05


@dataclass(frozen=True)
class Call:
    """One generated call: its id and its events' raw JSON objects, in time order."""

    call_id: str
    events: tuple[dict[str, Any], ...]
    spans_midnight: bool


def generate() -> list[Call]:
    """Return the data set's calls, the same on every run."""
    rng = random.Random(SEED)
    return [_generate_call(rng, number) for number in range(CALL_COUNT)]


def _generate_call(rng: random.Random, number: int) -> Call:
    call_id = f"{ID_PREFIX}-call-{number:04d}"
    midnight = number % MIDNIGHT_CALL_EVERY == 0
    if midnight:
        # The last day is left out, so every midnight call ends inside the 30 days.
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS - 1))
        start = day + timedelta(hours=23, minutes=50, seconds=rng.randrange(8 * 60))
        gaps = MIDNIGHT_GAP_SECONDS
    else:
        start = FIRST_DAY + timedelta(seconds=rng.randrange((DAYS - 1) * 86400))
        gaps = GAP_SECONDS

    flow = list(CALL_FLOW)
    if rng.random() < RARE_TYPE_SHARE:
        flow[flow.index("TRANSFER_COMPLETED")] = RARE_TYPE

    caller = f"+1555010{rng.randrange(10000):04d}"
    callee = f"+1555019{rng.randrange(10000):04d}"
    moment = start
    events = []
    for sequence, event_type in enumerate(flow):
        if sequence:
            moment += timedelta(seconds=rng.uniform(*gaps))
        events.append(
            {
                "eventId": f"{ID_PREFIX}-{number:04d}-{sequence:02d}",
                "eventType": event_type,
                "callId": call_id,
                "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "source": "pbx-bench-01",
                "from": caller,
                "to": callee,
                "payload": {"sequence": sequence, "codec": "PCMU", "node": f"sbc-{number % 4}"},
            }
        )
    spans_midnight = events[0]["timestamp"][:10] != events[-1]["timestamp"][:10]
    return Call(call_id=call_id, events=tuple(events), spans_midnight=spans_midnight)


def parsed_events(calls: Sequence[Call]) -> Iterator[CallEvent]:
    """Yield every event of `calls` as the storer would parse it."""
    for call in calls:
        for raw in call.events:
            yield parse_event(raw, max_event_bytes=DEFAULT_MAX_EVENT_BYTES)


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that may end in Z."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def event_time(raw: dict[str, Any]) -> datetime:
    return parse_timestamp(raw["timestamp"])


def load(calls: Sequence[Call], bucket: str, *, time_index_shards: int) -> float:
    """Write every event of `calls` to `bucket` with EventStore and return the seconds taken.

    The calls are split between LOAD_PROCESSES processes, because the client's
    CPU time, not the emulator, limits one process. Raises RuntimeError when an
    event is not stored (a conflict or an S3 failure).
    """
    processes = max(1, min(LOAD_PROCESSES, os.cpu_count() or 1))
    parts = [list(calls[number::processes]) for number in range(processes)]
    started = time.perf_counter()
    # spawn, not fork, so that each process builds its own S3 client and connections.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        counts = list(pool.map(_load_part, parts, [bucket] * processes, [time_index_shards] * processes))
    seconds = time.perf_counter() - started
    print(f"  loaded {sum(counts)} events in {seconds:.0f} s with {processes} processes",
          file=sys.stderr, flush=True)
    return seconds


def _load_part(calls: Sequence[Call], bucket: str, time_index_shards: int) -> int:
    from callflow.store import STATUS_CONFLICT, EventStore, PutResult, make_s3_client

    store = EventStore(bucket, make_s3_client(), time_index_shards=time_index_shards)
    events = list(parsed_events(calls))
    for first in range(0, len(events), LOAD_BATCH_SIZE):
        batch = events[first : first + LOAD_BATCH_SIZE]
        for event, result in zip(batch, store.put_events(batch), strict=True):
            if not isinstance(result, PutResult) or result.status == STATUS_CONFLICT:
                raise RuntimeError(f"event {event.event_id} was not stored: {result}")
    return len(events)
