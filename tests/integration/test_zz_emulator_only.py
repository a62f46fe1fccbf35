"""Checks that need control of the emulator: a restart, and a bucket that is gone.

They run last (pytest orders files by name) and only on the emulator that
`make test-integration` starts, because they restart it and delete the
events bucket. Against a stack in AWS they are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.integration.test_store_and_read import unique_case

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = os.environ.get("CALLFLOW_TEST_EMULATOR_STATE_DIR", "")

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
