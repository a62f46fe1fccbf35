"""Storer benchmark: handler time per event against a bare PutObject, and batches against singles.

The storer handler (functions/storer/app.py with the layer's callflow package)
runs in this process against the emulator's S3 endpoint, with the client that
callflow.store.make_s3_client builds for Lambda (the layer's own S3 client).
Handler time is server-side time: from the call of lambda_handler to its
return, without API Gateway. The bare PutObject is a boto3 client's, with the
handlers' botocore settings, to the same endpoint. A bare put of the layer's
client is reported beside it. Measurements alternate, so drift in machine
load hits both sides of every ratio alike.

Two settings are measured. "emulator" is the emulator as it is: it serves one
S3 request at a time, so requests sent concurrently wait for each other.
"modelled latency" sends every client through bench/latency_proxy.py on
127.0.0.1, which delays each request by a fixed time before passing it on: a
model of S3's latency in an AWS region, where requests run in parallel. It is
a model, not S3.

    python bench/storer_write.py [--singles 200] [--rounds 5] [--results FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from statistics import median
from typing import Any

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

from callflow.store import DEFAULT_MAX_WORKERS

DEFAULT_SINGLES = 200
DEFAULT_ROUNDS = 5
BATCH_SIZE = 100
MODELLED_SINGLES = 60
MODELLED_ROUNDS = 2
WARM_UP_INVOCATIONS = 20
# The body of every bare put: about the size of one stored event.
BARE_BODY = b"x" * 360
CONNECTION_LOGGER = "urllib3.connectionpool"

STORER_RATIO_GOAL = 1.25
BATCH_RATIO_GOAL = 0.2
# Threads of the floor measurement: as many as the store's pool has.
FLOOR_WORKERS = DEFAULT_MAX_WORKERS


class ConnectionCounter(logging.Handler):
    """Count the new HTTP connections urllib3 opens (it logs each at DEBUG level)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Starting new HTTP"):
            self.count += 1


