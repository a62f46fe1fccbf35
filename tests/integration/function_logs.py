"""Read the deployed functions' CloudWatch Logs: invocation counts and logged text.

Each function writes to the log group /aws/lambda/<function name>. Lambda
starts every invocation's log with a "START RequestId: ..." line, in AWS and
in the emulator (MiniStack writes the same START, body, END and REPORT lines
into CloudWatch Logs), so counting START lines counts invocations.

CloudWatch Logs in AWS shows a line seconds after the function wrote it,
so readers poll with `wait_until` instead of reading once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

START_PREFIX = "START RequestId:"
FUNCTION_OUTPUTS = {
    "authorizer": "AuthorizerFunctionName",
    "storer": "StorerFunctionName",
    "retriever": "RetrieverFunctionName",
}
POLL_INTERVAL_SECONDS = 0.5
# The emulator writes a function's log lines before the API responds, so its
# short bound only covers a slow machine. CloudWatch Logs in AWS usually shows
# lines within seconds, and its bound here is an estimate.
EMULATOR_LOG_DELAY_SECONDS = 5
AWS_LOG_DELAY_SECONDS = 60


@dataclass(frozen=True)
class LogLine:
    """One log event: its CloudWatch timestamp and its text."""

    timestamp_ms: int
    message: str

    def json(self) -> dict[str, Any] | None:
        """Return the line as a JSON object (Powertools writes one per line), else None."""
        try:
            value = json.loads(self.message)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class FunctionLogs:
    """Reader of the stack's three function log groups, from `since_ms` (Unix ms) on."""

    def __init__(self, outputs: dict[str, str], since_ms: int, on_emulator: bool) -> None:
        self.client = boto3.client("logs")
        self.groups = {
            function: f"/aws/lambda/{outputs[output]}"
            for function, output in FUNCTION_OUTPUTS.items()
        }
        self.since_ms = since_ms
        self.on_emulator = on_emulator
        delay = EMULATOR_LOG_DELAY_SECONDS if on_emulator else AWS_LOG_DELAY_SECONDS
        self.delay_seconds = float(delay)

    def lines(self, function: str) -> list[LogLine]:
        """Return every line of `function`'s log group written since `since_ms`, oldest first."""
        arguments: dict[str, Any] = {
            "logGroupName": self.groups[function],
            "startTime": self.since_ms,
        }
        found: list[LogLine] = []
        try:
            while True:
                page = self.client.filter_log_events(**arguments)
                for event in page["events"]:
                    found.append(LogLine(event["timestamp"], event["message"]))
                token = page.get("nextToken")
                if not token or token == arguments.get("nextToken"):
                    break
                arguments["nextToken"] = token
        except self.client.exceptions.ResourceNotFoundException:
            # A function that never ran has no log group yet.
            return []
        found.sort(key=lambda line: line.timestamp_ms)
        return found

    def invocations(self, function: str) -> int:
        """Return how many times `function` started since `since_ms`."""
        return sum(1 for line in self.lines(function) if line.message.startswith(START_PREFIX))

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Poll `condition` until it is true or the log delay is over. Return its last value."""
        deadline = time.monotonic() + self.delay_seconds
        while True:
            if condition():
                return True
            if time.monotonic() >= deadline:
                return condition()
            time.sleep(POLL_INTERVAL_SECONDS)

    def settle(self) -> None:
        """Wait until lines already written are readable: at once on the emulator."""
        if not self.on_emulator:
            time.sleep(self.delay_seconds)
