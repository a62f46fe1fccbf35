"""Checks that need control of the emulator: a restart, and a bucket that is gone.

They run last (pytest orders files by name) and only on the emulator that
`make test-integration` starts, because they restart it and delete the
events bucket. Against a stack in AWS they are skipped.

The last tests run the saved Logs Insights queries of template.yaml over
every line the functions logged during the suite. The emulator keeps those
lines in CloudWatch Logs but cannot run `stats`, so tools/insights.py
evaluates the queries.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from samcli.yamlhelper import yaml_parse

from tests.integration.conftest import READ, Api, Stack
from tests.integration.test_store_and_read import unique_case
from tools.insights import FilterCommand, Junction, Like, LogEvent, parse_query, run_query

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = os.environ.get("CALLFLOW_TEST_EMULATOR_STATE_DIR", "")

# The template's function log groups, and the stack output naming each function.
LOG_GROUP_FUNCTION_OUTPUTS = {
    "AuthorizerLogGroup": "AuthorizerFunctionName",
    "StorerLogGroup": "StorerFunctionName",
    "RetrieverLogGroup": "RetrieverFunctionName",
}
QUERY_POLL_INTERVAL_SECONDS = 0.2
QUERY_TIMEOUT_SECONDS = 30

# Lines in the form the Python runtime writes for an unhandled exception in
# AWS (awslambdaric's log_error: "[ERROR] <type>: <message>", then the
# traceback, in one event). The emulator writes only the bare traceback.
RUNTIME_LINES_GROUP = "/callflow-test/lambda-runtime-lines"
RUNTIME_ERROR_LINES = (
    "[ERROR] Exception: Unauthorized\nTraceback (most recent call last):\n"
    '  File "/var/task/app.py", line 60, in lambda_handler\n'
    "    raise Exception(UNAUTHORIZED_MESSAGE) from None\n",
    "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': No module named 'jwt'\n"
    "Traceback (most recent call last):\n",
)

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.skipif(
    not STATE_DIR, reason="needs the emulator started by `make test-integration`"
)


def emulator(command: str) -> None:
    port = os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]
    subprocess.run(
        [sys.executable, "tools/emulator.py", command, "--port", port, "--state-dir", STATE_DIR],
        cwd=ROOT,
        check=True,
    )


def test_stored_events_survive_emulator_restart(api, run_id):
    events = unique_case("contact-center-transfer.json", run_id)
    assert api.post_events(events).status_code == 201

    emulator("stop")
    emulator("start")

    body = api.get(f"/calls/{events[0]['callId']}/events").json()
    assert [event["eventId"] for event in body["events"]] == [event["eventId"] for event in events]


def test_health_is_503_when_bucket_is_gone(api, stack):
    bucket = boto3.resource("s3").Bucket(stack.outputs["EventsBucketName"])
    bucket.object_versions.delete()
    bucket.delete()

    response = api.get("/health")

    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["code"] == "STORAGE_UNAVAILABLE"


# -- saved Logs Insights queries ---------------------------------------------------


def function_log_group(stack: Stack, logical_id: str) -> str:
    return f"/aws/lambda/{stack.outputs[LOG_GROUP_FUNCTION_OUTPUTS[logical_id]]}"


def saved_query(stack: Stack, logical_id: str) -> tuple[str, list[str]]:
    """Return the QueryString of a saved query in template.yaml and the names of its log groups."""
    template = yaml_parse((ROOT / "template.yaml").read_text())
    properties = template["Resources"][logical_id]["Properties"]
    groups = [function_log_group(stack, name["Ref"]) for name in properties["LogGroupNames"]]
    return properties["QueryString"], groups


def read_log_events(group: str) -> list[LogEvent]:
    """Return every event of a log group, oldest first, read stream by stream.

    The emulator's filter_log_events returns at most 10,000 events and no
    nextToken, so on a busy group it leaves out the newest lines.
    """
    client = boto3.client("logs")
    events: list[LogEvent] = []
    for page in client.get_paginator("describe_log_streams").paginate(logGroupName=group):
        for stream in page["logStreams"]:
            name = stream["logStreamName"]
            arguments: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": name,
                "startFromHead": True,
            }

            # get_log_events returns the token it was given once the stream is read.
            while True:
                response = client.get_log_events(**arguments)
                events.extend(
                    LogEvent(item["timestamp"], item["message"], group, name)
                    for item in response["events"]
                )
                if response["nextForwardToken"] == arguments.get("nextToken"):
                    break
                arguments["nextToken"] = response["nextForwardToken"]

    events.sort(key=lambda event: event.timestamp_ms)
    return events


@pytest.fixture(scope="module")
def function_log_events(stack, api, make_token) -> dict[str, list[LogEvent]]:
    """Every line the three functions logged, after a failed store and two rejected tokens.

    The suite's earlier tests stored, duplicated and conflicted events. The
    rejected tokens are sent here as well, so that the authorization failure
    rows do not depend on which other tests ran.
    """
    event = unique_case("sip-basic-call.json", uuid.uuid4().hex[:10])[0]

    # test_health_is_503_when_bucket_is_gone deleted the bucket, so the write
    # fails and the storer logs ERROR lines.
    stored = api.post_events(event)
    assert stored.status_code == 503, f"the events bucket must be gone: {stored.text}"
    assert Api(stack.base_url, make_token(READ, ttl=-120)).get("/health").status_code == 401
    assert Api(stack.base_url, make_token(READ)).post_events(event).status_code == 403

    groups = [function_log_group(stack, logical_id) for logical_id in LOG_GROUP_FUNCTION_OUTPUTS]
    return {group: read_log_events(group) for group in groups}


def run_saved_query(
    stack: Stack, logical_id: str, log_events: dict[str, list[LogEvent]]
) -> list[dict]:
    query, groups = saved_query(stack, logical_id)
    rows = run_query(query, [event for group in groups for event in log_events[group]])
    logger.info("%s returned %d rows: %s", logical_id, len(rows), rows)
    return rows


def test_errors_query_finds_failed_store(stack, function_log_events):
    rows = run_saved_query(stack, "ErrorsQuery", function_log_events)
    storer = function_log_group(stack, "StorerLogGroup")
    storer_rows = [row for row in rows if row.get("@log") == storer]
    failed = [row for row in storer_rows if row.get("message") == "Event store failed"]

    assert failed, f"no 'Event store failed' row among {storer_rows}"
    assert failed[0]["level"] == "ERROR"
    assert failed[0]["code"] == "STORAGE_UNAVAILABLE"
    assert failed[0]["requestId"]
    assert "Request failed" in {row.get("message") for row in storer_rows}
    assert len(rows) <= 200
    timestamps = [row["@timestamp"] for row in rows]
    assert timestamps == sorted(timestamps, reverse=True)


def test_auth_failures_query_counts_each_reason(stack, function_log_events):
    rows = run_saved_query(stack, "AuthFailuresQuery", function_log_events)
    failures = {(row.get("failureReason"), row.get("message")): row["failures"] for row in rows}

    expired = ("TOKEN_EXPIRED", "Authorization failed")
    out_of_scope = ("INSUFFICIENT_SCOPE", "Request not covered by the token's scopes")

    assert failures.get(expired, 0) > 0, failures
    assert failures.get(out_of_scope, 0) > 0, failures
    counts = [row["failures"] for row in rows]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("message", ["Event stored", "Duplicate event skipped", "Event conflict"])
def test_event_processing_query_counts_outcome(stack, function_log_events, message):
    rows = run_saved_query(stack, "EventProcessingQuery", function_log_events)
    row = next((row for row in rows if row.get("message") == message), None)

    assert row is not None, f"no row for {message!r} among {rows}"
    assert row["events"] > 0
    assert row["bytes"] > 0
    assert row["avgMs"] >= 0
    assert row["p99Ms"] <= row["maxMs"]
    assert row["avgMs"] <= row["maxMs"]


def test_event_processing_query_counts_failed_store(stack, function_log_events):
    rows = run_saved_query(stack, "EventProcessingQuery", function_log_events)
    failed = next((row for row in rows if row.get("message") == "Event store failed"), None)

    assert failed is not None, rows
    assert failed["events"] >= 1
    counts = [row["events"] for row in rows]
    assert counts == sorted(counts, reverse=True)


def emulator_query(query: str, groups: list[str]) -> list[dict[str, str]]:
    """Run `query` in the emulator's Logs Insights and return its rows as field-to-value dicts."""
    client = boto3.client("logs")
    query_id = client.start_query(
        logGroupNames=groups, startTime=0, endTime=int(time.time()) + 60, queryString=query
    )["queryId"]
    deadline = time.monotonic() + QUERY_TIMEOUT_SECONDS
    while True:
        response = client.get_query_results(queryId=query_id)
        if response["status"] not in ("Scheduled", "Running"):
            break
        assert time.monotonic() < deadline, f"query {query_id} still {response['status']}"
        time.sleep(QUERY_POLL_INTERVAL_SECONDS)
    assert response["status"] == "Complete", response
    return [{cell["field"]: cell["value"] for cell in row} for row in response["results"]]


