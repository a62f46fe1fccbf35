"""Run checkov over template.yaml and require no failed check and a reason for every skip.

Skips live in the template, as a Metadata entry on the resource:
`Metadata: checkov: skip: [{id: CKV_AWS_xxx, comment: reason}]`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
CHECKOV = Path(sys.executable).parent / "checkov"
CHECKOV_TIMEOUT_SECONDS = 300

# checkov puts this text in place of a skip's missing comment.
CHECKOV_MISSING_COMMENT = "No comment provided"


def describe(check: dict[str, Any]) -> str:
    lines = check.get("file_line_range") or ["?", "?"]
    return f"{check['check_id']} on {check['resource']} (template.yaml:{lines[0]}-{lines[1]}): {check['check_name']}"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """Return checkov's JSON report of the template's CloudFormation checks."""
    # --skip-download keeps checkov offline: otherwise it fetches guideline
    # links from the Prisma Cloud API, which the checks themselves do not need.
    result = subprocess.run(
        [str(CHECKOV), "--file", str(TEMPLATE), "--framework", "cloudformation",
         "--output", "json", "--skip-download"],
        capture_output=True, text=True, cwd=ROOT, timeout=CHECKOV_TIMEOUT_SECONDS,
    )

    # Exit status 1 only means failed checks, which the tests below list.
    assert result.returncode in (0, 1), result.stderr
    output = json.loads(result.stdout)
    # checkov prints a list when it ran more than one framework.
    reports = output if isinstance(output, list) else [output]
    assert [entry["check_type"] for entry in reports] == ["cloudformation"]
    return reports[0]


def test_checkov_parses_template(report):
    # A template checkov cannot parse yields no failed checks either.
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 0
    assert report["results"]["passed_checks"]


def test_checkov_reports_no_failed_check(report):
    failed = report["results"]["failed_checks"]

    for check in failed:
        print(f"FAILED {describe(check)}")
    assert failed == [], "\n".join(describe(check) for check in failed)


def test_every_skip_gives_a_reason(report):
    skipped = report["results"]["skipped_checks"]

    without_reason = [
        describe(check)
        for check in skipped
        if check["check_result"].get("suppress_comment", "").strip() in ("", CHECKOV_MISSING_COMMENT)
    ]
    assert without_reason == []


def test_every_skip_reason_is_one_line(report):
    multiline = [
        describe(check)
        for check in report["results"]["skipped_checks"]
        if "\n" in check["check_result"].get("suppress_comment", "").strip()
    ]

    assert multiline == []
