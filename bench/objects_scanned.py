"""Objects scanned per result: call, date-range and event-type queries over the 50,000-event data set.

The data set (bench/dataset.py: 2,000 calls of 25 events over 30 days, one
call in ten across midnight UTC) is written straight into the stack's bucket
with callflow.store.EventStore, which writes the same three keys per event as
the storer. The queries then go through the deployed API on 127.0.0.1, page by
page, and each response is checked against the data set: the right events, in
timestamp order, none twice. s3ObjectsScanned and s3ListCalls come from the
retriever's "Query completed" log lines, read from the emulator's CloudWatch
Logs.

    python bench/objects_scanned.py [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

import common
import dataset
from common import AT_MOST, Figure, figure, print_figures, write_figures

from callflow.query import MAX_LIST_CALLS_PER_INDEX

SCANNED_PER_RESULT_GOAL = 1.1
SAMPLE_CALLS = 30
CALL_TYPE_SAMPLE = 20
LOG_WAIT_SECONDS = 90
REQUEST_TIMEOUT_SECONDS = 120
DATASET_MARKER_KEY = f"bench/dataset-{dataset.ID_PREFIX}-complete"

CALL = "call"
RANGE = "range"
EVENT_TYPE = "event_type"


@dataclass
class QuerySpec:
    """One query of the benchmark and the eventIds it must return according to the data set."""

    kind: str
    path: str
    params: dict[str, str]
    expected_ids: list[str]
    log_match: dict[str, Any]


@dataclass
class KindTotals:
    requests: int = 0
    results: int = 0
    scanned: int = 0
    list_calls: list[int] = field(default_factory=list)


def _events_between(calls: Sequence[dataset.Call], start: datetime, end: datetime,
                    event_type: str | None = None) -> list[dict[str, Any]]:
    selected = [
        raw
        for call in calls
        for raw in call.events
        if start <= dataset.event_time(raw) <= end
        and (event_type is None or raw["eventType"] == event_type)
    ]
    selected.sort(key=lambda raw: (dataset.event_time(raw), raw["eventId"]))
    return selected


def query_specs(calls: Sequence[dataset.Call]) -> list[QuerySpec]:
    """Return the benchmark's queries: calls across midnight and not, ranges, and type filters."""
    specs = []
    midnight_calls = [call for call in calls if call.spans_midnight][:SAMPLE_CALLS]
    other_calls = [call for call in calls if not call.spans_midnight][:SAMPLE_CALLS]
    for call in [*midnight_calls, *other_calls]:
        specs.append(QuerySpec(
            CALL, f"/calls/{call.call_id}/events", {},
            [raw["eventId"] for raw in call.events],
            {"route": "call", "callId": call.call_id},
        ))
    for call in midnight_calls[:CALL_TYPE_SAMPLE]:
        specs.append(QuerySpec(
            CALL, "/events",
            {"callId": call.call_id, "eventType": "AGENT_CONNECTED",
             "startDate": "2025-03-01", "endDate": "2025-03-31"},
            [raw["eventId"] for raw in call.events if raw["eventType"] == "AGENT_CONNECTED"],
            {"route": "events", "callId": call.call_id, "eventType": "AGENT_CONNECTED"},
        ))

    ranges = [
        (RANGE, "2025-03-10T22:00:00Z", "2025-03-11T02:00:00Z", None, "1000"),
        (RANGE, "2025-03-15T00:00:00Z", "2025-03-15T23:59:59.999999Z", None, "1000"),
        (RANGE, "2025-03-20T22:00:00Z", "2025-03-21T02:00:00Z", None, "100"),
        (EVENT_TYPE, "2025-03-03T00:00:00Z", "2025-03-09T23:59:59.999999Z", "AGENT_CONNECTED", "500"),
        (EVENT_TYPE, "2025-03-01T00:00:00Z", "2025-03-30T23:59:59.999999Z", dataset.RARE_TYPE, "1000"),
        (EVENT_TYPE, "2025-03-20T23:00:00Z", "2025-03-21T01:00:00Z", "CALL_ENDED", "100"),
    ]
    for kind, start, end, event_type, limit in ranges:
        params = {"startDate": start, "endDate": end, "limit": limit}
        # The retriever logs the dates as it normalised them, which is how they are written here.
        match = {"route": "events", "startDate": start, "endDate": end,
                 "eventType": event_type, "callId": None}
        if event_type is not None:
            params["eventType"] = event_type
        expected = _events_between(
            calls, dataset.parse_timestamp(start), dataset.parse_timestamp(end), event_type
        )
        specs.append(QuerySpec(kind, "/events", params, [raw["eventId"] for raw in expected], match))
    return specs


