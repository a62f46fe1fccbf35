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

LOCAL_AWS_ENV = AWS_ENDPOINT_URL=http://127.0.0.1:$(EMULATOR_PORT) \
	AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
	AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0 CALLFLOW_STACK_NAME=$(STACK_NAME)

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
	@echo "Get a token:  make token SCOPES=\"events:read events:write\""
	@echo "Stop:         make stop"

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

validate: venv
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml

clean:
	rm -rf .aws-sam .local/test-emulator
