#!/usr/bin/env python3
"""Post call events from concurrent clients, read them back, and check that none is lost or doubled.

    AWS_SAM_STACK_NAME=callflow-local AWS_ENDPOINT_URL=http://127.0.0.1:4566 \\
        .venv/bin/python bench/concurrency.py --events 2000 --clients 8 [--json]

`make concurrency` runs it against a fresh emulator of its own. The stack is
found as tests/integration does: AWS_SAM_STACK_NAME names it, its outputs give
the API and the bucket, and with AWS_ENDPOINT_URL set (only http://127.0.0.1
is accepted) the API is reached through the emulator's execute-api path.
CALLFLOW_API_URL overrides the base URL. The token is minted from the stack's
JwtSecretArn secret, or taken from CALLFLOW_TOKEN for a stack that uses JWKS.

The run posts every event once, re-sends 10 % of them unchanged and 1 % with
changed content, in single posts and batches, in shuffled order. Half of the
re-sends go out right beside the request with their original, so that two
clients post the same eventId at the same moment. Then it reads every event
back through GET /events/{eventId} and from S3, and checks:

- lost: an eventId with no stored object;
- doubled: an eventId with more than one object version, or reported
  "stored" more than once;
- mismatched: stored bytes that differ from the canonical JSON of the content
  the API accepted, or API bytes that differ from the S3 object;
- wrong_statuses: a submission reported "duplicate" with content other than
  the stored one, or "conflict" with the stored content;
- conflicts: every eventId re-sent with changed content has exactly one
  submission rejected with 409 EVENT_CONFLICT (the original, when the changed
  re-send won the race), and no other eventId has any.

It exits 1 when any check fails, 2 when it cannot start. Reading the objects
from S3 needs s3:ListBucketVersions and s3:GetObject on the events bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "layers" / "common"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import requests  # noqa: E402

from callflow.events import parse_event  # noqa: E402
from callflow.keys import event_key  # noqa: E402
from callflow.settings import (  # noqa: E402
    DEFAULT_JWT_AUDIENCE,
    DEFAULT_JWT_ISSUER,
    DEFAULT_MAX_EVENT_BYTES,
    MAX_BATCH_SIZE,
)

DEFAULT_EVENTS = 2000
DEFAULT_CLIENTS = 8
MAX_EVENTS = 20_000
MAX_CLIENTS = 64
DEFAULT_DEADLINE_SECONDS = 900
MAX_DEADLINE_SECONDS = 3600

IDENTICAL_RESEND_SHARE = 0.10
CHANGED_RESEND_SHARE = 0.01
# Share of the re-sends posted right beside their original's request.
RACING_RESEND_SHARE = 0.5
# Share of the remaining submissions posted one per request; the rest go in
# batches of 2 to DEFAULT_MAX_BATCH events.
SINGLE_POST_SHARE = 0.25
DEFAULT_MAX_BATCH = 25
EVENTS_PER_CALL = 10
EVENT_TYPES = ("CALL_STARTED", "SIP_INVITE", "SIP_RINGING", "CALL_ANSWERED", "CALL_ENDED")

REQUEST_TIMEOUT_SECONDS = 30
MAX_ATTEMPTS = 5
MAX_RETRY_DELAY_SECONDS = 5.0
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
SCOPES = ("events:read", "events:write")
TOKEN_SUBJECT = "concurrency-bench"
# The token outlives the deadline, so requests in flight at the deadline still pass.
TOKEN_TTL_MARGIN_SECONDS = 600
PROBLEMS_SHOWN = 10

STORED = "stored"
DUPLICATE = "duplicate"
CONFLICT = "conflict"
FAILED = "failed"
ERROR = "error"
ACCEPTED = frozenset({STORED, DUPLICATE})


class BenchError(Exception):
    """The benchmark cannot run: a missing stack, an endpoint off loopback, a bad option."""


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchConfig:
    """How many events to post, from how many clients, within which time."""

    events: int = DEFAULT_EVENTS
    clients: int = DEFAULT_CLIENTS
    max_batch: int = DEFAULT_MAX_BATCH
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    seed: int | None = None

    def check(self) -> None:
        """Raise BenchError unless every value is inside its bound."""
        if not 1 <= self.events <= MAX_EVENTS:
            raise BenchError(f"--events {self.events} is outside 1..{MAX_EVENTS}")
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise BenchError(f"--clients {self.clients} is outside 1..{MAX_CLIENTS}")
        if not 2 <= self.max_batch <= MAX_BATCH_SIZE:
            raise BenchError(f"--max-batch {self.max_batch} is outside 2..{MAX_BATCH_SIZE}")
        if not 0 < self.deadline_seconds <= MAX_DEADLINE_SECONDS:
            raise BenchError(
                f"--deadline {self.deadline_seconds:g} is outside 0..{MAX_DEADLINE_SECONDS} seconds"
            )


@dataclass(frozen=True)
class Target:
    """The deployed stack: its API base URL, a token with both scopes, and its bucket."""

    base_url: str
    token: str = field(repr=False)
    bucket: str
    s3: Any = field(repr=False)


def discover_target(stack_name: str, *, token_ttl_seconds: int) -> Target:
    """Find the stack's API, bucket and signing secret, and mint a token for the run."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint:
        require_loopback(endpoint, "AWS_ENDPOINT_URL")

    try:
        described = boto3.client("cloudformation").describe_stacks(StackName=stack_name)
    except (BotoCoreError, ClientError) as error:
        raise BenchError(f"describing stack {stack_name!r} failed: {error}") from error
    stack = described["Stacks"][0]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}

    if os.environ.get("CALLFLOW_API_URL"):
        base_url = os.environ["CALLFLOW_API_URL"].rstrip("/")
    elif endpoint:
        base_url = (
            f"{endpoint.rstrip('/')}/_aws/execute-api/{outputs['ApiId']}/{outputs['StageName']}"
        )
    else:
        base_url = outputs["ApiBaseUrl"].rstrip("/")
    if endpoint:
        require_loopback(base_url, "the API base URL")

    token = os.environ.get("CALLFLOW_TOKEN") or _mint_stack_token(outputs, token_ttl_seconds)
    return Target(
        base_url=base_url,
        token=token,
        bucket=outputs["EventsBucketName"],
        s3=boto3.client("s3"),
    )


