"""Send a bounded load of POST /events and GETs to the local API and print the latencies as JSON.

bench/api_latency.py runs this as a second process. Each worker thread keeps
one HTTP/1.1 connection to 127.0.0.1 and alternates a one-event POST with a
GET of what it stored: GET /events/{eventId} and GET /calls/{callId}/events by
turns. The load stops after --requests requests or --max-seconds, whichever
comes first.

    python bench/load_client.py --base-url URL --token TOKEN [--requests 400] [--workers 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

LOOPBACK_HOST = "127.0.0.1"
REQUEST_TIMEOUT_SECONDS = 30


class Worker(threading.Thread):
    """One connection that sends POSTs and GETs in turn until the shared budget is spent."""

    def __init__(self, number: int, base_url: str, token: str, budget: Budget) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(base_url)
        if parts.hostname != LOOPBACK_HOST:
            raise SystemExit(f"error: the load goes to {LOOPBACK_HOST} only, not {parts.hostname}")
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path.rstrip("/")
        self.token = token
        self.budget = budget
        self.run_id = f"load-{uuid.uuid4().hex[:8]}-{number}"
        self.latencies: dict[str, list[float]] = {"POST": [], "GET": []}
        self.failures: list[str] = []

    def request(self, connection: http.client.HTTPConnection, method: str, path: str,
                body: bytes | None = None) -> int | str:
        """Send one request and return its status, or the transport error as text."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            connection.request(method, self.path + path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            # The connection is unusable now, so close it and let the next request reconnect.
            connection.close()
            return f"failed ({type(error).__name__}: {error})"
        self.latencies[method].append((time.perf_counter() - started) * 1000)
        return response.status

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_SECONDS)
        sequence = 0
        while self.budget.take(2):
            sequence += 1
            event_id = f"{self.run_id}-{sequence:05d}"
            call_id = f"{self.run_id}-call-{sequence // 10:04d}"
            event = {
                "eventId": event_id,
                "eventType": "SIP_INVITE",
                "callId": call_id,
                "timestamp": "2025-02-17T12:00:00.000Z",
                "source": "pbx-bench-01",
                "payload": {"sequence": sequence},
            }
            status = self.request(connection, "POST", "/events", json.dumps(event).encode())
            if status != 201:
                self.failures.append(f"POST {status}")
            path = f"/events/{event_id}" if sequence % 2 else f"/calls/{call_id}/events"
            status = self.request(connection, "GET", path)
            if status != 200:
                self.failures.append(f"GET {path} {status}")
        connection.close()


class Budget:
    """Requests left and the deadline, shared by the workers."""

    def __init__(self, requests: int, max_seconds: float) -> None:
        self.left = requests
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()

    def take(self, count: int) -> bool:
        with self.lock:
            if self.left < count or time.monotonic() > self.deadline:
                return False
            self.left -= count
            return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="API base URL on http://127.0.0.1")
    parser.add_argument("--token", required=True, help="bearer token with events:read and events:write")
    parser.add_argument("--requests", type=int, default=400, help="requests in all (default 400)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent connections (default 4)")
    parser.add_argument("--max-seconds", type=float, default=120,
                        help="stop sending after this many seconds (default 120)")
    args = parser.parse_args(argv)

    budget = Budget(args.requests, args.max_seconds)
    workers = [Worker(number, args.base_url, args.token, budget) for number in range(args.workers)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started

    result = {
        "seconds": elapsed,
        "workers": args.workers,
        "POST": [value for worker in workers for value in worker.latencies["POST"]],
        "GET": [value for worker in workers for value in worker.latencies["GET"]],
        "failures": [failure for worker in workers for failure in worker.failures],
    }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