def write_runtime_error_lines() -> list[LogEvent]:
    """Write RUNTIME_ERROR_LINES into a log group of their own and return them as stored."""
    client = boto3.client("logs")
    try:
        client.create_log_group(logGroupName=RUNTIME_LINES_GROUP)
        client.create_log_stream(logGroupName=RUNTIME_LINES_GROUP, logStreamName="runtime")
    except client.exceptions.ResourceAlreadyExistsException:
        pass
    now_ms = int(time.time() * 1000)
    client.put_log_events(
        logGroupName=RUNTIME_LINES_GROUP,
        logStreamName="runtime",
        logEvents=[{"timestamp": now_ms, "message": line} for line in RUNTIME_ERROR_LINES],
    )
    return read_log_events(RUNTIME_LINES_GROUP)


def test_emulator_agrees_on_like_terms(stack, function_log_events):
    """Run each `like` term of the errors query in the emulator and in tools/insights.py.

    The emulator evaluates a filter of a single `like`, not the query's
    `or` of five terms, so each term runs alone. The emulator writes no
    "[ERROR]" runtime lines, and the functions' lines matched none of the
    terms in the runs so far, so the lines of RUNTIME_ERROR_LINES are added.
    """
    query, groups = saved_query(stack, "ErrorsQuery")
    condition = next(c.condition for c in parse_query(query) if isinstance(c, FilterCommand))
    assert isinstance(condition, Junction)
    patterns = [
        part.pattern.pattern for part in condition.parts if isinstance(part, Like) and part.pattern
    ]
    events = [event for group in groups for event in function_log_events[group]]
    events += write_runtime_error_lines()

    matched = 0
    for pattern in patterns:
        term = f"filter @message like /{pattern}/"
        expected = sorted((row["@timestamp"], row["@message"]) for row in run_query(term, events))
        actual = emulator_query(term, [*groups, RUNTIME_LINES_GROUP])
        actual_lines = sorted((row["@timestamp"], row["@message"]) for row in actual)
        logger.info("%s matched %d lines in the emulator", term, len(actual_lines))

        assert actual_lines == expected, term
        matched += len(actual_lines)
    assert matched > 0, f"no line matched any of {patterns}, so the comparison shows nothing"
