"""End-to-end latency of the local API: POST and GET under a bounded load from a second process.

The load comes from bench/load_client.py, started as a separate process on
this machine, so client and service do not share an interpreter. Latency is
measured by that client over HTTP on 127.0.0.1, through the emulator's API
Gateway, the authorizer (its policy cached per token after the first request)
and the functions running in the emulator. This process also times, over the
API, 100 one-event POSTs one after another against one 100-event POST: the
server-side time of each, as no network lies between client and API. It
counts what a batch saves per request in the gateway, the authorizer and the
function's invocation, which the storer benchmark's handler times leave out.

    python bench/api_latency.py [--requests 400] [--workers 4] [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from statistics import median

import requests

import common
from common import Figure, figure, percentile, print_figures, write_figures

LOAD_CLIENT = Path(__file__).resolve().parent / "load_client.py"
DEFAULT_REQUESTS = 400
DEFAULT_WORKERS = 4
MAX_SECONDS = 120
WARM_UP_REQUESTS = 40
BATCH_SIZE = 100
BATCH_ROUNDS = 2
REQUEST_TIMEOUT_SECONDS = 30
BATCH_RATIO_GOAL = 0.2


def post_timed(session: requests.Session, url: str, body: object) -> float:
    """POST `body` as JSON and return the milliseconds until the response.

    Raises RuntimeError unless the response status is 201.
    """
    started = time.perf_counter()
    response = session.post(url, json=body, timeout=REQUEST_TIMEOUT_SECONDS)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 201:
        raise RuntimeError(f"POST returned status {response.status_code}: {response.text[:300]}")
    return elapsed


def batch_against_singles(base_url: str, token: str) -> tuple[float, float]:
    """Return the median milliseconds of one 100-event POST and of 100 one-event POSTs."""
    session = common.api_session(token)
    run_id = uuid.uuid4().hex[:8]

    def event(number: int) -> dict[str, object]:
        return {
            "eventId": f"api-{run_id}-{number:05d}",
            "eventType": "SIP_INVITE",
            "callId": f"api-{run_id}-call-{number // 25:04d}",
            "timestamp": "2025-02-18T12:00:00.000Z",
            "source": "pbx-bench-01",
        }

    url = f"{base_url}/events"
    post_timed(session, url, event(0))
    batches, singles = [], []
    number = 1
    for _ in range(BATCH_ROUNDS):
        batches.append(post_timed(session, url, [event(number + n) for n in range(BATCH_SIZE)]))
        number += BATCH_SIZE
        singles.append(sum(post_timed(session, url, event(number + n)) for n in range(BATCH_SIZE)))
        number += BATCH_SIZE
    return median(batches), median(singles)


def run_load(base_url: str, token: str, total: int, workers: int) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, str(LOAD_CLIENT), "--base-url", base_url, "--token", token,
         "--requests", str(total), "--workers", str(workers), "--max-seconds", str(MAX_SECONDS)],
        capture_output=True, text=True, check=False, timeout=MAX_SECONDS + 60,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the load client failed with exit code {completed.returncode}:\n"
            f"{completed.stderr[-2000:]}"
        )
    return json.loads(completed.stdout)


def build_figures(load: dict[str, object], batch_ms: float, singles_ms: float) -> list[Figure]:
    figures = []
    for method in ("POST", "GET"):
        latencies = load[method]
        for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
            figures.append(figure(
                f"api_{method.lower()}_latency_{label}_ms", percentile(latencies, fraction), "ms",
                f"{label} of {len(latencies)} {method} requests through the local API, "
                f"{load['workers']} concurrent connections from a second process",
            ))
    requests_made = len(load["POST"]) + len(load["GET"])
    figures.append(figure("api_throughput_requests_per_second", requests_made / load["seconds"],
                          "requests/s", "requests the load client completed per second"))
    figures.append(figure("api_load_failures", len(load["failures"]), "requests",
                          "requests of the load that did not get 201 or 200", goal=0,
                          comparison=common.AT_MOST))
    figures.append(figure(
        "api_batch_vs_100_singles", batch_ms / singles_ms, "ratio",
        "server-side time of one 100-event POST / of 100 one-event POSTs in a row: the "
        "local API's time to answer (gateway, authorizer, storer, S3), timed by a client "
        "on 127.0.0.1, medians", goal=BATCH_RATIO_GOAL, comparison=common.AT_MOST,
    ))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS,
                        help=f"requests of the load, POST and GET together (default {DEFAULT_REQUESTS})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"concurrent connections of the load client (default {DEFAULT_WORKERS})")
    common.results_argument(parser)
    args = parser.parse_args(argv)
    common.require_local_endpoint()

    outputs = common.stack_outputs()
    base_url = common.api_base_url(outputs)
    token = common.mint_stack_token(outputs)

    run_load(base_url, token, WARM_UP_REQUESTS, args.workers)
    load = run_load(base_url, token, args.requests, args.workers)
    batch_ms, singles_ms = batch_against_singles(base_url, token)

    figures = build_figures(load, batch_ms, singles_ms)
    print_figures("end-to-end latency through the local API", figures)
    write_figures(args.results, figures, {"failures": load["failures"][:20],
                                          "batch_ms": batch_ms, "hundred_singles_ms": singles_ms})
    return 0


if __name__ == "__main__":
    sys.exit(main())
