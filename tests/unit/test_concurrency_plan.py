"""The request plan of bench/concurrency.py: what it sends, before anything is sent."""

from __future__ import annotations

import random

import pytest

from bench.concurrency import BenchConfig, plan_requests


@pytest.mark.parametrize("seed", range(5))
def test_no_batch_repeats_an_event(seed):
    requests = plan_requests(BenchConfig(events=2000), "run", random.Random(seed))

    for request in requests:
        numbers = [submission.number for submission in request.submissions]
        assert len(numbers) == len(set(numbers))


def test_plan_sends_every_event_and_resends():
    requests = plan_requests(BenchConfig(events=2000), "run", random.Random(7))

    submissions = [submission for request in requests for submission in request.submissions]
    kinds = [submission.kind for submission in submissions]
    assert kinds.count("original") == 2000
    assert kinds.count("identical") == 200
    assert kinds.count("changed") == 20
