"""The saved Logs Insights queries of template.yaml, run over lines in the formats AWS writes.

The local emulator cannot produce the lines two of the queries read: its
REPORT lines never carry "Init Duration", and it does not write the API access
log. These tests build such lines, in the format Lambda writes and from the
template's own AccessLogSetting, and run the saved queries over them with
tools/insights.py. tests/integration/test_zz_emulator_only.py runs the other
three queries over the lines the functions wrote in the emulator.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from typing import Any

import pytest

from tests.template_support import load_template
from tools.insights import LogEvent, parse_query, run_query

SAVED_QUERIES = (
    "ErrorsQuery",
    "ColdStartsQuery",
    "LatencyByEndpointQuery",
    "AuthFailuresQuery",
    "EventProcessingQuery",
)
ACCOUNT_ID = "123456789012"
# @log as AWS shows it: account id and log group name.
AUTHORIZER_LOG = f"{ACCOUNT_ID}:/aws/lambda/callflow-authorizer-prod"
STORER_LOG = f"{ACCOUNT_ID}:/aws/lambda/callflow-event-storer-prod"
ACCESS_LOG = f"{ACCOUNT_ID}:/aws/apigateway/callflow-api-prod"

# 2026-03-02 23:47:00 UTC, in the 15-minute bin that starts at 23:45.
FIRST_INVOCATION_MS = 1772495220000
MINUTE_MS = 60_000

CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]*[A-Za-z0-9_])")
# A value for every $context variable of the access log format, as API
# Gateway renders them for a POST /events that the storer processed. API
# Gateway writes "-" for a variable without a value.
ACCESS_LOG_VALUES: dict[str, str | int] = {
    "requestId": "c6af9ac6-7b61-41e6-9a41-93e8deadbeef",
    "extendedRequestId": "KJ3rXHq0IAMF7mQ=",
    "identity.sourceIp": "203.0.113.24",
    "requestTime": "02/Mar/2026:23:58:10 +0000",
    "requestTimeEpoch": 1772495890123,
    "httpMethod": "POST",
    "resourcePath": "/events",
    "status": 201,
    "protocol": "HTTP/1.1",
    "responseLength": "312",
    "responseLatency": 57,
    "integrationLatency": "49",
    "integration.status": "200",
    "integration.error": "-",
    "authorizer.latency": "6",
    "authorizer.status": "200",
    "authorizer.error": "-",
    "authorizer.requestId": "1d7b4f0e-5a2c-4c8e-9b3f-6e0a2d4c8f10",
    "integration.requestId": "8a3e6c21-0f4b-4d9a-a7c5-2b1e9f0d3c64",
    "authorizer.principalId": "telephony-platform-eu",
    "error.responseType": "-",
    "error.message": "-",
    "xrayTraceId": "Root=1-67c4f1e2-3b5d7a9c0e1f2a3b4c5d6e7f",
}
# The same request rejected by the authorizer: no integration ran.
UNAUTHORIZED_VALUES: dict[str, str | int] = {
    "status": 401,
    "responseLength": "77",
    "integrationLatency": "-",
    "integration.status": "-",
    "integration.requestId": "-",
    "authorizer.status": "401",
    "authorizer.principalId": "-",
    "error.responseType": "UNAUTHORIZED",
    "error.message": "Unauthorized",
}


@functools.lru_cache(maxsize=1)
def template() -> dict[str, Any]:
    return load_template()


def resource_properties(logical_id: str) -> dict[str, Any]:
    return template()["Resources"][logical_id]["Properties"]


def saved_query(logical_id: str) -> str:
    return resource_properties(logical_id)["QueryString"]


# -- REPORT lines -------------------------------------------------------------------

# The REPORT line format of AWS Lambda, from the example log output in the AWS
# Lambda Developer Guide, "Log and monitor Python Lambda functions"
# (https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html):
#
#   REPORT RequestId: <id>  Duration: 15.74 ms  Billed Duration: 147 ms
#   Memory Size: 128 MB Max Memory Used: 56 MB  Init Duration: 130.49 ms
#   XRAY TraceId: 1-5e34a614-10bdxmplf1fb44f07bc535a1   SegmentId: <segment>   Sampled: true
#
# (one REPORT line wrapped here, then the XRAY part)
#
# The stored message separates the fields with tabs, which the page shows as
# spaces. "Init Duration" appears only on the first invocation of a new
# execution environment, and the XRAY part only for traced functions, which
# these are (Tracing: Active).


def report_line(
    request_id: str,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None,
) -> str:
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(1, round(duration_ms))} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_mb} MB",
    ]
    if init_ms is not None:
        fields.append(f"Init Duration: {init_ms:.2f} ms")
    trace_id = f"1-67c4f1e2-{uuid.uuid4().hex[:24]}"
    trace = f"XRAY TraceId: {trace_id}\tSegmentId: {uuid.uuid4().hex[:16]}\tSampled: true"
    return "\t".join(fields) + "\t\n" + trace + "\t\n"


def invocation(
    log: str, at_ms: int, *, memory_mb: int, max_memory_mb: int, init_ms: float | None = None
) -> list[LogEvent]:
    """Return the lines of one invocation: START, a Powertools line, END and REPORT."""
    request_id = str(uuid.uuid4())
    application_line = json.dumps(
        {"level": "INFO", "message": "Authorization succeeded", "requestId": request_id}
    )
    lines = [
        f"START RequestId: {request_id} Version: 3",
        application_line,
        f"END RequestId: {request_id}",
        report_line(
            request_id,
            duration_ms=18.4,
            memory_mb=memory_mb,
            max_memory_mb=max_memory_mb,
            init_ms=init_ms,
        ),
    ]
    return [LogEvent(at_ms + index, line, log) for index, line in enumerate(lines)]


def cold_start_events() -> list[LogEvent]:
    """Return cold and warm invocations of two functions over two 15-minute bins."""

    def at_minute(
        log: str, memory_mb: int, minute: int, max_memory_mb: int, init_ms: float | None = None
    ) -> list[LogEvent]:
        at_ms = FIRST_INVOCATION_MS + minute * MINUTE_MS
        return invocation(
            log, at_ms, memory_mb=memory_mb, max_memory_mb=max_memory_mb, init_ms=init_ms
        )

    authorizer = functools.partial(at_minute, AUTHORIZER_LOG, 256)
    storer = functools.partial(at_minute, STORER_LOG, 512)
    return [
        *authorizer(0, max_memory_mb=80, init_ms=350.5),
        *authorizer(3, max_memory_mb=81),
        *storer(4, max_memory_mb=95, init_ms=620.25),
        *storer(5, max_memory_mb=97, init_ms=580.75),
        *storer(6, max_memory_mb=99),
        # 00:03 and 00:04, in the next bin.
        *authorizer(16, max_memory_mb=82, init_ms=410.0),
        *storer(17, max_memory_mb=99),
    ]


# -- access log lines -----------------------------------------------------------------


def access_log_format() -> str:
    return resource_properties("CallflowApi")["AccessLogSetting"]["Format"]


def render_access_log(overrides: dict[str, str | int]) -> str:
    """Render the template's access log format with ACCESS_LOG_VALUES updated by `overrides`."""
    values = {**ACCESS_LOG_VALUES, **overrides}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"no test value for $context.{name}: add one to ACCESS_LOG_VALUES"
        return str(values[name])

    return CONTEXT_VARIABLE.sub(substitute, access_log_format())


