# Callflow Service: local emulator, build, deploy and tests.
#
#   make local    bring the service up on the local emulator (MiniStack, 127.0.0.1:4566)
#   make test     unit tests, then the integration suite against a fresh emulator of its own
#   make token SCOPES="events:read events:write"   print a token for the local stack
#   make url      print the local API base URL
#   make stop     stop the local emulator

SHELL := /bin/bash
PYTHON_BASE ?= python3
VENV := .venv
EMULATOR_VENV := .venv-emulator
PYTHON := $(VENV)/bin/python

EMULATOR_PORT ?= 4566
EMULATOR_STATE_DIR ?= .local/emulator
STACK_NAME ?= callflow-local
SCOPES ?= events:read events:write
# The variables to repeat in the next commands `make local` prints, when they
# differ from the defaults.
TARGET_VARIABLES = $(if $(filter-out 4566,$(EMULATOR_PORT)), EMULATOR_PORT=$(EMULATOR_PORT))$(if $(filter-out .local/emulator,$(EMULATOR_STATE_DIR)), EMULATOR_STATE_DIR=$(EMULATOR_STATE_DIR))$(if $(filter-out callflow-local,$(STACK_NAME)), STACK_NAME=$(STACK_NAME))

# The environment that points the AWS tools and the project's scripts at the
# emulator on port $(1), with MiniStack's test credentials.
emulator_aws_env = AWS_ENDPOINT_URL=http://127.0.0.1:$(1) \
	AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
	AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0

LOCAL_AWS_ENV = $(call emulator_aws_env,$(EMULATOR_PORT)) CALLFLOW_STACK_NAME=$(STACK_NAME)

.PHONY: venv local url token invoke stop status test test-unit test-integration wheel-tags validate clean

venv: $(VENV)/.installed $(EMULATOR_VENV)/.installed