def _mint_stack_token(outputs: dict[str, str], ttl_seconds: int) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from tools.mint_token import mint_token

    try:
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=outputs["JwtSecretArn"])
    except (BotoCoreError, ClientError) as error:
        raise BenchError(
            f"reading the signing secret failed ({error}); set CALLFLOW_TOKEN to a token "
            "with the scopes events:read and events:write instead"
        ) from error
    return mint_token(
        secret=secret["SecretString"],
        scopes=list(SCOPES),
        subject=TOKEN_SUBJECT,
        ttl=ttl_seconds,
        issuer=DEFAULT_JWT_ISSUER,
        audience=DEFAULT_JWT_AUDIENCE,
    )


def require_loopback(url: str, name: str) -> None:
    """Raise BenchError unless `url` is on 127.0.0.1: the run may reach only a local emulator."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname != "127.0.0.1":
        raise BenchError(
            f"{name} {url!r} is not on 127.0.0.1; against an emulator only loopback is used"
        )


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Submission:
    """One event as one request carries it: an original, an identical re-send, or a changed one."""

    number: int
    event_id: str
    kind: str
    body: dict[str, Any] = field(repr=False)
    canonical: bytes = field(repr=False)


@dataclass(frozen=True)
class PostRequest:
    """One POST /events: a single event (batch False) or a JSON array."""

    submissions: tuple[Submission, ...]
    batch: bool

    def payload(self) -> Any:
        if self.batch:
            return [submission.body for submission in self.submissions]
        return self.submissions[0].body


def make_event(run_id: str, number: int, base_time: datetime) -> dict[str, Any]:
    moment = base_time + timedelta(milliseconds=10 * number)
    return {
        "eventId": f"bench-{run_id}-{number:05d}",
        "eventType": EVENT_TYPES[number % len(EVENT_TYPES)],
        "callId": f"bench-{run_id}-call-{number // EVENTS_PER_CALL:04d}",
        "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "source": "concurrency-bench",
        "payload": {"sequence": number, "run": run_id},
    }


def canonical_bytes(body: dict[str, Any]) -> bytes:
    """Return the bytes the service stores for `body`, by its own canonical form."""
    return parse_event(body, max_event_bytes=DEFAULT_MAX_EVENT_BYTES).to_json_bytes()


def plan_requests(config: BenchConfig, run_id: str, rng: random.Random) -> list[PostRequest]:
    """Build every submission and group them into shuffled single posts and batches."""
    base_time = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    originals = []
    for number in range(config.events):
        body = make_event(run_id, number, base_time)
        canonical = canonical_bytes(body)
        originals.append(Submission(number, body["eventId"], "original", body, canonical))

    numbers = list(range(config.events))
    rng.shuffle(numbers)
    identical_count = round(config.events * IDENTICAL_RESEND_SHARE)
    changed_count = round(config.events * CHANGED_RESEND_SHARE)
    resends: list[Submission] = []
    for number in numbers[:identical_count]:
        # Reversed key order: the same content, so the same canonical bytes.
        body = dict(reversed(list(originals[number].body.items())))
        canonical = originals[number].canonical
        resends.append(Submission(number, body["eventId"], "identical", body, canonical))
    for number in numbers[identical_count : identical_count + changed_count]:
        payload = {**originals[number].body["payload"], "changed": True}
        body = {**originals[number].body, "payload": payload}
        resends.append(Submission(number, body["eventId"], "changed", body, canonical_bytes(body)))

    rng.shuffle(resends)
    racing_count = round(len(resends) * RACING_RESEND_SHARE)
    racing, scattered = resends[:racing_count], resends[racing_count:]

    pool = originals + scattered
    rng.shuffle(pool)
    requests_: list[PostRequest] = []
    position = 0
    while position < len(pool):
        if rng.random() < SINGLE_POST_SHARE:
            size = 1
        else:
            size = rng.randint(2, config.max_batch)
        # The API rejects a batch that repeats an eventId, so a chunk ends
        # before a second submission of an event it already carries.
        chunk: list[Submission] = []
        while position < len(pool) and len(chunk) < size:
            if any(item.number == pool[position].number for item in chunk):
                break
            chunk.append(pool[position])
            position += 1
        requests_.append(PostRequest(tuple(chunk), batch=size > 1))
    rng.shuffle(requests_)

    # A racing re-send goes right after the request that carries its original,
    # so two clients take them from the queue at about the same moment.
    carrier = {
        submission.number: index
        for index, request in enumerate(requests_)
        for submission in request.submissions
        if submission.kind == "original"
    }
    after: dict[int, list[PostRequest]] = {}
    for submission in racing:
        single = PostRequest((submission,), batch=False)
        after.setdefault(carrier[submission.number], []).append(single)
    ordered: list[PostRequest] = []
    for index, request in enumerate(requests_):
        ordered.append(request)
        ordered.extend(after.get(index, []))
    return ordered


# ---------------------------------------------------------------- posting


@dataclass
class ClientStats:
    """Counts and responses of one client thread, merged after the run."""

    requests: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    # (submission, status) for every response, retries included.
    answers: list[tuple[Submission, str]] = field(default_factory=list)
    # The status of each submission in its request's last response.
    final: list[tuple[Submission, str]] = field(default_factory=list)
    unsent: int = 0


def make_session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def post_all(
    plan: Sequence[PostRequest], target: Target, clients: int, deadline: float
) -> list[ClientStats]:
    """Post the plan from `clients` threads, each with its own requests.Session."""
    work: queue.Queue[PostRequest] = queue.Queue()
    for request in plan:
        work.put(request)

    def client() -> ClientStats:
        stats = ClientStats()
        rng = random.Random()
        with make_session(target.token) as session:
            while True:
                try:
                    request = work.get_nowait()
                except queue.Empty:
                    return stats
                if time.monotonic() >= deadline:
                    stats.unsent += len(request.submissions)
                    continue
                post_one(session, target.base_url, request, stats, rng, deadline)

    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="bench-client") as pool:
        return list(pool.map(lambda _: client(), range(clients)))


def post_one(
    session: requests.Session,
    base_url: str,
    request: PostRequest,
    stats: ClientStats,
    rng: random.Random,
    deadline: float,
) -> None:
    """Post one request, retrying 429, 5xx and transport errors; record every response."""
    data = json.dumps(request.payload()).encode("utf-8")
    statuses = [ERROR] * len(request.submissions)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        started = time.perf_counter()
        retry_after = 1.0
        try:
            response = session.post(
                f"{base_url}/events",
                data=data,
                headers={"Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except requests.RequestException:
            stats.requests += 1
            stats.errors += 1
            statuses = [ERROR] * len(request.submissions)
        else:
            stats.requests += 1
            stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            stats.statuses[response.status_code] += 1
            statuses = read_statuses(request, response)
            for submission, status in zip(request.submissions, statuses):
                stats.answers.append((submission, status))
            if response.status_code not in RETRIED_STATUSES:
                if ERROR in statuses:
                    stats.errors += 1
                break
            stats.errors += 1
            retry_after = _retry_after_seconds(response)

        if attempt == MAX_ATTEMPTS or time.monotonic() >= deadline:
            break
        time.sleep(min(retry_after, MAX_RETRY_DELAY_SECONDS) * (0.5 + rng.random()))

    stats.final.extend(zip(request.submissions, statuses))


def read_statuses(request: PostRequest, response: requests.Response) -> list[str]:
    """Return one status per submission: stored, duplicate, conflict, failed or error."""
    try:
        body = response.json()
    except ValueError:
        return [ERROR] * len(request.submissions)

    if request.batch:
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(request.submissions):
            status = FAILED if response.status_code in RETRIED_STATUSES else ERROR
            return [status] * len(request.submissions)
        return [str(result.get("status", ERROR)) for result in results]

    if response.status_code in (200, 201) and body.get("status") in ACCEPTED:
        return [body["status"]]
    if response.status_code == 409 and body.get("code") == "EVENT_CONFLICT":
        return [CONFLICT]
    if response.status_code in RETRIED_STATUSES:
        return [FAILED]
    return [ERROR]


def _retry_after_seconds(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


# ---------------------------------------------------------------- reading back


@dataclass(frozen=True)
class StoredEvent:
    """The API's and S3's copies of one eventId."""

    event_id: str
    api_status: int
    api_bytes: bytes | None
    s3_versions: int
    s3_bytes: bytes | None


def read_back(
    event_ids: Sequence[str], target: Target, clients: int, deadline: float
) -> tuple[list[StoredEvent], int, int, int]:
    """Read every event through the API and from S3; return them, requests, errors, unchecked."""
    from botocore.exceptions import BotoCoreError, ClientError

    local = threading.local()
    counters = Counter[str]()
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            counters[name] += 1

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = make_session(target.token)
        return local.session

    def read_one(event_id: str) -> StoredEvent | None:
        if time.monotonic() >= deadline:
            return None
        api_status, api_bytes = get_event(session(), target.base_url, event_id, count, deadline)
        try:
            versions, s3_bytes = read_object(target, event_id)
        except (BotoCoreError, ClientError):
            # botocore has already retried; the event counts as unchecked.
            count("errors")
            return None
        return StoredEvent(event_id, api_status, api_bytes, versions, s3_bytes)

    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="bench-reader") as pool:
        results = list(pool.map(read_one, event_ids))
    stored = [result for result in results if result is not None]
    return stored, counters["requests"], counters["errors"], len(results) - len(stored)


def get_event(
    session: requests.Session,
    base_url: str,
    event_id: str,
    count: Callable[[str], None],
    deadline: float,
) -> tuple[int, bytes | None]:
    """GET /events/{eventId}, retrying 429, 5xx and transport errors; return status and body."""
    status = 0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        count("requests")
        try:
            response = session.get(f"{base_url}/events/{event_id}", timeout=REQUEST_TIMEOUT_SECONDS)
        except requests.RequestException:
            count("errors")
        else:
            status = response.status_code
            if status == 200:
                return status, response.content
            if status == 404:
                return status, None
            count("errors")
            if status not in RETRIED_STATUSES:
                return status, None
        if attempt == MAX_ATTEMPTS or time.monotonic() >= deadline:
            break
        time.sleep(min(2**attempt * 0.1, MAX_RETRY_DELAY_SECONDS))
    return status, None


def read_object(target: Target, event_id: str) -> tuple[int, bytes | None]:
    """Return how many versions of the event's object S3 holds, and the current bytes."""
    key = event_key(event_id)
    listing = target.s3.list_object_versions(Bucket=target.bucket, Prefix=key)
    versions = sum(1 for version in listing.get("Versions", []) if version["Key"] == key)
    if versions == 0:
        return 0, None
    body = target.s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()
    return versions, body


