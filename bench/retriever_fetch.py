"""Retriever benchmark: GET /calls/{callId}/events for a 500-event call, concurrent against sequential fetch.

The retriever handler runs in this process against the emulator's S3 endpoint.
"concurrent" is the handler as deployed: EventStore fetches the page's event
objects on its bounded thread pool. "sequential" swaps in an EventStore whose
fetches run one after another in the calling thread: the same requests, one
at a time. The two alternate, round by round.

As in bench/storer_write.py, the "modelled latency" setting sends the S3
requests through bench/latency_proxy.py, which delays each one by a fixed
time: a model of S3's latency in an AWS region. The emulator itself serves
one S3 request at a time, so on it concurrent requests wait for each other,
and most of what concurrency gains in a region is hidden. The script measures
how much with bare GetObject calls of the same objects, on the store's
threads against one at a time (emulator_get_concurrent_vs_sequential): the
handler's ratio on the emulator cannot get far below it.

    python bench/retriever_fetch.py [--rounds 7] [--results FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from statistics import median
from typing import Any, TypeVar

import common
from common import (
    AT_MOST,
    MODELLED_LATENCY_SECONDS,
    Figure,
    figure,
    load_fixture,
    load_handler,
    print_figures,
    write_figures,
)

from callflow.events import parse_event
from callflow.keys import event_key
from callflow.settings import DEFAULT_MAX_EVENT_BYTES
from callflow.store import DEFAULT_MAX_WORKERS, EventStore

CALL_EVENTS = 500
SMALL_CALL_EVENTS = 25
DEFAULT_ROUNDS = 7
MODELLED_ROUNDS = 3
FETCH_RATIO_GOAL = 0.3
FLOOR_WORKERS = DEFAULT_MAX_WORKERS

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class SequentialEventStore(EventStore):
    """An EventStore that makes its S3 requests one at a time, in the calling thread."""

    def _map(self, function: Callable[[_Item], _Result], items: Iterable[_Item]) -> list[_Result]:
        return [function(item) for item in items]


class RetrieverBench:
    """The retriever handler loaded in this process, and the calls of 500 and 25 events it reads."""

    def __init__(self) -> None:
        outputs = common.stack_outputs()
        environment = common.apply_function_environment(outputs["RetrieverFunctionName"])

        self.module = load_handler("retriever")
        self.context = common.LambdaContext(outputs["RetrieverFunctionName"], memory_mb=1024)
        self.sink = common.silence_function_logs()
        self.bucket = environment["EVENTS_BUCKET"]
        self.shards = int(environment["TIME_INDEX_SHARDS"])
        self.use_client(self.module.make_s3_client())
        run_id = uuid.uuid4().hex[:10]
        self.call_ids = {
            CALL_EVENTS: f"bench-call500-{run_id}",
            SMALL_CALL_EVENTS: f"bench-call25-{run_id}",
        }

    def use_client(self, client: Any) -> None:
        """Make both stores send their S3 requests with `client`."""
        self.client = client
        self.concurrent_store = EventStore(self.bucket, client, time_index_shards=self.shards)
        self.sequential_store = SequentialEventStore(self.bucket, client, time_index_shards=self.shards)

    def store_call(self, size: int) -> None:
        """Store the events of the call of `size` events, a second apart."""
        call_id = self.call_ids[size]
        events = []
        for number in range(size):
            minute, second = divmod(number, 60)
            raw = {
                "eventId": f"{call_id}-{number:03d}",
                "eventType": "QUEUE_POSITION_UPDATED" if number % 2 else "DTMF_RECEIVED",
                "callId": call_id,
                "timestamp": f"2025-02-15T10:{minute:02d}:{second:02d}.000Z",
                "source": "pbx-bench-01",
                "payload": {"sequence": number, "digits": "1234"},
            }
            events.append(parse_event(raw, max_event_bytes=DEFAULT_MAX_EVENT_BYTES))
        for result in self.concurrent_store.put_events(events):
            if isinstance(result, Exception):
                raise result

    def request(self, size: int) -> dict[str, Any]:
        call_id = self.call_ids[size]
        request = load_fixture("get-call-events.json")
        request["path"] = f"/calls/{call_id}/events"
        request["pathParameters"] = {"callId": call_id}
        request["queryStringParameters"] = None
        request["multiValueQueryStringParameters"] = None
        return request

    def invoke(self, store: EventStore, size: int = CALL_EVENTS) -> float:
        """Return the milliseconds the handler takes to GET the call of `size` events from `store`."""
        self.module._event_store = lambda: store
        request = self.request(size)
        with contextlib.redirect_stdout(self.sink):
            started = time.perf_counter()
            response = self.module.lambda_handler(request, self.context)
            elapsed = (time.perf_counter() - started) * 1000
        body = json.loads(response["body"])
        if response["statusCode"] != 200 or body["count"] != size:
            raise RuntimeError(f"the retriever returned status {response['statusCode']}: {body}")
        return elapsed


def measure(bench: RetrieverBench, rounds: int) -> dict[str, float]:
    concurrent: list[float] = []
    sequential: list[float] = []
    for _ in range(rounds):
        concurrent.append(bench.invoke(bench.concurrent_store))
        sequential.append(bench.invoke(bench.sequential_store))
    small = [bench.invoke(bench.concurrent_store, SMALL_CALL_EVENTS) for _ in range(rounds)]
    return {
        "concurrent_ms": median(concurrent),
        "sequential_ms": median(sequential),
        "call25_ms": median(small),
    }


def bare_get_ratio(bench: RetrieverBench, rounds: int = 3) -> float:
    """Return the median ratio of concurrent to sequential bare GETs of the 500-event call's objects."""
    call_id = bench.call_ids[CALL_EVENTS]
    keys = [event_key(f"{call_id}-{number:03d}") for number in range(CALL_EVENTS)]

    def get(key: str) -> None:
        bench.client.get_object(Bucket=bench.bucket, Key=key)["Body"].read()

    ratios = []
    with ThreadPoolExecutor(max_workers=FLOOR_WORKERS) as pool:
        for _ in range(rounds):
            started = time.perf_counter()
            for key in keys:
                get(key)
            sequential = time.perf_counter() - started
            started = time.perf_counter()
            list(pool.map(get, keys))
            ratios.append((time.perf_counter() - started) / sequential)
    return median(ratios)


