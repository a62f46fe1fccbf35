"""The storer under S3 faults, through its lambda_handler and a real boto3 client.

The S3 endpoint is a fault-injecting HTTP server on 127.0.0.1 that this module
starts in a thread. AWS_ENDPOINT_URL_S3 points the storer's own client, built by
make_s3_client with the store's botocore Config, at it. Each test gives the
server a rule that decides per request whether to throttle it, fail it, stall
it past the read timeout, or pass it on to moto. A request that gets through
is stored with real S3 semantics (conditional puts, versioning).

Every case also measures the handler's response time against the storer's
Timeout in template.yaml. Past it, Lambda stops the function, and API Gateway
returns a 5XX without Retry-After instead of the storer's 503.
"""

from __future__ import annotations

import copy
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from callflow.keys import event_key
from callflow.settings import get_settings
from callflow.store import S3_READ_TIMEOUT_SECONDS, S3_TOTAL_MAX_ATTEMPTS, make_s3_client
from tests.support import load_fixture, load_handler
from tests.template_support import load_template

BUCKET = "callflow-faults"
REGION = "us-east-1"
# moto intercepts requests to this endpoint; the storer's client goes to 127.0.0.1.
MOTO_ENDPOINT = f"https://s3.{REGION}.amazonaws.com"
CONTEXT = SimpleNamespace(function_name="callflow-storer-faults", aws_request_id="lambda-request-1")

STORER_TIMEOUT_SECONDS = float(load_template()["Parameters"]["StorerTimeout"]["Default"])
# A stalled request is held this long unless the test ends first; botocore gives
# up on it after S3_READ_TIMEOUT_SECONDS.
STALL_SECONDS = 4 * S3_READ_TIMEOUT_SECONDS
BATCH_SIZE = 6
FAILING_INDEXES = (1, 4)
# The event object and its two index entries are written concurrently.
PUTS_PER_EVENT = 3


# ---------------------------------------------------------------- fault-injecting S3


@dataclass(frozen=True)
class S3Request:
    """One HTTP request the fault server received."""

    method: str
    key: str
    attempt: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Fault:
    """The server's action for one request, chosen by `kind`.

    - "pass": respond through moto.
    - "error": respond with `status` and an S3 error document of `code`.
    - "stall": hold the request past the read timeout, then close the connection.
    - "pass-then-drop": store through moto, then close the connection without a
      response, so the write happened but its response was lost.
    """

    kind: str
    status: int = 0
    code: str = ""


PASS = Fault("pass")
THROTTLE = Fault("error", 503, "SlowDown")
INTERNAL_ERROR = Fault("error", 500, "InternalError")
STALL = Fault("stall")
PASS_THEN_DROP = Fault("pass-then-drop")

Rule = Callable[[S3Request], Fault]


