"""The S3 key layout (callflow.keys)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from callflow.events import CallEvent
from callflow.keys import (
    IndexEntry,
    call_index_key,
    call_index_prefix,
    event_key,
    format_key_timestamp,
    parse_index_key,
    time_index_key,
    time_index_prefix,
    time_index_shard,
    time_start_after,
)

SHARDS = 16


def make_event(event_id: str = "evt-9c21-001", moment: datetime | None = None) -> CallEvent:
    timestamp = moment or datetime(2026, 3, 2, 14, 5, 0, 112000, tzinfo=timezone.utc)
    return CallEvent(
        event_id=event_id,
        event_type="CALL_STARTED",
        call_id="call-7f3a9c21",
        timestamp=timestamp,
        timestamp_original=timestamp.isoformat(),
    )


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_event_key_uses_hash_prefix():
    expected = f"events/{sha256_hex('evt-9c21-001')[:2]}/evt-9c21-001.json"

    assert event_key("evt-9c21-001") == expected


def test_call_index_prefix_uses_hash_prefix():
    expected = f"index/calls/{sha256_hex('call-7f3a9c21')[:2]}/call-7f3a9c21/"

    assert call_index_prefix("call-7f3a9c21") == expected


def test_call_index_key_layout():
    key = call_index_key(make_event())

    entry_name = "20260302T140500.112000Z!CALL_STARTED!evt-9c21-001"
    assert key == call_index_prefix("call-7f3a9c21") + entry_name


def test_time_index_shard_is_hash_modulo_count():
    expected = int(sha256_hex("evt-9c21-001"), 16) % SHARDS

    assert time_index_shard("evt-9c21-001", SHARDS) == expected


def test_time_index_shards_spread_over_all_shards():
    shards = {time_index_shard(f"evt-{n}", SHARDS) for n in range(500)}

    assert shards == set(range(SHARDS))


def test_time_index_prefix_has_two_digits():
    assert time_index_prefix(3) == "index/time/03/"
    assert time_index_prefix(15) == "index/time/15/"


def test_time_index_key_layout():
    event = make_event()
    shard = time_index_shard(event.event_id, SHARDS)

    key = time_index_key(event, SHARDS)

    entry_name = "20260302T140500.112000Z!CALL_STARTED!evt-9c21-001"
    assert key == f"index/time/{shard:02d}/2026/03/02/{entry_name}"


def test_format_key_timestamp_converts_to_utc():
    moment = datetime(2026, 3, 4, 9, 15, 3, 4000, tzinfo=timezone(timedelta(hours=1)))

    assert format_key_timestamp(moment) == "20260304T081503.004000Z"


def test_format_key_timestamp_rejects_naive_datetime():
    with pytest.raises(ValueError):
        format_key_timestamp(datetime(2026, 3, 2, 14, 5))


def test_time_index_key_uses_utc_date():
    moment = datetime(2026, 3, 3, 0, 30, tzinfo=timezone(timedelta(hours=2)))

    key = time_index_key(make_event(moment=moment), SHARDS)

    assert "/2026/03/02/20260302T223000.000000Z!" in key


def test_key_order_is_time_order():
    base = datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=timezone.utc)
    moments = [base + timedelta(microseconds=step) for step in (0, 1, 1000, 86_400_000_000, 9)]
    keys = [call_index_key(make_event(f"evt-{n}", moment)) for n, moment in enumerate(moments)]

    prefix = call_index_prefix("call-7f3a9c21")
    listed = [parse_index_key(key, prefix).timestamp for key in sorted(keys)]
    assert listed == sorted(moments)


def test_time_start_after_includes_moment():
    moment = datetime(2026, 3, 2, 14, 5, 0, 112000, tzinfo=timezone.utc)
    offsets = {
        "before-day": timedelta(days=-1),
        "before-microsecond": timedelta(microseconds=-1),
        "at": timedelta(0),
        "after-microsecond": timedelta(microseconds=1),
        "after-day": timedelta(days=1),
    }
    shard = 7
    keys = {}
    for name, offset in offsets.items():
        event = make_event(f"evt-{name}", moment + offset)
        own_prefix = time_index_prefix(time_index_shard(event.event_id, SHARDS))
        # Move every entry into one shard, as one shard's listing would see them.
        entry_path = time_index_key(event, SHARDS).removeprefix(own_prefix)
        keys[name] = time_index_prefix(shard) + entry_path

    start_after = time_start_after(shard, moment)
    listed = sorted(key for key in keys.values() if key > start_after)

    assert listed == sorted([keys["at"], keys["after-microsecond"], keys["after-day"]])


def test_time_start_after_converts_offset_to_utc():
    moment = datetime(2026, 3, 3, 1, 0, tzinfo=timezone(timedelta(hours=2)))

    assert time_start_after(4, moment) == "index/time/04/2026/03/02/20260302T230000.000000Z"


def test_parse_call_index_key_round_trip():
    event = make_event()
    prefix = call_index_prefix(event.call_id)

    entry = parse_index_key(call_index_key(event), prefix)

    assert entry == IndexEntry(
        timestamp=event.timestamp,
        event_type="CALL_STARTED",
        event_id="evt-9c21-001",
        suffix="20260302T140500.112000Z!CALL_STARTED!evt-9c21-001",
    )


def test_parse_time_index_key_round_trip():
    event = make_event(event_id="evt.a:b@c+d=e_f-g")
    shard = time_index_shard(event.event_id, SHARDS)
    prefix = time_index_prefix(shard)

    entry = parse_index_key(time_index_key(event, SHARDS), prefix)

    assert entry.event_id == "evt.a:b@c+d=e_f-g"
    assert entry.timestamp == event.timestamp
    assert entry.suffix == "2026/03/02/20260302T140500.112000Z!CALL_STARTED!evt.a:b@c+d=e_f-g"


@pytest.mark.parametrize(
    "key",
    [
        "index/calls/ab/call-1/20260302T140500.112000Z!CALL_STARTED",
        "index/calls/ab/call-1/20260302T140500.112000Z!CALL_STARTED!evt-1!extra",
        "index/calls/ab/call-1/2026-03-02!CALL_STARTED!evt-1",
        "index/calls/ab/call-1/20260302T140500.112000Z!!evt-1",
    ],
)
def test_parse_index_key_rejects_malformed_key(key):
    with pytest.raises(ValueError):
        parse_index_key(key, "index/calls/ab/call-1/")


def test_parse_index_key_rejects_other_prefix():
    with pytest.raises(ValueError):
        key = "index/time/01/2026/03/02/20260302T140500.112000Z!A!evt-1"
        parse_index_key(key, "index/time/02/")