def run_query(session: requests.Session, base_url: str, spec: QuerySpec) -> tuple[list[str], int]:
    """Read every page of `spec` and return the eventIds in response order and the requests made."""
    event_ids: list[str] = []
    params = dict(spec.params)
    pages = 0
    previous_time = ""
    while True:
        response = session.get(base_url + spec.path, params=params, timeout=REQUEST_TIMEOUT_SECONDS)
        pages += 1
        if response.status_code != 200:
            raise RuntimeError(
                f"GET {spec.path} {params} returned status {response.status_code}: "
                f"{response.text[:300]}"
            )
        body = response.json()
        for event in body["events"]:
            if event["timestamp"] < previous_time:
                raise RuntimeError(f"GET {spec.path} {spec.params} is out of timestamp order")
            previous_time = event["timestamp"]
            event_ids.append(event["eventId"])
        if "nextToken" not in body:
            return event_ids, pages
        params["nextToken"] = body["nextToken"]


def query_log_lines(log_group: str, since_ms: int, expected: int) -> list[dict[str, Any]]:
    """Return the retriever's "Query completed" lines since `since_ms`.

    Waits up to LOG_WAIT_SECONDS for `expected` lines to arrive.
    """
    import boto3

    logs = boto3.client("logs")
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        lines = []
        for message in _log_messages(logs, log_group, since_ms):
            if '"Query completed"' not in message:
                continue
            try:
                lines.append(json.loads(message[message.index("{"):]))
            except ValueError:
                continue
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(2)


def _log_messages(logs: Any, log_group: str, since_ms: int) -> Iterator[str]:
    request: dict[str, Any] = {"logGroupName": log_group, "startTime": since_ms,
                               "filterPattern": '"Query completed"'}
    while True:
        response = logs.filter_log_events(**request)
        for event in response.get("events", []):
            yield event["message"]
        token = response.get("nextToken")
        if not token:
            return
        request["nextToken"] = token


def matches(line: dict[str, Any], spec: QuerySpec) -> bool:
    """Return whether a log line is a page of `spec`. None in log_match means the field is absent."""
    query = line.get("query", {})
    return all(query.get(key) == value for key, value in spec.log_match.items())


