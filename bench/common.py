"""Shared helpers of the benchmark scripts: the deployed stack, figures, statistics.

Every script in bench/ measures against a local emulator on 127.0.0.1 whose
endpoint is AWS_ENDPOINT_URL, with the stack named by CALLFLOW_STACK_NAME
deployed in it (`bench/run_all.py` sets both up). Each script prints its
figures and, with --results FILE, writes them as JSON for run_all.py to merge.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

    from latency_proxy import LatencyProxy

ROOT = Path(__file__).resolve().parent.parent
LAYER_DIR = ROOT / "layers" / "common"
FUNCTIONS_DIR = ROOT / "functions"
EVENTS_DIR = ROOT / "events"

for path in (str(ROOT), str(LAYER_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

DEFAULT_STACK_NAME = "callflow-bench"
LOOPBACK_PREFIX = "http://127.0.0.1:"
# The delay bench/latency_proxy.py adds to each S3 request in the "modelled
# latency" settings of the storer and retriever benchmarks.
MODELLED_LATENCY_SECONDS = 0.010

# Goal comparisons: the measured value must be at most, or at least, the goal.
AT_MOST = "at_most"
AT_LEAST = "at_least"
REPORT_ONLY = "report"


@dataclass(frozen=True)
class Figure:
    """One measured figure, in the form bench-results.json records it.

    goal_met is None for a figure that is reported without a goal.
    """

    name: str
    value: float
    unit: str
    goal: float | None
    comparison: str
    goal_met: bool | None
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def figure(
    name: str,
    value: float,
    unit: str,
    description: str,
    *,
    goal: float | None = None,
    comparison: str = REPORT_ONLY,
) -> Figure:
    """Build a Figure and decide goal_met from the goal and the comparison."""
    goal_met: bool | None = None
    if goal is not None and comparison == AT_MOST:
        goal_met = value <= goal
    elif goal is not None and comparison == AT_LEAST:
        goal_met = value >= goal
    return Figure(name, round(value, 4), unit, goal, comparison, goal_met, description)


def print_figures(title: str, figures: Sequence[Figure]) -> None:
    """Print figures as an aligned table under `title`."""
    print(f"\n== {title}")
    for item in figures:
        if item.goal is None:
            verdict = "reported"
        else:
            sign = "<=" if item.comparison == AT_MOST else ">="
            verdict = f"goal {sign} {item.goal:g}: {'met' if item.goal_met else 'NOT MET'}"
        value = f"{item.value:,.0f}" if float(item.value).is_integer() else f"{item.value:.4g}"
        print(f"  {item.name:<62} {value:>12} {item.unit:<14} {verdict}")
    sys.stdout.flush()


def write_figures(path: Path | None, figures: Sequence[Figure], extra: dict[str, Any] | None = None) -> None:
    """Write figures (and optional extra measurements) as JSON to `path`, when given."""
    if path is None:
        return
    document = {"figures": [item.to_dict() for item in figures], "extra": extra or {}}
    path.write_text(json.dumps(document, indent=2) + "\n")


def results_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="write the figures as JSON to this file (bench/run_all.py merges them)",
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `values`, `fraction` from 0 to 1."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def require_local_endpoint() -> str:
    """Return AWS_ENDPOINT_URL, or exit unless it points at an emulator on 127.0.0.1."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint.startswith(LOOPBACK_PREFIX):
        raise SystemExit(
            f"error: AWS_ENDPOINT_URL is {endpoint!r}, but the benchmarks run only against a local "
            "emulator at http://127.0.0.1:PORT. Run them through `make bench`."
        )
    return endpoint


def stack_name() -> str:
    return os.environ.get("CALLFLOW_STACK_NAME", DEFAULT_STACK_NAME)


def stack_outputs() -> dict[str, str]:
    """Return the Outputs of the benchmark stack as a name -> value mapping."""
    import boto3

    stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name())["Stacks"]
    return {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}


