"""A short schemathesis run against the stack under test; `make fuzz` runs a long one.

Schemathesis (through tools/fuzz.py) generates requests from the OpenAPI
document in template.yaml. It checks that no response is a server error and
that every status and body matches the document.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.conftest import READ, WRITE

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import fuzz  # noqa: E402

# Cases per operation in the fuzzing phase. The coverage and stateful phases
# add several hundred more, and the run takes about 30 s on the emulator.
MAX_EXAMPLES = 20
MIN_CASES = 300
SEED = 20260302
OPERATIONS = {
    "POST /events",
    "GET /events",
    "GET /events/{eventId}",
    "GET /calls/{callId}/events",
    "GET /health",
}

# The body of a batch rejected with 409 (every event conflicts) or 503 has code
# and message as well as results and summary. So it matches both schemas of
# the document's oneOf [Error, BatchResult], and oneOf allows exactly one.
# TODO: remove these once POST /events's 409 and 503 schemas use anyOf.
KNOWN_SPEC_MISMATCHES = {
    ("POST /events", "response_schema_conformance", 409),
    ("POST /events", "response_schema_conformance", 503),
}


def test_fuzzed_requests_conform_to_openapi(stack, make_token, tmp_path):
    exit_code, report = fuzz.fuzz(
        stack.base_url,
        make_token(READ, WRITE),
        max_examples=MAX_EXAMPLES,
        seed=SEED,
        report_dir=tmp_path,
        quiet=True,
    )
    fuzz.print_report(report)

    assert report.total_cases >= MIN_CASES, f"schemathesis exited with {exit_code}"
    assert OPERATIONS <= set(report.cases)
    assert not report.errors
    assert set(report.failure_kinds()) <= KNOWN_SPEC_MISMATCHES
    assert exit_code in (0, 1)
