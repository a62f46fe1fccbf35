#!/usr/bin/env bash
# Run tests/integration against the real template deployed into an emulator of
# its own: a fresh state folder and another port than `make local`, so it
# neither disturbs nor depends on a stack that `make local` is serving.
# The emulator is stopped however the run ends.
#
# To run the same suite against a stack in AWS instead, skip this script:
#   AWS_SAM_STACK_NAME=callflow-dev .venv/bin/python -m pytest tests/integration
set -euo pipefail
cd "$(dirname "$0")/.."

port="${TEST_EMULATOR_PORT:-4599}"
state_dir="${TEST_EMULATOR_STATE_DIR:-.local/test-emulator}"
build_dir="${TEST_BUILD_DIR:-.aws-sam/test}"
stack_name="callflow-test"

rm -rf "$state_dir"
export AWS_ENDPOINT_URL="http://127.0.0.1:${port}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0
export AWS_SAM_STACK_NAME="$stack_name" CALLFLOW_STACK_NAME="$stack_name"
export CALLFLOW_TEST_EMULATOR_STATE_DIR="$state_dir"

stop_emulator() { .venv/bin/python tools/emulator.py stop --state-dir "$state_dir" || true; }
trap stop_emulator EXIT

.venv/bin/python tools/emulator.py start --port "$port" --state-dir "$state_dir"
.venv/bin/python tools/local_stack.py deploy --stack-name "$stack_name" --build-dir "$build_dir"
.venv/bin/python -m pytest tests/integration -q -p no:cacheprovider "$@"
