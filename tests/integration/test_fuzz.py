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
    assert not report.failure_kinds(), report.failure_kinds()
    assert exit_code == 0