class FaultInjectingS3:
    """An S3 endpoint on 127.0.0.1 that applies `rule` to every request."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.rule: Rule = lambda request: PASS
        self.requests: list[S3Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def requests_for(self, key: str) -> list[S3Request]:
        with self._lock:
            return [request for request in self.requests if request.key == key]

    def _record(self, request: S3Request) -> Fault:
        with self._lock:
            self.requests.append(request)
        return self.rule(request)

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.1 keeps botocore's pooled connections open and sends the
            # 100 Continue that botocore's Expect header waits for.
            protocol_version = "HTTP/1.1"

            def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve()

            def do_GET(self) -> None:  # noqa: N802
                self._serve()

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                bucket, _, key = unquote(path).lstrip("/").partition("/")
                attempt = sdk_attempt(self.headers.get("amz-sdk-request", ""))
                request = S3Request(self.command, key, attempt, dict(self.headers), body)
                fault = endpoint._record(request)

                if fault.kind == "stall":
                    endpoint._stopping.wait(STALL_SECONDS)
                    self.close_connection = True
                    return
                if fault.kind == "error":
                    self._send_error(fault.status, fault.code)
                    return

                status, headers, payload = forward_to_moto(endpoint.backend, bucket, request)
                if fault.kind == "pass-then-drop":
                    self.close_connection = True
                    return
                self._send(status, headers, payload)

            def _send_error(self, status: int, code: str) -> None:
                document = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    f"<Error><Code>{code}</Code><Message>Injected {code}</Message>"
                    "<RequestId>fault-injection</RequestId></Error>"
                ).encode()
                self._send(status, {"Content-Type": "application/xml"}, document)

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

        return Handler


def sdk_attempt(header: str) -> int:
    """Return the attempt number from botocore's amz-sdk-request header.

    The header reads "attempt=1; max=3" first and "ttl=...; attempt=2; max=3" on retries.
    """
    for field in header.split(";"):
        name, _, value = field.strip().partition("=")
        if name == "attempt":
            return int(value)
    return 1


def forward_to_moto(
    backend: Any, bucket: str, request: S3Request
) -> tuple[int, dict[str, str], bytes]:
    """Run the request as the matching S3 call on moto; return status, headers and body."""
    try:
        if request.method == "PUT":
            arguments: dict[str, Any] = {"Bucket": bucket, "Key": request.key, "Body": request.body}
            if "If-None-Match" in request.headers:
                arguments["IfNoneMatch"] = request.headers["If-None-Match"]
            if "Content-Type" in request.headers:
                arguments["ContentType"] = request.headers["Content-Type"]
            metadata = {
                name.removeprefix("x-amz-meta-"): value
                for name, value in request.headers.items()
                if name.lower().startswith("x-amz-meta-")
            }
            if metadata:
                arguments["Metadata"] = metadata
            response = backend.put_object(**arguments)
            return 200, {"ETag": response["ETag"]}, b""
        if request.method == "GET":
            response = backend.get_object(Bucket=bucket, Key=request.key)
            headers = {"ETag": response["ETag"], "Content-Type": response["ContentType"]}
            return 200, headers, response["Body"].read()
        response = backend.head_object(Bucket=bucket, Key=request.key)
        return 200, {"ETag": response["ETag"]}, b""
    except ClientError as error:
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        code = error.response["Error"]["Code"]
        document = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            "<Message>moto</Message></Error>"
        ).encode()
        return status, {"Content-Type": "application/xml"}, document


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A versioned moto bucket, so an overwritten object would show as a second version."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION, endpoint_url=MOTO_ENDPOINT)
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def fault_server(backend: Any) -> Iterator[FaultInjectingS3]:
    server = FaultInjectingS3(backend)
    server.start()
    yield server
    server.stop()


def load_storer(monkeypatch: pytest.MonkeyPatch, endpoint_url: str) -> ModuleType:
    """Load the storer with its S3 client pointed at `endpoint_url`."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint_url)
    monkeypatch.setenv("EVENTS_BUCKET", BUCKET)
    get_settings.cache_clear()
    make_s3_client.cache_clear()
    return load_handler("storer")


@pytest.fixture
def storer(
    monkeypatch: pytest.MonkeyPatch, fault_server: FaultInjectingS3
) -> Iterator[ModuleType]:
    yield load_storer(monkeypatch, fault_server.url)
    get_settings.cache_clear()
    make_s3_client.cache_clear()


@dataclass(frozen=True)
class StorerResponse:
    """The storer's response and how long the handler took to return it."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    seconds: float


def make_event(number: int, **overrides: Any) -> dict[str, Any]:
    event = {
        "eventId": f"evt-fault-{number:03d}",
        "eventType": "SIP_INVITE",
        "callId": "call-fault-1",
        "timestamp": f"2026-03-02T14:05:{number % 60:02d}.118Z",
        "source": "sip-proxy",
        "payload": {"cseq": f"{number} INVITE"},
    }
    event.update(overrides)
    return event


def post(storer: ModuleType, body: Any) -> StorerResponse:
    request = copy.deepcopy(load_fixture("post-event.json"))
    request["body"] = json.dumps(body)
    started = time.perf_counter()
    proxy_response = storer.lambda_handler(request, CONTEXT)
    seconds = time.perf_counter() - started
    headers = {
        name: values[-1] for name, values in proxy_response.get("multiValueHeaders", {}).items()
    }
    headers.update(proxy_response.get("headers") or {})
    body = json.loads(proxy_response["body"])
    return StorerResponse(proxy_response["statusCode"], headers, body, seconds)


def versions(backend: Any, key: str) -> int:
    """Return how many versions of `key` the moto bucket holds."""
    response = backend.list_object_versions(Bucket=BUCKET, Prefix=key)
    return sum(1 for version in response.get("Versions", []) if version["Key"] == key)


def index_keys(backend: Any, event_id: str) -> list[str]:
    response = backend.list_objects_v2(Bucket=BUCKET, Prefix="index/")
    keys = [item["Key"] for item in response.get("Contents", [])]
    return [key for key in keys if key.endswith(f"!{event_id}")]


def all_keys(backend: Any) -> list[str]:
    response = backend.list_objects_v2(Bucket=BUCKET)
    return [item["Key"] for item in response.get("Contents", [])]


def closed_port() -> int:
    """Return a loopback port with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_unavailable(response: StorerResponse) -> None:
    assert response.status == 503
    assert response.body["code"] == "STORAGE_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) > 0


