"""Fixtures for the integration suite: a deployed stack, found through AWS_SAM_STACK_NAME.

The suite runs unchanged against the local emulator (`make test` deploys one)
and against a stack in an AWS account:

    AWS_SAM_STACK_NAME=callflow-dev .venv/bin/python -m pytest tests/integration

With AWS_ENDPOINT_URL set, the API is reached through the emulator's
execute-api path; otherwise through the stack's ApiBaseUrl output.
CALLFLOW_API_URL overrides both (for a custom domain).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import boto3
import pytest
import requests

from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER
from tools.mint_token import mint_token

READ = "events:read"
WRITE = "events:write"
REQUEST_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Stack:
    """The deployed stack under test."""

    name: str
    outputs: dict[str, str]
    base_url: str
    on_emulator: bool


@pytest.fixture(scope="session")
def stack() -> Stack:
    name = os.environ.get("AWS_SAM_STACK_NAME", "")
    if not name:
        pytest.fail(
            "AWS_SAM_STACK_NAME is not set: name the deployed stack to test, "
            "or run `make test-integration` to deploy one into a local emulator"
        )
    described = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])}

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if os.environ.get("CALLFLOW_API_URL"):
        base_url = os.environ["CALLFLOW_API_URL"].rstrip("/")
    elif endpoint:
        base_url = f"{endpoint.rstrip('/')}/_aws/execute-api/{outputs['ApiId']}/{outputs['StageName']}"
    else:
        base_url = outputs["ApiBaseUrl"].rstrip("/")
    return Stack(name=name, outputs=outputs, base_url=base_url, on_emulator=bool(endpoint))


@pytest.fixture(scope="session")
def signing_secret(stack: Stack) -> str:
    secret_id = stack.outputs["JwtSecretArn"]
    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


@pytest.fixture(scope="session")
def make_token(signing_secret: str) -> Callable[..., str]:
    """Return a function that mints a token for this stack with the given scopes."""

    def _make(*scopes: str, ttl: int = 900, subject: str = "integration-test", **claims: Any) -> str:
        return mint_token(
            secret=signing_secret,
            scopes=list(scopes),
            subject=subject,
            ttl=ttl,
            issuer=claims.pop("issuer", DEFAULT_JWT_ISSUER),
            audience=claims.pop("audience", DEFAULT_JWT_AUDIENCE),
        )

    return _make


class Api:
    """A thin HTTP client for the deployed API."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_SECONDS)
        return self.session.request(method, self.base_url + path, **kwargs)

    def post_events(self, body: Any) -> requests.Response:
        return self.request("POST", "/events", json=body)

    def get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        return self.request("GET", path, params=params)


@pytest.fixture(scope="session")
def api(stack: Stack, make_token: Callable[..., str]) -> Api:
    """A client whose token has both scopes."""
    return Api(stack.base_url, make_token(READ, WRITE))


@pytest.fixture(scope="session")
def anonymous(stack: Stack) -> Api:
    """A client that sends no Authorization header."""
    return Api(stack.base_url, None)


@pytest.fixture()
def run_id() -> str:
    """A suffix that keeps ids of this test unique across runs against one stack."""
    return uuid.uuid4().hex[:10]