def build_figures(emulator: dict[str, float], modelled: dict[str, float]) -> list[Figure]:
    latency_ms = MODELLED_LATENCY_SECONDS * 1000
    return [
        figure(
            "retriever_call500_concurrent_vs_sequential",
            emulator["concurrent_ms"] / emulator["sequential_ms"],
            "ratio",
            "median retriever handler time for GET /calls/{callId}/events of a 500-event "
            "call, concurrent / sequential fetch, emulator S3; reported, as the emulator "
            "serves one request at a time (see emulator_get_concurrent_vs_sequential); the "
            "_modelled_latency figure carries the goal",
        ),
        figure(
            "retriever_call500_concurrent_vs_sequential_modelled_latency",
            modelled["concurrent_ms"] / modelled["sequential_ms"],
            "ratio",
            f"as retriever_call500_concurrent_vs_sequential, with every S3 request held "
            f"{latency_ms:g} ms by a proxy on 127.0.0.1 (a model of S3's latency)",
            goal=FETCH_RATIO_GOAL,
            comparison=AT_MOST,
        ),
        figure("retriever_call500_concurrent_ms", emulator["concurrent_ms"], "ms",
               "median handler time, concurrent fetch, emulator S3"),
        figure("retriever_call500_sequential_ms", emulator["sequential_ms"], "ms",
               "median handler time, sequential fetch, emulator S3"),
        figure("retriever_call25_ms", emulator["call25_ms"], "ms",
               "median handler time of GET /calls/{callId}/events for a 25-event call, emulator S3"),
        figure("retriever_call25_ms_modelled_latency", modelled["call25_ms"], "ms",
               f"as retriever_call25_ms, with every S3 request held {latency_ms:g} ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"rounds of one concurrent and one sequential GET (default {DEFAULT_ROUNDS})")
    common.results_argument(parser)
    args = parser.parse_args(argv)
    common.require_local_endpoint()

    bench = RetrieverBench()
    bench.store_call(CALL_EVENTS)
    bench.store_call(SMALL_CALL_EVENTS)
    bench.invoke(bench.concurrent_store)
    emulator = measure(bench, args.rounds)

    bare_ratio = bare_get_ratio(bench)
    with common.modelled_latency_proxy() as proxy:
        bench.use_client(common.handler_s3_client(proxy.url))
        modelled = measure(bench, MODELLED_ROUNDS)

    figures = build_figures(emulator, modelled)
    figures.append(
        figure(
            "emulator_get_concurrent_vs_sequential",
            bare_ratio,
            "ratio",
            f"time of {CALL_EVENTS} bare GetObject calls of the layer's S3 client on "
            f"{FLOOR_WORKERS} threads / one at a time, emulator S3: what concurrency "
            "gains on this endpoint, which serves one request at a time",
        )
    )
    print_figures("retriever: concurrent against sequential fetch", figures)
    write_figures(args.results, figures, {"emulator": emulator, "modelled_latency": modelled})
    return 0


if __name__ == "__main__":
    sys.exit(main())