def access_log_event(
    method: str, path: str, latency_ms: int, *, unauthorized: bool = False
) -> LogEvent:
    overrides: dict[str, str | int] = {
        "requestId": str(uuid.uuid4()),
        "httpMethod": method,
        "resourcePath": path,
        "status": 200 if method == "GET" else 201,
        "responseLatency": latency_ms,
        "integrationLatency": str(max(1, latency_ms - 8)),
    }
    if unauthorized:
        overrides.update(UNAUTHORIZED_VALUES)
    epoch_ms = int(ACCESS_LOG_VALUES["requestTimeEpoch"])
    return LogEvent(epoch_ms, render_access_log(overrides), ACCESS_LOG)


# -- tests ------------------------------------------------------------------------------


def test_saved_query_list_is_complete():
    resources = template()["Resources"]
    saved = {
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Logs::QueryDefinition"
    }

    assert saved == set(SAVED_QUERIES)


@pytest.mark.parametrize("logical_id", SAVED_QUERIES)
def test_saved_query_is_within_evaluated_subset(logical_id):
    assert parse_query(saved_query(logical_id))


def test_report_line_matches_documented_format():
    request_id = "8f507cfc-1f2e-4697-b07a-ac58fc914c95"
    line = report_line(
        request_id, duration_ms=15.74, memory_mb=128, max_memory_mb=56, init_ms=130.49
    )
    first_line, trace_line = line.splitlines()

    assert first_line == (
        f"REPORT RequestId: {request_id}\tDuration: 15.74 ms\tBilled Duration: 16 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 130.49 ms\t"
    )
    trace_format = r"XRAY TraceId: 1-\w{8}-\w{24}\tSegmentId: \w{16}\tSampled: true\t"
    assert re.fullmatch(trace_format, trace_line)


