"""Concurrent posts with racing re-sends: nothing lost, nothing stored twice.

The same run as `make concurrency` (bench/concurrency.py), smaller: 400 events
from 8 clients, with 10 % identical and 1 % changed re-sends.
"""

from __future__ import annotations

import boto3
import pytest

from bench.concurrency import (
    CHANGED_RESEND_SHARE,
    IDENTICAL_RESEND_SHARE,
    SCOPES,
    BenchConfig,
    BenchReport,
    Target,
    format_table,
    run_benchmark,
)

EVENTS = 400
CLIENTS = 8
DEADLINE_SECONDS = 600


@pytest.fixture(scope="module")
def report(stack, make_token) -> BenchReport:
    target = Target(
        base_url=stack.base_url,
        token=make_token(*SCOPES, ttl=DEADLINE_SECONDS + 300),
        bucket=stack.outputs["EventsBucketName"],
        s3=boto3.client("s3"),
    )
    result = run_benchmark(
        BenchConfig(events=EVENTS, clients=CLIENTS, deadline_seconds=DEADLINE_SECONDS), target
    )
    # Shown with -s, and in the captured output of a failing test.
    print(format_table(result))
    return result


def test_every_event_posted_and_read_back(report):
    assert report.unsent == 0
    assert report.unchecked == 0
    assert report.stored == EVENTS


def test_no_event_is_lost(report):
    assert report.lost == 0, report.problems


def test_no_event_is_stored_twice(report):
    assert report.doubled == 0, report.problems


def test_stored_bytes_match_accepted_content(report):
    assert report.mismatched == 0, report.problems


def test_statuses_match_stored_content(report):
    assert report.wrong_statuses == 0, report.problems


def test_each_changed_resend_gets_one_conflict(report):
    assert report.expected_conflicts == round(EVENTS * CHANGED_RESEND_SHARE)
    assert report.conflicts == report.expected_conflicts
    assert report.conflict_errors == 0, report.problems


def test_identical_resends_are_duplicates(report):
    # Each identical re-send, or the original it raced, gets the status duplicate.
    assert report.duplicates >= round(EVENTS * IDENTICAL_RESEND_SHARE)
