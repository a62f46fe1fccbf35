"""Invoke a deployed function's live alias with an event fixture, without Docker.

    python tools/invoke_function.py retriever events/health.json

This is the Docker-free counterpart of `sam local invoke`: the function runs
in the emulator (AWS_ENDPOINT_URL) or in AWS, with the same fixture files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

FUNCTION_OUTPUTS = {
    "authorizer": "AuthorizerFunctionName",
    "storer": "StorerFunctionName",
    "retriever": "RetrieverFunctionName",
}
ALIAS = "live"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", choices=sorted(FUNCTION_OUTPUTS))
    parser.add_argument("event", type=Path, help="an event fixture, for example events/health.json")
    parser.add_argument("--stack-name", default=os.environ.get("CALLFLOW_STACK_NAME", "callflow-local"))
    args = parser.parse_args(argv)

    import boto3

    # The tools folder is on sys.path when this file runs as a script.
    from local_stack import stack_outputs

    try:
        payload = args.event.read_bytes()
        json.loads(payload)
    except (OSError, ValueError) as error:
        print(
            f"error: reading the event fixture {args.event} as JSON failed ({error}). "
            "Pass a JSON file such as events/health.json.",
            file=sys.stderr,
        )
        return 1
    outputs = stack_outputs(args.stack_name)
    function_name = f"{outputs[FUNCTION_OUTPUTS[args.function]]}:{ALIAS}"
    reply = boto3.client("lambda").invoke(FunctionName=function_name, Payload=payload)
    result = reply["Payload"].read().decode()
    print(result)
    if reply.get("FunctionError"):
        print(f"error: {function_name} raised {reply['FunctionError']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