def test_cold_starts_per_bin_and_function():
    rows = run_query(saved_query("ColdStartsQuery"), cold_start_events())
    by_bin_and_function = {(row["bin(15m)"], row["@log"]): row for row in rows}

    assert set(by_bin_and_function) == {
        ("2026-03-02 23:45:00.000", AUTHORIZER_LOG),
        ("2026-03-02 23:45:00.000", STORER_LOG),
        ("2026-03-03 00:00:00.000", AUTHORIZER_LOG),
    }
    assert by_bin_and_function[("2026-03-02 23:45:00.000", AUTHORIZER_LOG)] == {
        "bin(15m)": "2026-03-02 23:45:00.000",
        "@log": AUTHORIZER_LOG,
        "coldStarts": 1,
        "avgInitMs": 350.5,
        "maxInitMs": 350.5,
        "maxMemoryMB": 80.0,
    }
    assert by_bin_and_function[("2026-03-02 23:45:00.000", STORER_LOG)] == {
        "bin(15m)": "2026-03-02 23:45:00.000",
        "@log": STORER_LOG,
        "coldStarts": 2,
        "avgInitMs": 600.5,
        "maxInitMs": 620.25,
        "maxMemoryMB": 97.0,
    }
    assert by_bin_and_function[("2026-03-03 00:00:00.000", AUTHORIZER_LOG)]["coldStarts"] == 1
    assert by_bin_and_function[("2026-03-03 00:00:00.000", AUTHORIZER_LOG)]["maxInitMs"] == 410.0


def test_cold_starts_ignore_warm_reports():
    warm_only = [event for event in cold_start_events() if "Init Duration" not in event.message]

    assert run_query(saved_query("ColdStartsQuery"), warm_only) == []


def test_access_log_renders_as_json():
    entry = json.loads(render_access_log({}))

    assert entry["httpMethod"] == "POST"
    assert entry["resourcePath"] == "/events"
    assert entry["status"] == 201
    assert entry["responseLatency"] == 57
    assert entry["requestTimeEpoch"] == 1772495890123
    assert entry["integrationLatency"] == "49"


def test_rejected_request_access_log_is_json():
    entry = json.loads(render_access_log(UNAUTHORIZED_VALUES))

    assert entry["status"] == 401
    # The join key to the authorizer's log line, which carries the Lambda request id.
    assert entry["authorizerRequestId"] == ACCESS_LOG_VALUES["authorizer.requestId"]
    assert entry["integrationLatency"] == "-"
    assert entry["errorResponseType"] == "UNAUTHORIZED"


def test_latency_query_reads_access_log():
    destination = resource_properties("CallflowApi")["AccessLogSetting"]["DestinationArn"]

    groups = resource_properties("LatencyByEndpointQuery")["LogGroupNames"]

    assert groups == [{"Ref": "ApiAccessLogGroup"}]
    assert destination == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}


def test_latency_per_endpoint():
    events = [
        *(access_log_event("POST", "/events", latency) for latency in (40, 45, 50, 55, 300)),
        *(access_log_event("GET", "/events/{eventId}", latency) for latency in (20, 22, 24)),
        access_log_event("GET", "/health", 6, unauthorized=True),
        access_log_event("GET", "/health", 12),
    ]

    rows = run_query(saved_query("LatencyByEndpointQuery"), events)
    by_endpoint = {(row["httpMethod"], row["resourcePath"]): row for row in rows}

    # sort p99Ms desc puts the slowest endpoint first.
    assert list(by_endpoint) == [
        ("POST", "/events"),
        ("GET", "/events/{eventId}"),
        ("GET", "/health"),
    ]

    post = by_endpoint[("POST", "/events")]
    assert post["requests"] == 5
    assert post["avgMs"] == 98.0
    assert post["p50Ms"] == 50
    assert post["maxMs"] == 300
    assert post["p50Ms"] <= post["p90Ms"] <= post["p99Ms"] <= post["maxMs"]

    read = by_endpoint[("GET", "/events/{eventId}")]
    assert read["requests"] == 3
    assert read["avgMs"] == 22.0
    assert read["p50Ms"] == 22
    assert read["maxMs"] == 24

    # The rejected request counts under its route, like any other.
    health = by_endpoint[("GET", "/health")]
    assert health["requests"] == 2
    assert health["avgMs"] == 9.0
    assert health["maxMs"] == 12


def test_errors_query_skips_rejected_tokens():
    # The Python runtime logs a handler's uncaught exception as one event
    # starting "[ERROR] <type>: <message>", traceback included.
    rejected = "[ERROR] Exception: Unauthorized\nTraceback (most recent call last):\n  ..."
    crashed = "[ERROR] KeyError: 'methodArn'\nTraceback (most recent call last):\n  ..."
    events = [
        LogEvent(1_700_000_000_000, rejected, "/aws/lambda/callflow-authorizer-prod"),
        LogEvent(1_700_000_001_000, crashed, "/aws/lambda/callflow-authorizer-prod"),
    ]

    rows = run_query(saved_query("ErrorsQuery"), events)

    assert [row["@message"] for row in rows] == [crashed]