$(VENV)/.installed: requirements-dev.txt layers/common/requirements.txt
	test -x $(PYTHON) || $(PYTHON_BASE) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(EMULATOR_VENV)/.installed: requirements-emulator.txt
	test -x $(EMULATOR_VENV)/bin/python || $(PYTHON_BASE) -m venv $(EMULATOR_VENV)
	$(EMULATOR_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-emulator.txt
	touch $@

local: venv
	$(PYTHON) tools/emulator.py start --port $(EMULATOR_PORT) --state-dir $(EMULATOR_STATE_DIR)
	$(LOCAL_AWS_ENV) $(PYTHON) tools/local_stack.py deploy --stack-name $(STACK_NAME)
	@echo
	@echo "API base URL: $$($(LOCAL_AWS_ENV) $(PYTHON) tools/local_stack.py url --stack-name $(STACK_NAME))"
	@echo "Get a token:  make token$(TARGET_VARIABLES) SCOPES=\"events:read events:write\""
	@echo "Stop:         make stop$(TARGET_VARIABLES)"

url: venv
	@$(LOCAL_AWS_ENV) $(PYTHON) tools/local_stack.py url --stack-name $(STACK_NAME)

token: venv
	@$(LOCAL_AWS_ENV) $(PYTHON) tools/mint_token.py --stack-name $(STACK_NAME) --scopes "$(SCOPES)"

# Invoke a deployed function with a fixture, without Docker:
#   make invoke FUNCTION=retriever EVENT=events/health.json
invoke: venv
	@$(LOCAL_AWS_ENV) $(PYTHON) tools/invoke_function.py $(FUNCTION) $(EVENT) --stack-name $(STACK_NAME)

stop:
	@$(PYTHON_BASE) tools/emulator.py stop --state-dir $(EMULATOR_STATE_DIR)

status:
	@$(PYTHON_BASE) tools/emulator.py status --port $(EMULATOR_PORT) --state-dir $(EMULATOR_STATE_DIR)

test: venv
	$(MAKE) test-unit
	$(MAKE) test-integration

test-unit: venv
	$(PYTHON) -m pytest tests/unit tests/build -q

# Builds the layer for AWS (python3.13, arm64) and for the local emulator (this
# machine's Python) with `sam build`, and prints the wheel tags of each build.
wheel-tags: venv
	SAM_CLI_TELEMETRY=0 PYTHON=$(abspath $(PYTHON)) $(VENV)/bin/sam build
	$(PYTHON) tools/wheel_tags.py .aws-sam/build/CommonLayer --target aws
	SAM_CLI_TELEMETRY=0 CALLFLOW_BUILD_TARGET=local PYTHON=$(abspath $(PYTHON)) \
		$(VENV)/bin/sam build --config-env local
	$(PYTHON) tools/wheel_tags.py .aws-sam/local/CommonLayer --target local

# Starts an emulator of its own (another port, another state folder), deploys,
# runs tests/integration, and stops the emulator whatever the outcome.
test-integration: venv
	bash tools/run_integration.sh

# Posts 2,000 events from 8 concurrent clients into a fresh emulator of its own
# and checks that none is lost or stored twice (bench/concurrency.py). The
# emulator is stopped whatever the outcome. CONCURRENCY_ARGS passes options on,
# for example CONCURRENCY_ARGS="--events 500 --json".
CONCURRENCY_PORT ?= 4596
CONCURRENCY_STATE_DIR ?= .local/concurrency-emulator
CONCURRENCY_STACK_NAME := callflow-concurrency
CONCURRENCY_ARGS ?=
CONCURRENCY_AWS_ENV = $(call emulator_aws_env,$(CONCURRENCY_PORT)) \
	AWS_SAM_STACK_NAME=$(CONCURRENCY_STACK_NAME)

.PHONY: concurrency
concurrency: venv
	rm -rf $(CONCURRENCY_STATE_DIR)
	trap '$(PYTHON) tools/emulator.py stop --state-dir $(CONCURRENCY_STATE_DIR)' EXIT; \
	$(PYTHON) tools/emulator.py start --port $(CONCURRENCY_PORT) --state-dir $(CONCURRENCY_STATE_DIR) && \
	$(CONCURRENCY_AWS_ENV) $(PYTHON) tools/local_stack.py deploy \
		--stack-name $(CONCURRENCY_STACK_NAME) --build-dir .aws-sam/concurrency && \
	$(CONCURRENCY_AWS_ENV) $(PYTHON) bench/concurrency.py $(CONCURRENCY_ARGS)

# Measures the figures of docs/benchmarks.md (bench/run_all.py) against an
# emulator of its own on BENCH_PORT, with its state in BENCH_STATE_DIR emptied
# first and the emulator stopped however the run ends. Prints every figure and
# writes bench-results.json.
BENCH_PORT ?= 4595
BENCH_STATE_DIR ?= .local/bench-emulator
.PHONY: bench
bench: venv
	$(PYTHON) bench/run_all.py --port $(BENCH_PORT) --state-dir $(BENCH_STATE_DIR)

validate: venv
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml

# Runs checkov's CloudFormation checks over template.yaml and fails on any
# failed check. Each skip is a Metadata entry on its resource with the reason;
# docs/security.md lists them. --skip-download keeps checkov offline.
.PHONY: checkov
checkov: venv
	$(VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --skip-download

clean:
	rm -rf .aws-sam .local/test-emulator .local/fuzz-emulator .local/concurrency-emulator \
		.local/bench-emulator

# Fuzzes the API with schemathesis (tools/fuzz.py) on an emulator of its own,
# with fresh state, and stops the emulator whatever the outcome. MAX_EXAMPLES
# is the number of generated cases per operation in the fuzzing phase.
FUZZ_PORT ?= 4597
FUZZ_STATE_DIR ?= .local/fuzz-emulator
FUZZ_STACK_NAME ?= callflow-fuzz
MAX_EXAMPLES ?= 1000

.PHONY: fuzz
fuzz: venv
	@set -euo pipefail; \
	export $(call emulator_aws_env,$(FUZZ_PORT)) CALLFLOW_STACK_NAME=$(FUZZ_STACK_NAME); \
	rm -rf $(FUZZ_STATE_DIR); \
	trap '$(PYTHON) tools/emulator.py stop --state-dir $(FUZZ_STATE_DIR)' EXIT; \
	$(PYTHON) tools/emulator.py start --port $(FUZZ_PORT) --state-dir $(FUZZ_STATE_DIR); \
	$(PYTHON) tools/local_stack.py deploy --stack-name $(FUZZ_STACK_NAME) --build-dir .aws-sam/fuzz; \
	$(PYTHON) tools/fuzz.py --stack-name $(FUZZ_STACK_NAME) --max-examples $(MAX_EXAMPLES) \
		--report-dir $(FUZZ_STATE_DIR)/report