# ---------------------------------------------------------------- (a) throttling


def test_throttled_put_is_retried_by_botocore(storer, fault_server):
    fault_server.rule = lambda request: THROTTLE

    post(storer, make_event(1))

    attempts = fault_server.requests_for(event_key("evt-fault-001"))
    assert len(attempts) == S3_TOTAL_MAX_ATTEMPTS
    assert [request.attempt for request in attempts] == list(range(1, S3_TOTAL_MAX_ATTEMPTS + 1))
    assert len(fault_server.requests) == PUTS_PER_EVENT * S3_TOTAL_MAX_ATTEMPTS


def test_throttled_event_returns_503_with_retry_after(storer, fault_server, backend):
    fault_server.rule = lambda request: THROTTLE

    response = post(storer, make_event(1))

    assert_unavailable(response)
    assert "status" not in response.body
    assert all_keys(backend) == []
    assert response.seconds < STORER_TIMEOUT_SECONDS


def test_throttled_batch_reports_no_event_stored(storer, fault_server, backend):
    fault_server.rule = lambda request: THROTTLE

    response = post(storer, [make_event(number) for number in range(BATCH_SIZE)])

    assert_unavailable(response)
    assert response.body["summary"]["stored"] == 0
    assert response.body["summary"]["failed"] == BATCH_SIZE
    assert {result["status"] for result in response.body["results"]} == {"failed"}
    assert all_keys(backend) == []
    assert response.seconds < STORER_TIMEOUT_SECONDS


# ---------------------------------------------------------------- (b) one throttled attempt


def test_event_throttled_once_is_stored_once(storer, fault_server, backend):
    key = event_key("evt-fault-001")
    fault_server.rule = (
        lambda request: THROTTLE if request.attempt == 1 and request.key == key else PASS
    )

    response = post(storer, make_event(1))

    assert response.status == 201
    assert response.body["status"] == "stored"
    assert len(fault_server.requests_for(key)) == 2
    assert versions(backend, key) == 1
    assert len(index_keys(backend, "evt-fault-001")) == 2
    assert response.seconds < STORER_TIMEOUT_SECONDS


def test_write_with_lost_response_is_stored_once(storer, fault_server, backend):
    # S3 stores the object but the response never arrives; botocore retries,
    # the conditional put then fails with 412, and the store reads the object back.
    key = event_key("evt-fault-001")
    fault_server.rule = (
        lambda request: PASS_THEN_DROP if request.attempt == 1 and request.key == key else PASS
    )

    response = post(storer, make_event(1))

    assert response.status in (200, 201)
    assert response.body["status"] in ("stored", "duplicate")
    assert versions(backend, key) == 1
    assert len(index_keys(backend, "evt-fault-001")) == 2
    assert response.seconds < STORER_TIMEOUT_SECONDS


# ---------------------------------------------------------------- (c) read timeout


def test_stalled_s3_returns_503_within_budget(storer, fault_server, backend):
    fault_server.rule = lambda request: STALL

    response = post(storer, make_event(1))

    assert_unavailable(response)
    assert len(fault_server.requests) == PUTS_PER_EVENT * S3_TOTAL_MAX_ATTEMPTS
    assert all_keys(backend) == []
    assert response.seconds >= S3_TOTAL_MAX_ATTEMPTS * S3_READ_TIMEOUT_SECONDS
    assert response.seconds < STORER_TIMEOUT_SECONDS