# ---------------------------------------------------------------- checks and report


@dataclass
class BenchReport:
    """The figures of one run; `passed` is False when anything was lost, doubled or wrong."""

    run_id: str
    events: int
    clients: int
    sent: int
    stored: int
    duplicates: int
    conflicts: int
    lost: int
    doubled: int
    mismatched: int
    wrong_statuses: int
    conflict_errors: int
    resends_first: int
    unacknowledged: int
    unsent: int
    unchecked: int
    requests: int
    errors: int
    elapsed_seconds: float
    post_p50_ms: float
    post_p99_ms: float
    http_statuses: dict[str, int]
    expected_conflicts: int
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not (
            self.lost
            or self.doubled
            or self.mismatched
            or self.wrong_statuses
            or self.conflict_errors
            or self.unsent
            or self.unchecked
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def check_run(
    plan: Sequence[PostRequest], stats: Sequence[ClientStats], stored: Sequence[StoredEvent]
) -> dict[str, Any]:
    """Compare the statuses the API returned with what it stored; return counts and problems."""
    answers: dict[str, list[tuple[Submission, str]]] = {}
    final: dict[str, list[tuple[Submission, str]]] = {}
    for client in stats:
        for submission, status in client.answers:
            answers.setdefault(submission.event_id, []).append((submission, status))
        for submission, status in client.final:
            final.setdefault(submission.event_id, []).append((submission, status))
    changed_ids = {
        submission.event_id
        for request in plan
        for submission in request.submissions
        if submission.kind == "changed"
    }

    problems: list[str] = []
    counts = Counter[str]()
    for event in stored:
        event_answers = answers.get(event.event_id, [])
        finals = final.get(event.event_id, [])
        statuses = [status for _, status in finals]
        counts["duplicates"] += statuses.count(DUPLICATE)
        counts["conflicts"] += statuses.count(CONFLICT)
        if not any(status in ACCEPTED for _, status in event_answers):
            counts["unacknowledged"] += 1

        if event.s3_versions == 0 or event.api_bytes is None:
            counts["lost"] += 1
            problems.append(
                f"lost {event.event_id}: API {event.api_status}, {event.s3_versions} S3 versions"
            )
            continue
        counts["stored"] += 1

        stored_answers = sum(1 for _, status in event_answers if status == STORED)
        if any(
            status == STORED and submission.kind != "original"
            for submission, status in event_answers
        ):
            counts["resends_first"] += 1
        if event.s3_versions > 1 or stored_answers > 1:
            counts["doubled"] += 1
            problems.append(
                f"doubled {event.event_id}: {event.s3_versions} S3 versions, "
                f"reported stored {stored_answers} times"
            )

        accepted = {
            submission.canonical for submission, status in event_answers if status in ACCEPTED
        }
        if event.api_bytes != event.s3_bytes or (accepted and accepted != {event.s3_bytes}):
            counts["mismatched"] += 1
            problems.append(
                f"mismatched {event.event_id}: stored bytes differ from the accepted content"
            )

        for submission, status in event_answers:
            wrong_duplicate = status in ACCEPTED and submission.canonical != event.s3_bytes
            wrong_conflict = status == CONFLICT and submission.canonical == event.s3_bytes
            if wrong_duplicate or wrong_conflict:
                counts["wrong_statuses"] += 1
                problems.append(f"wrong status {event.event_id}: {submission.kind} got {status}")

        expected = 1 if event.event_id in changed_ids else 0
        if statuses.count(CONFLICT) != expected:
            counts["conflict_errors"] += 1
            got = statuses.count(CONFLICT)
            problems.append(f"conflicts {event.event_id}: {got} got 409, expected {expected}")

    return {"counts": counts, "problems": problems, "expected_conflicts": len(changed_ids)}


def run_benchmark(config: BenchConfig, target: Target) -> BenchReport:
    """Post, read back and check one run; bounded by config.deadline_seconds."""
    config.check()
    run_id = uuid.uuid4().hex[:10]
    rng = random.Random(config.seed)
    plan = plan_requests(config, run_id, rng)

    started = time.monotonic()
    deadline = started + config.deadline_seconds
    stats = post_all(plan, target, config.clients, deadline)

    event_ids = [f"bench-{run_id}-{number:05d}" for number in range(config.events)]
    stored, read_requests, read_errors, unchecked = read_back(
        event_ids, target, config.clients, deadline
    )
    elapsed = time.monotonic() - started

    checked = check_run(plan, stats, stored)
    counts = checked["counts"]
    latencies = sorted(latency for client in stats for latency in client.latencies_ms)
    statuses = Counter[int]()
    for client in stats:
        statuses.update(client.statuses)

    return BenchReport(
        run_id=run_id,
        events=config.events,
        clients=config.clients,
        sent=sum(len(request.submissions) for request in plan),
        stored=counts["stored"],
        duplicates=counts["duplicates"],
        conflicts=counts["conflicts"],
        lost=counts["lost"],
        doubled=counts["doubled"],
        mismatched=counts["mismatched"],
        wrong_statuses=counts["wrong_statuses"],
        conflict_errors=counts["conflict_errors"],
        resends_first=counts["resends_first"],
        unacknowledged=counts["unacknowledged"],
        unsent=sum(client.unsent for client in stats),
        unchecked=unchecked,
        requests=sum(client.requests for client in stats) + read_requests,
        errors=sum(client.errors for client in stats) + read_errors,
        elapsed_seconds=round(elapsed, 2),
        post_p50_ms=round(_percentile(latencies, 0.50), 1),
        post_p99_ms=round(_percentile(latencies, 0.99), 1),
        http_statuses={str(code): statuses[code] for code in sorted(statuses)},
        expected_conflicts=checked["expected_conflicts"],
        problems=checked["problems"][:PROBLEMS_SHOWN],
    )


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


ROWS = (
    ("events", "distinct eventIds in the run"),
    ("sent", "event submissions posted: originals and re-sends"),
    ("stored", "eventIds read back through the API and found in S3"),
    ("duplicates", "submissions reported duplicate"),
    ("conflicts", "submissions rejected with 409 EVENT_CONFLICT"),
    ("expected_conflicts", "eventIds re-sent with changed content"),
    ("lost", "eventIds with no stored object"),
    ("doubled", "eventIds stored more than once"),
    ("mismatched", "eventIds whose stored bytes differ from the accepted content"),
    ("wrong_statuses", "statuses that contradict the stored content"),
    ("conflict_errors", "eventIds without exactly the expected 409s"),
    ("resends_first", "eventIds whose re-send was stored before the original"),
    ("unacknowledged", "eventIds that no response reported stored or duplicate"),
    ("unsent", "submissions not posted before the deadline"),
    ("unchecked", "eventIds not read back: deadline passed or S3 read failed"),
    ("requests", "HTTP requests: POST attempts and GETs"),
    ("errors", "requests that failed: transport errors, 429, 5xx, unexpected responses"),
    ("elapsed_seconds", "wall-clock time of posting and reading back"),
    ("post_p50_ms", "median POST latency"),
    ("post_p99_ms", "99th percentile POST latency"),
)


def format_table(report: BenchReport) -> str:
    """Return the figures as an aligned text table."""
    values = report.to_dict()
    lines = [f"run {report.run_id}: {report.clients} clients"]
    for name, description in ROWS:
        lines.append(f"  {name:<19} {values[name]:>10}  {description}")
    lines.append(f"  {'http_statuses':<19} {json.dumps(report.http_statuses)}")
    for problem in report.problems:
        lines.append(f"  problem: {problem}")
    lines.append("PASSED" if report.passed else "FAILED")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concurrency.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack-name", default=os.environ.get("AWS_SAM_STACK_NAME", ""),
                        help="deployed stack to test (default: $AWS_SAM_STACK_NAME)")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS,
                        help=f"distinct events to post, at most {MAX_EVENTS} "
                        f"(default {DEFAULT_EVENTS})")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS,
                        help=f"concurrent clients, at most {MAX_CLIENTS} "
                        f"(default {DEFAULT_CLIENTS})")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help=f"largest batch, 2 to {MAX_BATCH_SIZE} events "
                        f"(default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_SECONDS,
                        help="seconds after which no new request starts; events not posted or "
                        f"not read back by then fail the run (default {DEFAULT_DEADLINE_SECONDS})")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the shuffles, to repeat a plan (default: random)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = BenchConfig(
        events=args.events,
        clients=args.clients,
        max_batch=args.max_batch,
        deadline_seconds=args.deadline,
        seed=args.seed,
    )
    try:
        config.check()
        if not args.stack_name:
            raise BenchError("no stack named: pass --stack-name or set AWS_SAM_STACK_NAME")
        token_ttl = int(config.deadline_seconds) + TOKEN_TTL_MARGIN_SECONDS
        target = discover_target(args.stack_name, token_ttl_seconds=token_ttl)
        report = run_benchmark(config, target)
    except BenchError as error:
        print(f"concurrency.py: error: {error}", file=sys.stderr)
        return 2

    print(json.dumps(report.to_dict(), indent=2) if args.json else format_table(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