class StorerBench:
    """The storer handler loaded in this process, and requests to time with it."""

    def __init__(self) -> None:
        outputs = common.stack_outputs()
        environment = common.apply_function_environment(outputs["StorerFunctionName"])

        self.module = load_handler("storer")
        self.context = common.LambdaContext(outputs["StorerFunctionName"])
        self.sink = common.silence_function_logs()
        self.bucket = environment["EVENTS_BUCKET"]
        self.shards = int(environment["TIME_INDEX_SHARDS"])
        endpoint = common.require_local_endpoint()
        self.client = self.module.make_s3_client()
        self.bare_client = common.boto3_s3_client(endpoint)
        self.template = load_fixture("post-event.json")
        self.pool = ThreadPoolExecutor(max_workers=FLOOR_WORKERS)
        self.run_id = uuid.uuid4().hex[:10]
        self.sequence = 0

    def _event(self, call_number: int) -> dict[str, Any]:
        self.sequence += 1
        return {
            "eventId": f"bench-{self.run_id}-{self.sequence:06d}",
            "eventType": "SIP_INVITE",
            "callId": f"bench-call-{self.run_id}-{call_number:04d}",
            "timestamp": "2025-02-14T09:30:00.250Z",
            "source": "pbx-bench-01",
            "from": "+15550100001",
            "to": "+15550190002",
            "payload": {"cseq": "1 INVITE", "codec": "PCMU"},
        }

    def request(self, body: object) -> dict[str, Any]:
        request = copy.deepcopy(self.template)
        request["body"] = json.dumps(body)
        return request

    def single_request(self) -> dict[str, Any]:
        return self.request(self._event(self.sequence // 10))

    def batch_request(self) -> dict[str, Any]:
        call_number = self.sequence
        return self.request([self._event(call_number + n // 25) for n in range(BATCH_SIZE)])

    def invoke(self, request: dict[str, Any]) -> float:
        """Invoke the handler and return its time in milliseconds.

        Raises RuntimeError unless the handler returns 201.
        """
        with contextlib.redirect_stdout(self.sink):
            started = time.perf_counter()
            response = self.module.lambda_handler(request, self.context)
            elapsed = (time.perf_counter() - started) * 1000
        if response["statusCode"] != 201:
            raise RuntimeError(f"the storer returned status {response['statusCode']}: {response['body']}")
        return elapsed

    def use_endpoint(self, url: str) -> None:
        """Send the handler's and the bare puts' S3 requests to `url` from now on."""
        self.client = common.handler_s3_client(url)
        self.bare_client = common.boto3_s3_client(url)
        store = self.module.EventStore(self.bucket, self.client, time_index_shards=self.shards)
        self.module.get_store = lambda: store

    def _bare_key(self) -> str:
        self.sequence += 1
        return f"bench/bare/{self.run_id}/{self.sequence:06d}"

    def bare_puts_on_threads(self, count: int) -> float:
        """Put `count` event-sized objects on FLOOR_WORKERS threads and return the milliseconds taken.

        The puts use the handler's client and go as fast as the endpoint allows.
        """
        keys = [self._bare_key() for _ in range(count)]
        started = time.perf_counter()
        list(self.pool.map(
            lambda key: self.client.put_object(Bucket=self.bucket, Key=key, Body=BARE_BODY), keys
        ))
        return (time.perf_counter() - started) * 1000

    def bare_put(self, client: Any = None) -> float:
        """Put one event-sized object with a plain put_object and return the milliseconds taken.

        The client is boto3's unless `client` is given.
        """
        key = self._bare_key()
        started = time.perf_counter()
        (client or self.bare_client).put_object(Bucket=self.bucket, Key=key, Body=BARE_BODY)
        return (time.perf_counter() - started) * 1000


def measure(bench: StorerBench, singles: int, rounds: int) -> dict[str, float]:
    """Measure singles against bare puts, then batches against 100 singles, alternating."""
    bare_times: list[float] = []
    layer_bare_times: list[float] = []
    single_times: list[float] = []
    for _ in range(singles):
        bare_times.append(bench.bare_put())
        single_times.append(bench.invoke(bench.single_request()))
        layer_bare_times.append(bench.bare_put(bench.client))

    batch_times: list[float] = []
    hundred_single_times: list[float] = []
    floor_times: list[float] = []
    for _ in range(rounds):
        batch_times.append(bench.invoke(bench.batch_request()))
        requests = [bench.single_request() for _ in range(BATCH_SIZE)]
        hundred_single_times.append(sum(bench.invoke(request) for request in requests))
        floor_times.append(bench.bare_puts_on_threads(3 * BATCH_SIZE))

    return {
        "bare_put_ms": median(bare_times),
        "layer_client_bare_put_ms": median(layer_bare_times),
        "single_event_ms": median(single_times),
        "batch_ms": median(batch_times),
        "hundred_singles_ms": median(hundred_single_times),
        "puts_300_ms": median(floor_times),
    }


def count_new_connections(bench: StorerBench, invocations: int) -> tuple[int, int]:
    """Return (new HTTP connections, S3 clients created) over warm single-event invocations.

    The layer's S3 client counts the connections it opens. A boto3 client's
    connections are counted from the DEBUG line urllib3 logs for each.
    """
    counter = ConnectionCounter()
    connection_logger = logging.getLogger(CONNECTION_LOGGER)
    previous_level = connection_logger.level
    connection_logger.setLevel(logging.DEBUG)
    connection_logger.addHandler(counter)
    clients_before = bench.module.make_s3_client.cache_info().misses
    opened_before = getattr(bench.client, "connections_opened", 0)
    try:
        for _ in range(invocations):
            bench.invoke(bench.single_request())
    finally:
        connection_logger.removeHandler(counter)
        connection_logger.setLevel(previous_level)
    opened = getattr(bench.client, "connections_opened", 0) - opened_before
    return counter.count + opened, bench.module.make_s3_client.cache_info().misses - clients_before


def measure_log_bytes(bench: StorerBench) -> dict[str, float]:
    """Return the log bytes the handler writes per event and per request besides the events."""
    before = bench.sink.bytes_written
    bench.invoke(bench.single_request())
    single = bench.sink.bytes_written - before

    before = bench.sink.bytes_written
    bench.invoke(bench.batch_request())
    batch = bench.sink.bytes_written - before

    per_event = (batch - single) / (BATCH_SIZE - 1)
    return {"per_event": per_event, "per_request": single - per_event}


def build_figures(emulator: dict[str, float], modelled: dict[str, float], connections: int,
                  clients: int, invocations: int) -> list[Figure]:
    latency_ms = MODELLED_LATENCY_SECONDS * 1000
    figures = [
        figure(
            "storer_time_per_event_vs_bare_put",
            emulator["single_event_ms"] / emulator["bare_put_ms"],
            "ratio",
            "median storer handler time for a one-event POST / median bare PutObject, "
            "emulator S3",
            goal=STORER_RATIO_GOAL,
            comparison=AT_MOST,
        ),
        figure(
            "storer_time_per_event_in_batch_vs_bare_put",
            emulator["batch_ms"] / BATCH_SIZE / emulator["bare_put_ms"],
            "ratio",
            "median storer handler time for a 100-event POST, per event / median bare "
            "PutObject, emulator S3",
            goal=STORER_RATIO_GOAL,
            comparison=AT_MOST,
        ),
        figure(
            "storer_batch_vs_100_singles",
            emulator["batch_ms"] / emulator["hundred_singles_ms"],
            "ratio",
            "median handler time of one 100-event POST / of 100 one-event POSTs, emulator S3; "
            "reported, as the emulator serves one request at a time (see "
            "storer_batch_floor_vs_100_singles); api_batch_vs_100_singles carries the goal",
        ),
        figure(
            "storer_batch_floor_vs_100_singles",
            emulator["puts_300_ms"] / emulator["hundred_singles_ms"],
            "ratio",
            f"median time of {3 * BATCH_SIZE} bare PutObject calls of the layer's S3 client on "
            f"{FLOOR_WORKERS} threads (the writes of a 100-event POST, with nothing else) / of "
            "100 one-event POSTs, emulator S3: the lowest storer_batch_vs_100_singles this "
            "endpoint allows",
        ),
        figure(
            "storer_time_per_event_vs_bare_put_modelled_latency",
            modelled["single_event_ms"] / modelled["bare_put_ms"],
            "ratio",
            f"as storer_time_per_event_vs_bare_put, with every S3 request held {latency_ms:g} ms "
            "by a proxy on 127.0.0.1 (a model of S3's latency)",
            goal=STORER_RATIO_GOAL,
            comparison=AT_MOST,
        ),
        figure(
            "storer_time_per_event_in_batch_vs_bare_put_modelled_latency",
            modelled["batch_ms"] / BATCH_SIZE / modelled["bare_put_ms"],
            "ratio",
            f"as storer_time_per_event_in_batch_vs_bare_put, with every S3 request held "
            f"{latency_ms:g} ms",
            goal=STORER_RATIO_GOAL,
            comparison=AT_MOST,
        ),
        figure(
            "storer_batch_vs_100_singles_modelled_latency",
            modelled["batch_ms"] / modelled["hundred_singles_ms"],
            "ratio",
            f"as storer_batch_vs_100_singles, with every S3 request held "
            f"{latency_ms:g} ms",
            goal=BATCH_RATIO_GOAL,
            comparison=AT_MOST,
        ),
        figure("storer_single_event_handler_ms", emulator["single_event_ms"], "ms",
               "median storer handler time for a one-event POST, emulator S3"),
        figure("storer_batch_100_handler_ms", emulator["batch_ms"], "ms",
               "median storer handler time for a 100-event POST, emulator S3"),
        figure("bare_put_ms", emulator["bare_put_ms"], "ms",
               "median bare boto3 PutObject of a 360-byte object, emulator S3"),
        figure("layer_client_bare_put_ms", emulator["layer_client_bare_put_ms"], "ms",
               "median bare PutObject of a 360-byte object with the layer's S3 client "
               "(callflow.awsclient), emulator S3"),
        figure("storer_single_event_handler_ms_modelled_latency", modelled["single_event_ms"], "ms",
               f"as storer_single_event_handler_ms, with every S3 request held "
               f"{latency_ms:g} ms"),
        figure("storer_batch_100_handler_ms_modelled_latency", modelled["batch_ms"], "ms",
               f"as storer_batch_100_handler_ms, with every S3 request held "
               f"{latency_ms:g} ms"),
        figure("bare_put_ms_modelled_latency", modelled["bare_put_ms"], "ms",
               f"as bare_put_ms, with every S3 request held {latency_ms:g} ms"),
        figure(
            "storer_new_s3_connections_warm",
            connections,
            "connections",
            f"new HTTP connections to S3 over {invocations} warm one-event invocations",
            goal=0,
            comparison=AT_MOST,
        ),
        figure(
            "storer_s3_clients_created_warm",
            clients,
            "clients",
            f"S3 clients created over {invocations} warm one-event invocations",
            goal=0,
            comparison=AT_MOST,
        ),
    ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--singles", type=int, default=DEFAULT_SINGLES,
                        help=f"one-event POSTs and bare puts to time (default {DEFAULT_SINGLES})")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"rounds of one batch and {BATCH_SIZE} singles (default {DEFAULT_ROUNDS})")
    common.results_argument(parser)
    args = parser.parse_args(argv)
    common.require_local_endpoint()

    bench = StorerBench()
    for _ in range(WARM_UP_INVOCATIONS):
        bench.invoke(bench.single_request())
    bench.invoke(bench.batch_request())

    connections, clients = count_new_connections(bench, WARM_UP_INVOCATIONS)
    log_bytes = measure_log_bytes(bench)
    emulator = measure(bench, args.singles, args.rounds)

    with common.modelled_latency_proxy() as proxy:
        bench.use_endpoint(proxy.url)
        bench.invoke(bench.batch_request())
        modelled = measure(bench, MODELLED_SINGLES, MODELLED_ROUNDS)

    figures = build_figures(emulator, modelled, connections, clients, WARM_UP_INVOCATIONS)
    figures.append(figure("storer_log_bytes_per_event", log_bytes["per_event"], "bytes",
                          "bytes the storer logs per event of a POST (its outcome line)"))
    figures.append(figure("storer_log_bytes_per_request", log_bytes["per_request"], "bytes",
                          "bytes the storer logs per POST besides the per-event lines "
                          "(metrics and request lines; Lambda's own lines not included)"))
    print_figures("storer: handler time against a bare PutObject", figures)
    write_figures(args.results, figures, {"emulator": emulator, "modelled_latency": modelled})
    return 0


if __name__ == "__main__":
    sys.exit(main())
