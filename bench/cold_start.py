"""Cold-start benchmark: import of each handler with its layer plus its first invocation, against `import boto3`.

Every measurement is a fresh interpreter (bench/cold_start_child.py). A
function's cold start is the import of its app.py with the built layer on
sys.path, then one invocation with a valid request: the authorizer with an
RS256 token checked against a JWKS served on 127.0.0.1 (JWKS mode) and with an
HS256 token whose key it reads from the emulator's Secrets Manager (the
stack's shared secret), the storer with a one-event POST, the retriever with
GET /calls/{callId}/events. The baseline is `import boto3` alone. Runs of all
variants alternate, and each ratio figure is a ratio of medians.

The functions run from a copy of the `sam build` output, with the bytecode
that the layer and function Makefiles compile. PYTHONDONTWRITEBYTECODE is set
because Lambda's file system is read-only, so a cold start there writes no
bytecode. The "without bytecode" figures run a copy with every __pycache__
removed, where every cold start compiles the layer's modules and the handler,
to show what shipping bytecode saves. boto3 comes from this machine's
environment with its bytecode, as the Lambda runtime provides it.

The environment sets LAMBDA_TASK_ROOT and AWS_LAMBDA_FUNCTION_NAME as Lambda
does, so the Tracer patches botocore at import as it does there. X-Ray
segments go to 127.0.0.1:2000, where nothing listens.

    python bench/cold_start.py --build-dir .aws-sam/bench [--runs 5] [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import median
from typing import Any

import common
from common import AT_MOST, Figure, figure, load_fixture, print_figures, write_figures

CHILD = Path(__file__).resolve().parent / "cold_start_child.py"
# The child prints its result after this marker. It keeps its own copy, because
# it imports nothing but sys, time, os and json before its timer starts.
RESULT_MARKER = "COLD_START_RESULT "
DEFAULT_RUNS = 5
NO_BYTECODE_RUNS = 3
CHILD_TIMEOUT_SECONDS = 120
JWKS_KEY_ID = "bench-key-1"
TRACE_HEADER = "Root=1-6931e5a1-0c1d5f3b2a7e4c9d8b6a5f4e;Parent=53995c3f42cd8ad8;Sampled=1"

# Imports whose cost the report names, each measured alone in a fresh interpreter.
MEASURED_MODULES = (
    "aws_xray_sdk.core",
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.logging",
    "jwt",
    "callflow.store",
    "callflow.query",
)

AUTHORIZER_JWKS_GOAL = 0.6
FUNCTION_GOAL = 1.5

FUNCTION_DIRS = {
    "authorizer": "AuthorizerFunction",
    "storer": "StorerFunction",
    "retriever": "RetrieverFunction",
}
OUTPUT_NAMES = {
    "authorizer": "AuthorizerFunctionName",
    "storer": "StorerFunctionName",
    "retriever": "RetrieverFunctionName",
}


def serve_jwks(jwks: dict[str, Any]) -> ThreadingHTTPServer:
    """Serve `jwks` at http://127.0.0.1:PORT/jwks.json in a daemon thread."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def rs256_token_and_jwks() -> tuple[str, dict[str, Any]]:
    """Return an RS256 token for the stack's issuer and audience, and the JWKS that verifies it."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update(kid=JWKS_KEY_ID, use="sig", alg="RS256")
    now = int(time.time())
    claims = {
        "iss": DEFAULT_JWT_ISSUER,
        "aud": DEFAULT_JWT_AUDIENCE,
        "sub": "callflow-bench",
        "scope": "events:read events:write",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    token = jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": JWKS_KEY_ID})
    return token, {"keys": [jwk]}


class ColdStartBench:
    """Variants to start cold, each with its environment and first request."""

    def __init__(self, build_dir: Path, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.outputs = common.stack_outputs()
        self.as_built_dir = work_dir / "as-built"
        self.no_bytecode_dir = work_dir / "no-bytecode"
        for name in (*FUNCTION_DIRS.values(), "CommonLayer"):
            shutil.copytree(build_dir / name, self.as_built_dir / name)
            shutil.copytree(build_dir / name, self.no_bytecode_dir / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        require_bytecode(self.as_built_dir / "CommonLayer" / "python", build_dir)

        token, jwks = rs256_token_and_jwks()
        self.jwks_server = serve_jwks(jwks)
        jwks_url = f"http://127.0.0.1:{self.jwks_server.server_address[1]}/jwks.json"
        api = f"{self.outputs['ApiId']}/{self.outputs['StageName']}"
        method_arn = f"arn:aws:execute-api:us-east-1:000000000000:{api}/GET/health"

        base = self._base_environment()
        authorizer = {**base, **self._function_environment("authorizer")}
        self.environments = {
            "authorizer_jwks": {**authorizer, "JWKS_URL": jwks_url, "JWT_SECRET_ARN": ""},
            "authorizer_secret": {**authorizer, "JWKS_URL": ""},
            "storer": {**base, **self._function_environment("storer")},
            "retriever": {**base, **self._function_environment("retriever")},
        }
        self.functions = {
            "authorizer_jwks": "authorizer",
            "authorizer_secret": "authorizer",
            "storer": "storer",
            "retriever": "retriever",
        }
        self.tokens = {
            "authorizer_jwks": token,
            "authorizer_secret": common.mint_stack_token(self.outputs),
        }
        self.method_arn = method_arn
        self.call_id = f"bench-cold-{uuid.uuid4().hex[:10]}"
        self.sequence = 0

    def _base_environment(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        environment = {name: os.environ[name] for name in keep if name in os.environ}
        environment.update(
            AWS_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            PYTHONDONTWRITEBYTECODE="1",
            _X_AMZN_TRACE_ID=TRACE_HEADER,
            AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:2000",
            AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR",
        )
        return environment

    def _function_environment(self, function: str) -> dict[str, str]:
        name = self.outputs[OUTPUT_NAMES[function]]
        return {**common.function_environment(name), "AWS_LAMBDA_FUNCTION_NAME": name}

    def lambda_environment(self, variant: str, function_dir: Path) -> dict[str, str]:
        """Return the environment of `variant` with the variable Lambda sets to its code folder.

        Powertools and the X-Ray SDK take LAMBDA_TASK_ROOT as the sign that they
        run in Lambda: only then does the Tracer patch botocore.
        """
        return {**self.environments[variant], "LAMBDA_TASK_ROOT": str(function_dir)}

    def event_file(self, variant: str) -> Path:
        """Write the first request of `variant` to a file and return its path."""
        self.sequence += 1
        if variant.startswith("authorizer"):
            event = load_fixture("authorizer-token.json")
            event["authorizationToken"] = f"Bearer {self.tokens[variant]}"
            event["methodArn"] = self.method_arn
        elif variant == "storer":
            event = load_fixture("post-event.json")
            event["body"] = json.dumps(
                {
                    "eventId": f"{self.call_id}-{self.sequence:03d}",
                    "eventType": "CALL_STARTED",
                    "callId": self.call_id,
                    "timestamp": "2025-02-16T08:00:00.000Z",
                    "source": "pbx-bench-01",
                }
            )
        else:
            event = load_fixture("get-call-events.json")
            event["path"] = f"/calls/{self.call_id}/events"
            event["pathParameters"] = {"callId": self.call_id}
        path = self.work_dir / f"event-{self.sequence:03d}.json"
        path.write_text(json.dumps(event))
        return path

    def handler_child(self, variant: str, code_dir: Path) -> tuple[list[str], dict[str, str]]:
        """Return the child arguments and environment that start `variant` cold from `code_dir`."""
        function_dir = code_dir / FUNCTION_DIRS[self.functions[variant]]
        arguments = [
            "handler",
            str(function_dir),
            str(code_dir / "CommonLayer" / "python"),
            str(self.event_file(variant)),
        ]
        return arguments, self.lambda_environment(variant, function_dir)

    def run(self, variant: str, code_dir: Path | None = None) -> dict[str, Any]:
        """Run one cold start of `variant` ("boto3" or a function variant) and return its result."""
        if variant == "boto3":
            arguments, environment = ["boto3"], self._base_environment()
        else:
            assert code_dir is not None
            arguments, environment = self.handler_child(variant, code_dir)
        completed = run_child(arguments, environment, self.work_dir)
        result = child_result(completed, f"cold start of {variant}")
        check_response(variant, result["response"])
        return result


def run_child(
    arguments: list[str],
    environment: dict[str, str],
    work_dir: Path,
    interpreter_options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run bench/cold_start_child.py with `arguments` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, *interpreter_options, str(CHILD), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=work_dir,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )


def child_result(completed: subprocess.CompletedProcess[str], action: str) -> dict[str, Any]:
    """Return the result that a child printed after RESULT_MARKER.

    Raises RuntimeError naming `action` when the child failed or printed no result.
    """
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"{action} failed with exit code {completed.returncode}:\n{completed.stderr[-2000:]}"
        )
    return json.loads(lines[-1].removeprefix(RESULT_MARKER))


def require_bytecode(layer_dir: Path, build_dir: Path) -> None:
    """Raise RuntimeError unless the built layer has bytecode for the Python that runs the bench.

    Without it, the "as built" figures would measure compiling, as the
    "without bytecode" ones do.
    """
    source = layer_dir / "callflow" / "store.py"
    pyc = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
    if not pyc.is_file():
        raise RuntimeError(
            f"{pyc} is missing, so the layer in {build_dir} has no bytecode for {sys.executable}. "
            "Build it again with CALLFLOW_BUILD_TARGET=local and PYTHON set to this interpreter, "
            "as tools/local_stack.py deploy does."
        )


def check_response(variant: str, response: Any) -> None:
    """Raise RuntimeError unless the first invocation of `variant` succeeded."""
    if variant == "boto3":
        return
    if variant.startswith("authorizer"):
        effect = response["policyDocument"]["Statement"][0]["Effect"]
        if effect != "Allow":
            raise RuntimeError(f"{variant} returned a {effect} policy")
        return
    expected = 201 if variant == "storer" else 200
    if response["statusCode"] != expected:
        raise RuntimeError(f"{variant} returned status {response['statusCode']}: {response['body']}")


def module_import_costs(bench: ColdStartBench, runs: int) -> dict[str, float]:
    """Return the median milliseconds to import each of MEASURED_MODULES alone, layer as built."""
    costs = {}
    layer = str(bench.as_built_dir / "CommonLayer" / "python")
    # Outside Lambda the X-Ray SDK imports a centralised sampler at import, so
    # the import runs with Lambda's LAMBDA_TASK_ROOT, as the cold starts do.
    environment = bench.lambda_environment("storer", bench.as_built_dir / FUNCTION_DIRS["storer"])
    for module in MEASURED_MODULES:
        samples = []
        for _ in range(runs):
            completed = run_child(["module", module, layer], environment, bench.work_dir)
            samples.append(child_result(completed, f"importing {module}")["import_ms"])
        costs[module] = median(samples)
    return costs


def import_profile(bench: ColdStartBench, variant: str, top: int = 8) -> list[dict[str, Any]]:
    """Return the `top` imports of app.py by cumulative time (python -X importtime), layer as built."""
    arguments, environment = bench.handler_child(variant, bench.as_built_dir)
    completed = run_child(arguments, environment, bench.work_dir, ("-X", "importtime"))
    rows = []
    for line in completed.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2].rstrip()
        # -X importtime indents a module by two spaces per level of nesting. Level 0
        # is app.py and what a handler imports lazily while it runs (boto3, for
        # one). Level 1 is what those import themselves.
        level = (len(name) - len(name.lstrip()) - 1) // 2
        if level <= 1:
            rows.append({"module": name.strip(), "cumulative_ms": int(fields[1]) / 1000})
    rows.sort(key=lambda row: row["cumulative_ms"], reverse=True)
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=common.ROOT / ".aws-sam" / "bench",
                        help="the `sam build` output the stack was deployed from (default .aws-sam/bench)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help=f"fresh interpreters per variant (default {DEFAULT_RUNS})")
    common.results_argument(parser)
    args = parser.parse_args(argv)
    common.require_local_endpoint()

    with tempfile.TemporaryDirectory(prefix="callflow-cold-start-") as work:
        bench = ColdStartBench(args.build_dir.resolve(), Path(work))
        # The storer's first run stores the event the retriever's first request reads.
        bench.run("storer", bench.as_built_dir)

        variants = ("authorizer_jwks", "authorizer_secret", "storer", "retriever")
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in ("boto3", *variants)}
        no_bytecode: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for run in range(args.runs):
            samples["boto3"].append(bench.run("boto3"))
            for variant in variants:
                samples[variant].append(bench.run(variant, bench.as_built_dir))
                if run < NO_BYTECODE_RUNS:
                    no_bytecode[variant].append(bench.run(variant, bench.no_bytecode_dir))

        profiles = {variant: import_profile(bench, variant) for variant in variants}
        module_costs = module_import_costs(bench, NO_BYTECODE_RUNS)
        bench.jwks_server.shutdown()

    figures, extra = build_figures(samples, no_bytecode)
    extra["import_profiles"] = profiles
    extra["module_import_ms"] = module_costs
    print_figures("cold start against `import boto3`", figures)
    for module, cost in module_costs.items():
        print(f"    import {module:<40} alone, layer as built: {cost:7.1f} ms")
    write_figures(args.results, figures, extra)
    return 0


def build_figures(samples: dict[str, list[dict[str, Any]]],
                  no_bytecode: dict[str, list[dict[str, Any]]]) -> tuple[list[Figure], dict[str, Any]]:
    boto3_ms = median([sample["total_ms"] for sample in samples["boto3"]])
    goals = {
        "authorizer_jwks": AUTHORIZER_JWKS_GOAL,
        "authorizer_secret": None,
        "storer": FUNCTION_GOAL,
        "retriever": FUNCTION_GOAL,
    }
    figures = [figure("cold_import_boto3_ms", boto3_ms, "ms", "median time of `import boto3` in a fresh interpreter")]
    extra: dict[str, Any] = {"medians_ms": {"boto3": boto3_ms}}
    for variant, goal in goals.items():
        total = median([sample["total_ms"] for sample in samples[variant]])
        imported = median([sample["import_ms"] for sample in samples[variant]])
        without_bytecode_ms = median([sample["total_ms"] for sample in no_bytecode[variant]])
        comparison = AT_MOST if goal is not None else common.REPORT_ONLY
        figures.append(figure(
            f"cold_start_{variant}_vs_import_boto3", total / boto3_ms, "ratio",
            f"median cold start of {variant} (import with the layer as built, with its bytecode, "
            "plus first invocation) / median `import boto3`",
            goal=goal, comparison=comparison,
        ))
        figures.append(figure(
            f"cold_start_{variant}_without_bytecode_vs_import_boto3",
            without_bytecode_ms / boto3_ms, "ratio",
            f"as cold_start_{variant}_vs_import_boto3, "
            "with every __pycache__ of the layer and handler removed",
        ))
        figures.append(figure(f"cold_start_{variant}_ms", total, "ms",
                              f"median cold start of {variant}, layer as built, with its bytecode"))
        extra["medians_ms"][variant] = {
            "total": total, "import": imported, "without_bytecode_total": without_bytecode_ms,
        }
        extra.setdefault("modules", {})[variant] = samples[variant][-1]["modules"]

    jwks_modules = set(samples["authorizer_jwks"][-1]["modules"])
    unused = sorted(jwks_modules & {"boto3", "botocore.session", "botocore.client", "aws_xray_sdk",
                                    "aws_lambda_powertools.event_handler"})
    figures.append(figure(
        "authorizer_jwks_unused_heavy_imports", len(unused), "modules",
        "modules the JWKS-mode authorizer imports but never uses, among boto3, "
        f"botocore.session, botocore.client, aws_xray_sdk, Powertools' event_handler: {unused or 'none'}",
        goal=0, comparison=AT_MOST,
    ))
    return figures, extra


if __name__ == "__main__":
    sys.exit(main())