def function_environment(function_name: str) -> dict[str, str]:
    """Return the environment variables the stack gives a deployed function, except AWS_* ones.

    The AWS_* variables are left out so that a process that applies the rest
    keeps the emulator endpoint, credentials and region it was given.
    """
    import boto3

    configuration = boto3.client("lambda").get_function_configuration(FunctionName=function_name)
    variables = configuration.get("Environment", {}).get("Variables", {})
    return {name: value for name, value in variables.items() if not name.startswith("AWS_")}


def apply_function_environment(function_name: str) -> dict[str, str]:
    """Copy function_environment(function_name) into os.environ and return it."""
    environment = function_environment(function_name)
    os.environ.update(environment)
    return environment


def api_base_url(outputs: dict[str, str]) -> str:
    """Return the URL the emulator serves the API stage at."""
    endpoint = require_local_endpoint().rstrip("/")
    return f"{endpoint}/_aws/execute-api/{outputs['ApiId']}/{outputs['StageName']}"


def api_session(token: str) -> requests.Session:
    """Return a requests.Session that sends `token` as its bearer token."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def mint_stack_token(outputs: dict[str, str], scopes: str = "events:read events:write") -> str:
    """Mint an HS256 token with the stack's generated signing secret."""
    import boto3

    from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER
    from tools.mint_token import mint_token

    secret = boto3.client("secretsmanager").get_secret_value(SecretId=outputs["JwtSecretArn"])
    return mint_token(
        secret["SecretString"],
        scopes,
        subject="callflow-bench",
        ttl=3600,
        issuer=DEFAULT_JWT_ISSUER,
        audience=DEFAULT_JWT_AUDIENCE,
    )


class DiscardingStream(io.TextIOBase):
    """A text stream that counts and drops what is written, so log lines cost formatting but no terminal."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes_written = 0

    def write(self, text: str) -> int:
        self.bytes_written += len(text.encode("utf-8"))
        return len(text)


def silence_function_logs() -> DiscardingStream:
    """Send the JSON log lines of in-process handlers to a DiscardingStream and return it.

    The lines are still built and formatted, as in Lambda, where they go to a
    pipe instead of a terminal.
    """
    sink = DiscardingStream()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
    return sink


class LambdaContext:
    """The attributes of the Lambda context object that the handlers read."""

    def __init__(self, function_name: str, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.aws_request_id = "00000000-0000-4000-8000-000000000000"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py as the module `<function>_app`."""
    path = FUNCTIONS_DIR / function / "app.py"
    name = f"{function}_app"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_fixture(name: str) -> dict[str, Any]:
    """Read one API Gateway event from events/."""
    return json.loads((EVENTS_DIR / name).read_text())


@contextlib.contextmanager
def s3_endpoint(url: str) -> Iterator[None]:
    """Point the S3 clients created inside the block at `url` (AWS_ENDPOINT_URL)."""
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous


def handler_s3_client(url: str) -> Any:
    """Return a new S3 client of the kind the handlers use (callflow.store.make_s3_client), at `url`."""
    from callflow.store import make_s3_client

    with s3_endpoint(url):
        return make_s3_client.__wrapped__()


def boto3_s3_client(url: str) -> Any:
    """Return a new boto3 S3 client with the handlers' botocore settings, at `url`."""
    from callflow.store import make_boto3_s3_client

    with s3_endpoint(url):
        return make_boto3_s3_client()


def emulator_port() -> int:
    """Return the port of the emulator that AWS_ENDPOINT_URL names."""
    return int(require_local_endpoint().rstrip("/").rsplit(":", 1)[1])


def modelled_latency_proxy() -> LatencyProxy:
    """Return a proxy to the emulator that delays each request by MODELLED_LATENCY_SECONDS."""
    from latency_proxy import LatencyProxy

    return LatencyProxy("127.0.0.1", emulator_port(), delay=MODELLED_LATENCY_SECONDS)
