#!/usr/bin/env python3
"""Fuzz the deployed API with schemathesis, driven by the OpenAPI document in template.yaml.

    python tools/fuzz.py --stack-name callflow-local --max-examples 500
    python tools/fuzz.py --base-url URL --token TOKEN --max-examples 50

With --stack-name, AWS_ENDPOINT_URL must point at the emulator that serves
the stack: the base URL comes from the stack's outputs and the token is
minted with the stack's signing secret (both scopes). The OpenAPI document
is exported with tools/openapi_export.py, and links are added to it so that
the stateful phase reads back what POST /events stored and follows
nextTokens.

Schemathesis runs every phase (examples, coverage, fuzzing, stateful) with
these checks: not_a_server_error, status_code_conformance and
response_schema_conformance. The tool prints the test cases per operation
and per phase, and every failure with its operation, check and status. It
exits 1 when any check failed or schemathesis reported an error, and 2 when
schemathesis could not run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
# The schemathesis CLI of the interpreter that runs this tool (.venv has it).
SCHEMATHESIS = (sys.executable, "-m", "schemathesis.cli")

CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance")
PHASES = ("examples", "coverage", "fuzzing", "stateful")
DEFAULT_MAX_EXAMPLES = 100
DEFAULT_SEED = 20260302
DEFAULT_WORKERS = 1
REQUEST_TIMEOUT_SECONDS = 30
TOKEN_TTL_SECONDS = 3600
FUZZ_SCOPES = "events:read events:write"
MAX_SHOWN_BODY_BYTES = 300
STACK_NAME_ENV = "CALLFLOW_STACK_NAME"
DEFAULT_STACK_NAME = "callflow-local"


@dataclass(frozen=True)
class Failure:
    """One failed check of one test case."""

    operation: str
    check: str
    status: int | None
    phase: str
    request: str
    response: str

    @property
    def kind(self) -> tuple[str, str, int | None]:
        return (self.operation, self.check, self.status)


@dataclass
class FuzzReport:
    """Counts and failures of one schemathesis run, read from its NDJSON event stream."""

    cases: Counter[str] = field(default_factory=Counter)
    cases_by_phase: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def total_cases(self) -> int:
        return sum(self.cases.values())

    def failure_kinds(self) -> Counter[tuple[str, str, int | None]]:
        """Count failures by (operation, check, response status)."""
        return Counter(failure.kind for failure in self.failures)


# ---------------------------------------------------------------------------
# The OpenAPI document


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    """Add OpenAPI links between operations, for schemathesis's stateful phase.

    A stored event is read back by id, by call and by range. A page with a
    nextToken is followed by the next page of the same query.
    """
    paths = document["paths"]
    read_back = {
        "GetStoredEvent": {
            "operationId": "getEvent",
            "parameters": {"eventId": "$response.body#/eventId"},
        },
        "GetStoredCall": {
            "operationId": "getCallEvents",
            "parameters": {"callId": "$request.body#/callId"},
        },
        "ListStoredCall": {
            "operationId": "listEvents",
            "parameters": {"callId": "$request.body#/callId"},
        },
    }
    for status in ("200", "201"):
        paths["/events"]["post"]["responses"][status]["links"] = read_back

    paths["/events"]["get"]["responses"]["200"]["links"] = {
        "NextEventsPage": {
            "operationId": "listEvents",
            "parameters": {
                "nextToken": "$response.body#/nextToken",
                "startDate": "$request.query.startDate",
                "endDate": "$request.query.endDate",
                "eventType": "$request.query.eventType",
                "callId": "$request.query.callId",
            },
        }
    }
    paths["/calls/{callId}/events"]["get"]["responses"]["200"]["links"] = {
        "NextCallPage": {
            "operationId": "getCallEvents",
            "parameters": {
                "callId": "$request.path.callId",
                "nextToken": "$response.body#/nextToken",
            },
        }
    }
    return document


def write_document(base_url: str, folder: Path) -> Path:
    from openapi_export import export_openapi

    document = add_links(export_openapi(ROOT / "template.yaml", base_url))
    path = folder / "openapi.json"
    path.write_text(json.dumps(document, indent=2))
    return path


# ---------------------------------------------------------------------------
# Running schemathesis


def run_schemathesis(
    document: Path,
    base_url: str,
    token: str,
    *,
    max_examples: int,
    seed: int,
    workers: int,
    report_dir: Path,
    phases: tuple[str, ...] = PHASES,
    quiet: bool = False,
) -> int:
    """Run `schemathesis run`, writing the NDJSON report to report_dir, and return its exit code."""
    command = [
        *SCHEMATHESIS,
        "run",
        str(document),
        "--url",
        base_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        ",".join(phases),
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--request-timeout",
        str(REQUEST_TIMEOUT_SECONDS),
        "--continue-on-failure",
        "--generation-database",
        "none",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report_dir / "events.ndjson"),
        "--no-color",
    ]
    # Run in the report folder, so that nothing schemathesis writes lands in the repository.
    output = subprocess.DEVNULL if quiet else None
    completed = subprocess.run(command, cwd=report_dir, stdout=output, stderr=output)
    return completed.returncode


def read_report(path: Path) -> FuzzReport:
    """Count cases per operation and phase, and collect failed checks, from the NDJSON events."""
    report = FuzzReport()
    with path.open() as stream:
        for line in stream:
            event = json.loads(line)
            (kind, payload), = event.items()
            # With several workers, the fuzzing phase reports FuzzScenarioFinished.
            if kind in ("ScenarioFinished", "FuzzScenarioFinished"):
                _read_scenario(payload, report)
            elif kind == "NonFatalError":
                label = payload.get("label", "?")
                report.errors.append(f"{label}: {_error_text(payload.get('value'))}")
            elif kind == "FatalError":
                report.errors.append(_error_text(payload.get("exception")))
    return report


def _error_text(error: Any) -> str:
    """Format an exception as the NDJSON report writes it: {"type": ..., "message": ...}."""
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return str(error)


def _body_text(content: Any) -> str:
    """Decode a response body as the NDJSON report writes it ({"$base64": ...}), cut short."""
    if isinstance(content, dict) and "$base64" in content:
        raw = base64.b64decode(content["$base64"])
        return raw[:MAX_SHOWN_BODY_BYTES].decode("utf-8", errors="replace")
    return "" if content is None else str(content)[:MAX_SHOWN_BODY_BYTES]


def _read_scenario(scenario: dict[str, Any], report: FuzzReport) -> None:
    recorder = scenario.get("recorder") or {}
    phase = scenario.get("phase", "fuzzing")
    interactions = recorder.get("interactions") or {}
    checks = recorder.get("checks") or {}

    for case_id, case in (recorder.get("cases") or {}).items():
        value = case["value"]
        operation = f"{value['method']} {value['path']}"
        report.cases[operation] += 1
        report.cases_by_phase[phase] += 1

        interaction = interactions.get(case_id) or {}
        response = interaction.get("response") or {}
        status = response.get("status_code")
        if status is not None:
            report.statuses[(operation, status)] += 1

        for check in checks.get(case_id) or []:
            if check.get("status") == "failure":
                request = interaction.get("request") or {}
                report.failures.append(
                    Failure(
                        operation=operation,
                        check=check["name"],
                        status=status,
                        phase=phase,
                        request=f"{request.get('method', '?')} {request.get('uri', '?')}",
                        response=_body_text(response.get("content")),
                    )
                )


def print_report(report: FuzzReport) -> None:
    print()
    print(f"test cases: {report.total_cases}")
    for phase, count in sorted(report.cases_by_phase.items()):
        print(f"  phase {phase}: {count}")
    for operation, count in sorted(report.cases.items()):
        statuses = ", ".join(
            f"{status}: {number}"
            for (name, status), number in sorted(report.statuses.items())
            if name == operation
        )
        print(f"  {operation}: {count} ({statuses})")

    print(f"failed checks: {len(report.failures)}")
    for (operation, check, status), count in sorted(report.failure_kinds().items(), key=str):
        example = next(f for f in report.failures if f.kind == (operation, check, status))
        print(f"  {operation} {check} status {status}: {count}, for example")
        print(f"    request:  {example.request}")
        print(f"    response: {example.response}")
    if report.errors:
        print(f"schemathesis errors: {len(report.errors)}")
        for error in report.errors:
            print(f"  {error}")


# ---------------------------------------------------------------------------
# Target


def stack_target(stack_name: str) -> tuple[str, str]:
    """Return (base URL, token) for a stack in the emulator that AWS_ENDPOINT_URL names."""
    from local_stack import local_base_url, stack_outputs

    # mint_token puts the layer's callflow package on sys.path, so it comes first.
    from mint_token import mint_token
    from callflow import secrets
    from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER

    outputs = stack_outputs(stack_name)
    secret = secrets.get_secret_value(outputs["JwtSecretArn"])
    token = mint_token(
        secret,
        FUZZ_SCOPES,
        subject="fuzz",
        ttl=TOKEN_TTL_SECONDS,
        issuer=DEFAULT_JWT_ISSUER,
        audience=DEFAULT_JWT_AUDIENCE,
    )
    return local_base_url(outputs), token


def fuzz(
    base_url: str,
    token: str,
    *,
    max_examples: int,
    seed: int = DEFAULT_SEED,
    workers: int = DEFAULT_WORKERS,
    report_dir: Path | None = None,
    quiet: bool = False,
) -> tuple[int, FuzzReport]:
    """Fuzz the API at base_url, and return schemathesis's exit code and the report."""
    with tempfile.TemporaryDirectory(prefix="callflow-fuzz-") as scratch:
        folder = (report_dir or Path(scratch)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        document = write_document(base_url, folder)
        exit_code = run_schemathesis(
            document,
            base_url,
            token,
            max_examples=max_examples,
            seed=seed,
            workers=workers,
            report_dir=folder,
            quiet=quiet,
        )
        events = folder / "events.ndjson"
        if not events.exists():
            message = f"schemathesis exited with {exit_code} and wrote no report"
            return exit_code, FuzzReport(errors=[message])
        return exit_code, read_report(events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stack-name",
        default=os.environ.get(STACK_NAME_ENV) or DEFAULT_STACK_NAME,
        help=f"stack in the emulator to fuzz (default: ${STACK_NAME_ENV}, "
        f"else {DEFAULT_STACK_NAME})",
    )
    parser.add_argument("--base-url", help="API base URL to fuzz instead of a stack (with --token)")
    parser.add_argument("--token", help="bearer token with both scopes for --base-url")
    parser.add_argument(
        "--max-examples",
        type=int,
        default=int(os.environ.get("MAX_EXAMPLES", DEFAULT_MAX_EXAMPLES)),
        help="generated test cases per operation in the fuzzing phase "
        f"(default: $MAX_EXAMPLES, else {DEFAULT_MAX_EXAMPLES})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="random seed, for a repeatable run"
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="concurrent schemathesis workers"
    )
    parser.add_argument(
        "--report-dir", type=Path, help="keep openapi.json and events.ndjson in this folder"
    )
    args = parser.parse_args(argv)

    if bool(args.base_url) != bool(args.token):
        parser.error(
            "--base-url and --token must be given together: pass both, "
            "or neither to fuzz the stack that --stack-name names"
        )
    if args.base_url:
        base_url, token = args.base_url, args.token
    else:
        base_url, token = stack_target(args.stack_name)

    exit_code, report = fuzz(
        base_url,
        token,
        max_examples=args.max_examples,
        seed=args.seed,
        workers=args.workers,
        report_dir=args.report_dir,
    )
    print_report(report)

    if report.total_cases == 0:
        message = f"schemathesis ran no test cases (exit code {exit_code}). Check its output above."
        print(f"fuzz.py: error: {message}", file=sys.stderr)
        return 2
    if report.failures or report.errors or exit_code != 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