def test_retry_during_slow_s3_returns_within_budget(storer, fault_server, backend):
    # A client re-sends a stored event while every S3 call times out twice and
    # succeeds on its last attempt. Each step alone stays inside the budget;
    # the steps together do not.
    event = make_event(1)
    assert post(storer, event).status == 201
    fault_server.rule = lambda request: STALL if request.attempt < S3_TOTAL_MAX_ATTEMPTS else PASS

    response = post(storer, event)

    assert response.seconds < STORER_TIMEOUT_SECONDS
    assert response.status in (200, 503)
    if response.status == 503:
        assert response.headers["Retry-After"].isdigit()


# ---------------------------------------------------------------- (d) unreachable


def test_unreachable_s3_returns_503_within_budget(monkeypatch, backend):
    storer = load_storer(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    try:
        response = post(storer, make_event(1))
    finally:
        get_settings.cache_clear()
        make_s3_client.cache_clear()

    assert_unavailable(response)
    assert all_keys(backend) == []
    assert response.seconds < STORER_TIMEOUT_SECONDS


# ---------------------------------------------------------------- (e) partial batch failure


def failing_event_writes(event_ids: set[str]) -> Rule:
    keys = {event_key(event_id) for event_id in event_ids}
    return lambda request: (
        INTERNAL_ERROR if request.method == "PUT" and request.key in keys else PASS
    )


def test_partly_failed_batch_reports_failed_events(storer, fault_server, backend):
    batch = [make_event(number) for number in range(BATCH_SIZE)]
    failing = {batch[index]["eventId"] for index in FAILING_INDEXES}
    fault_server.rule = failing_event_writes(failing)

    response = post(storer, batch)

    assert_unavailable(response)
    statuses = [result["status"] for result in response.body["results"]]
    expected = ["failed" if index in FAILING_INDEXES else "stored" for index in range(BATCH_SIZE)]
    assert statuses == expected
    assert response.body["summary"]["failed"] == len(FAILING_INDEXES)
    failed = [result for result in response.body["results"] if result["status"] == "failed"]
    assert {result["code"] for result in failed} == {"STORAGE_UNAVAILABLE"}
    assert response.seconds < STORER_TIMEOUT_SECONDS


def test_retry_of_partly_failed_batch_completes(storer, fault_server, backend):
    batch = [make_event(number) for number in range(BATCH_SIZE)]
    failing = {batch[index]["eventId"] for index in FAILING_INDEXES}
    fault_server.rule = failing_event_writes(failing)
    post(storer, batch)

    fault_server.rule = lambda request: PASS
    response = post(storer, batch)

    assert response.status == 201
    statuses = [result["status"] for result in response.body["results"]]
    expected = [
        "stored" if index in FAILING_INDEXES else "duplicate" for index in range(BATCH_SIZE)
    ]
    assert statuses == expected
    for event in batch:
        assert versions(backend, event_key(event["eventId"])) == 1
        assert len(index_keys(backend, event["eventId"])) == 2
    assert response.seconds < STORER_TIMEOUT_SECONDS


def test_failed_index_write_is_repaired_by_retry(storer, fault_server, backend):
    # The event object is written but its call index entry is not: the event is
    # reported failed, and the retry finds it stored and writes the entry.
    def fail_call_index_of_event_2(request: S3Request) -> Fault:
        failing = request.key.startswith("index/calls/") and request.key.endswith("!evt-fault-002")
        return INTERNAL_ERROR if failing else PASS

    fault_server.rule = fail_call_index_of_event_2
    batch = [make_event(number) for number in range(BATCH_SIZE)]

    first = post(storer, batch)
    fault_server.rule = lambda request: PASS
    second = post(storer, batch)

    assert first.status == 503
    assert first.body["results"][2]["status"] == "failed"
    assert second.status == 200
    assert second.body["results"][2]["status"] == "duplicate"
    assert versions(backend, event_key("evt-fault-002")) == 1
    assert len(index_keys(backend, "evt-fault-002")) == 2