def ensure_dataset(calls: Sequence[dataset.Call], bucket: str, shards: int) -> float | None:
    """Load the data set into `bucket` unless it is there, and return the events loaded per second.

    Returns None when the bucket already contains the data set.
    """
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=DATASET_MARKER_KEY)
        print(f"  the data set is already in {bucket}", file=sys.stderr)
        return None
    except ClientError:
        pass
    seconds = dataset.load(calls, bucket, time_index_shards=shards)
    s3.put_object(Bucket=bucket, Key=DATASET_MARKER_KEY, Body=b"")
    return dataset.CALL_COUNT * dataset.EVENTS_PER_CALL / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.results_argument(parser)
    args = parser.parse_args(argv)
    common.require_local_endpoint()

    outputs = common.stack_outputs()
    environment = common.function_environment(outputs["RetrieverFunctionName"])
    shards = int(environment["TIME_INDEX_SHARDS"])
    calls = dataset.generate()
    load_rate = ensure_dataset(calls, outputs["EventsBucketName"], shards)

    base_url = common.api_base_url(outputs)
    session = common.api_session(common.mint_stack_token(outputs, "events:read"))
    # One request first, so the authorizer's cold start and the log's clock are behind us.
    session.get(f"{base_url}/health", timeout=REQUEST_TIMEOUT_SECONDS)
    since_ms = int(time.time() * 1000) - 1000

    specs = query_specs(calls)
    requests_made = 0
    returned: Counter[str] = Counter()
    for spec in specs:
        event_ids, pages = run_query(session, base_url, spec)
        requests_made += pages
        # run_query has checked the timestamp order. Events with equal timestamps
        # may come in any order, so the eventIds are compared sorted.
        if sorted(event_ids) != sorted(spec.expected_ids):
            raise RuntimeError(
                f"GET {spec.path} {spec.params} returned {len(event_ids)} events that differ "
                f"from the {len(spec.expected_ids)} of the data set"
            )
        if len(set(event_ids)) != len(event_ids):
            raise RuntimeError(f"GET {spec.path} {spec.params} returned an event twice")
        returned[spec.kind] += len(event_ids)

    log_group = f"/aws/lambda/{outputs['RetrieverFunctionName']}"
    lines = query_log_lines(log_group, since_ms, requests_made)
    totals = {kind: KindTotals() for kind in (CALL, RANGE, EVENT_TYPE)}
    for line in lines:
        spec = next((spec for spec in specs if matches(line, spec)), None)
        if spec is None:
            continue
        total = totals[spec.kind]
        total.requests += 1
        total.results += line["resultCount"]
        total.scanned += line["s3ObjectsScanned"]
        total.list_calls.append(line["s3ListCalls"])
    for kind, total in totals.items():
        if total.results != returned[kind]:
            raise RuntimeError(
                f"{kind}: the log lines count {total.results} results, but the API returned "
                f"{returned[kind]}. {len(lines)} of {requests_made} log lines arrived."
            )

    figures = build_figures(totals, shards, load_rate)
    print_figures("objects scanned per result on the 50,000-event data set", figures)
    write_figures(args.results, figures, {
        kind: {"requests": total.requests, "results": total.results, "scanned": total.scanned,
               "max_list_calls": max(total.list_calls)}
        for kind, total in totals.items()
    })
    return 0


def build_figures(totals: dict[str, KindTotals], shards: int, load_rate: float | None) -> list[Figure]:
    names = {CALL: "call (GET /calls/{callId}/events, GET /events?callId&eventType)",
             RANGE: "date range (GET /events?startDate&endDate)",
             EVENT_TYPE: "date range with eventType"}
    figures = []
    for kind, total in totals.items():
        figures.append(figure(
            f"objects_scanned_per_result_{kind}", total.scanned / total.results, "objects/result",
            f"{names[kind]}: s3ObjectsScanned / resultCount over {total.requests} requests and "
            f"{total.results} results, from the retriever's log lines",
            goal=SCANNED_PER_RESULT_GOAL, comparison=AT_MOST,
        ))
    list_bound = shards * MAX_LIST_CALLS_PER_INDEX
    range_pages = totals[RANGE].list_calls + totals[EVENT_TYPE].list_calls
    figures.append(figure(
        "range_list_calls_per_page_max", max(range_pages), "LIST calls",
        f"max LIST calls one date-range page made; the bound is TimeIndexShards ({shards}) x "
        f"{MAX_LIST_CALLS_PER_INDEX} per shard",
        goal=list_bound, comparison=AT_MOST,
    ))
    if load_rate is not None:
        figures.append(figure("dataset_load_events_per_second", load_rate, "events/s",
                              "rate EventStore.put_events wrote the data set into the emulator"))
    return figures


if __name__ == "__main__":
    sys.exit(main())
