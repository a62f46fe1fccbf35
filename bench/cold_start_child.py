"""One cold start, run by bench/cold_start.py in a fresh interpreter.

    python cold_start_child.py boto3
    python cold_start_child.py handler FUNCTION_DIR LAYER_DIR EVENT_FILE
    python cold_start_child.py module MODULE LAYER_DIR

Only sys, time, os and json are imported before the timer starts, because the
Lambda runtime has them loaded before it imports a handler. The last line of
stdout is the result, after the marker COLD_START_RESULT. The handler's own
log lines come before it.
"""

import json
import os
import sys
import time

RESULT_MARKER = "COLD_START_RESULT "
WATCHED_MODULES = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "aws_xray_sdk",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.tracing",
    "cryptography",
    "jwt",
)


class Context:
    """The attributes of the Lambda context object that the handlers read.

    It repeats common.LambdaContext, because importing bench/common.py would
    load modules that the timed import of a handler then finds already loaded.
    """

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "cold-start")
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:cold-start"
    aws_request_id = "00000000-0000-4000-8000-000000000001"
    log_group_name = "/aws/lambda/cold-start"
    log_stream_name = "cold-start"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    started = time.perf_counter()
    mode = sys.argv[1]
    response: object = None
    if mode == "boto3":
        import boto3  # noqa: F401

        imported = invoked = time.perf_counter()
    elif mode == "module":
        module, layer_dir = sys.argv[2:4]
        sys.path[:0] = [layer_dir]
        __import__(module)
        imported = invoked = time.perf_counter()
    else:
        function_dir, layer_dir, event_file = sys.argv[2:5]
        sys.path[:0] = [function_dir, layer_dir]
        import app

        imported = time.perf_counter()
        with open(event_file) as stream:
            event = json.load(stream)
        response = app.lambda_handler(event, Context())
        invoked = time.perf_counter()

    result = {
        "import_ms": (imported - started) * 1000,
        "first_invocation_ms": (invoked - imported) * 1000,
        "total_ms": (invoked - started) * 1000,
        "modules": sorted(name for name in WATCHED_MODULES if name in sys.modules),
        "module_count": len(sys.modules),
        "response": response,
    }
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)


main()
