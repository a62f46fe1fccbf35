"""The TOKEN authorizer handler (functions/authorizer/app.py), with events/authorizer-token.json."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws

from callflow import auth, secrets
from callflow.auth import SCOPE_READ, SCOPE_WRITE
from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER, get_settings
from tests.support import ROOT, load_fixture, load_handler
from tools.mint_token import mint_token

SECRET = "handler-test-signing-key-0123456789abcdefghijklmnopqrstuvwxyz"
REGION = "us-east-1"
CONTEXT = SimpleNamespace(
    aws_request_id="5f0c1a2b-0000-4000-8000-000000000001",
    function_name="callflow-authorizer-test",
)
API_PREFIX = "arn:aws:execute-api:us-east-1:000000000000:abc123"


@pytest.fixture
def secret_arn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Store SECRET in a moto Secrets Manager and point the authorizer at it."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    secrets.clear_cache()
    auth.clear_caches()

    with mock_aws():
        created = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="callflow/test/jwt-signing-key", SecretString=SECRET
        )
        monkeypatch.setenv("JWT_SECRET_ARN", created["ARN"])
        monkeypatch.setenv("JWKS_URL", "")
        monkeypatch.delenv("JWT_ISSUER", raising=False)
        monkeypatch.delenv("JWT_AUDIENCE", raising=False)
        get_settings.cache_clear()
        yield created["ARN"]

    get_settings.cache_clear()
    secrets.clear_cache()


@pytest.fixture
def handler(secret_arn: str) -> ModuleType:
    return load_handler("authorizer")


@pytest.fixture
def log_output(handler: ModuleType) -> Iterator[io.StringIO]:
    """Collect the handler's JSON log lines.

    Powertools reuses one logging handler per service name, bound to the
    stdout of the first test that loaded the module, so capsys would miss them.
    """
    stream = io.StringIO()
    previous = handler.logger.registered_handler.setStream(stream)
    yield stream
    handler.logger.registered_handler.setStream(previous)


def token_for(*scopes: str, ttl: int = 600, subject: str = "client-7", **overrides: Any) -> str:
    return mint_token(
        secret=overrides.pop("secret", SECRET),
        scopes=list(scopes),
        subject=subject,
        ttl=ttl,
        issuer=overrides.pop("issuer", DEFAULT_JWT_ISSUER),
        audience=overrides.pop("audience", DEFAULT_JWT_AUDIENCE),
    )


def authorizer_event(authorization: str | None, method_arn: str | None = None) -> dict[str, Any]:
    """Return the fixture event with its (expired) token replaced."""
    event = load_fixture("authorizer-token.json")
    if authorization is None:
        del event["authorizationToken"]
    else:
        event["authorizationToken"] = authorization
    if method_arn is not None:
        event["methodArn"] = method_arn
    return event


def log_lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_fixture_has_token_authorizer_shape() -> None:
    event = load_fixture("authorizer-token.json")

    assert set(event) == {"type", "authorizationToken", "methodArn"}
    assert event["type"] == "TOKEN"
    assert event["authorizationToken"].startswith("Bearer ")
    assert event["methodArn"] == f"{API_PREFIX}/local/POST/events"


def test_valid_token_returns_policy(handler: ModuleType) -> None:
    result = handler.lambda_handler(authorizer_event(f"Bearer {token_for(SCOPE_WRITE)}"), CONTEXT)

    statement = result["policyDocument"]["Statement"][0]
    assert result["principalId"] == "client-7"
    assert statement["Effect"] == "Allow"
    assert f"{API_PREFIX}/local/POST/events" in statement["Resource"]
    assert result["context"] == {"scopes": SCOPE_WRITE, "tokenType": "Bearer"}


def test_fixture_token_is_rejected_unchanged(handler: ModuleType, log_output: io.StringIO) -> None:
    with pytest.raises(Exception, match="^Unauthorized$"):
        handler.lambda_handler(load_fixture("authorizer-token.json"), CONTEXT)

    assert log_lines(log_output.getvalue())[-1]["failureReason"] == "INVALID_SIGNATURE"


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        pytest.param(None, "TOKEN_MISSING", id="missing"),
        pytest.param("Basic dXNlcjpwYXNzd29yZA==", "INVALID_SCHEME", id="basic"),
        pytest.param("Bearer not-a-jwt", "TOKEN_MALFORMED", id="garbage"),
        pytest.param(f"Bearer {token_for(SCOPE_READ, ttl=-3600)}", "TOKEN_EXPIRED", id="expired"),
        pytest.param(
            f"Bearer {token_for(SCOPE_READ, secret='another-key-0123456789abcdefghijklmnop')}",
            "INVALID_SIGNATURE",
            id="wrong_key",
        ),
        pytest.param(
            f"Bearer {token_for(SCOPE_READ, audience='another-api')}",
            "INVALID_AUDIENCE",
            id="wrong_audience",
        ),
    ],
)
def test_rejected_token_raises_unauthorized(
    handler: ModuleType,
    log_output: io.StringIO,
    authorization: str | None,
    reason: str,
) -> None:
    with pytest.raises(Exception) as caught:
        handler.lambda_handler(authorizer_event(authorization), CONTEXT)

    assert type(caught.value) is Exception
    assert str(caught.value) == "Unauthorized"
    line = log_lines(log_output.getvalue())[-1]
    assert line["message"] == "Authorization failed"
    assert line["level"] == "WARNING"
    assert line["authResult"] == "DENY"
    assert line["failureReason"] == reason
    assert line["tokenType"] == "Bearer"
    assert isinstance(line["authLatencyMs"], (int, float))
    assert line["requestId"] == CONTEXT.aws_request_id
    assert line["functionName"] == CONTEXT.function_name


def test_failure_log_has_no_token_or_secret(
    handler: ModuleType, log_output: io.StringIO
) -> None:
    token = token_for(SCOPE_READ, ttl=-3600, subject="subject-that-must-not-be-logged")

    with pytest.raises(Exception, match="^Unauthorized$"):
        handler.lambda_handler(authorizer_event(f"Bearer {token}"), CONTEXT)

    output = log_output.getvalue()
    assert token not in output
    assert token.split(".")[2] not in output
    assert SECRET not in output
    assert "subject-that-must-not-be-logged" not in output


def test_success_log_line(handler: ModuleType, log_output: io.StringIO) -> None:
    token = token_for(SCOPE_READ, SCOPE_WRITE)

    handler.lambda_handler(authorizer_event(f"Bearer {token}"), CONTEXT)

    output = log_output.getvalue()
    lines = log_lines(output)
    assert [line["message"] for line in lines] == ["Authorization succeeded"]
    assert lines[0]["authResult"] == "ALLOW"
    assert lines[0]["principalId"] == "client-7"
    assert lines[0]["tokenType"] == "Bearer"
    assert lines[0]["scopes"] == "events:read events:write"
    assert isinstance(lines[0]["authLatencyMs"], (int, float))
    assert token not in output
    assert SECRET not in output


def test_read_token_on_post_logs_insufficient_scope(
    handler: ModuleType, log_output: io.StringIO
) -> None:
    result = handler.lambda_handler(authorizer_event(f"Bearer {token_for(SCOPE_READ)}"), CONTEXT)

    lines = log_lines(log_output.getvalue())
    assert [line["authResult"] for line in lines] == ["ALLOW", "DENY"]
    assert lines[1]["failureReason"] == "INSUFFICIENT_SCOPE"
    assert lines[1]["principalId"] == "client-7"
    resources = result["policyDocument"]["Statement"][0]["Resource"]
    assert f"{API_PREFIX}/local/GET/events" in resources
    assert f"{API_PREFIX}/local/POST/events" not in resources


def test_token_without_scopes_gets_deny_policy(handler: ModuleType) -> None:
    result = handler.lambda_handler(authorizer_event(f"Bearer {token_for()}"), CONTEXT)

    statement = result["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Resource"] == f"{API_PREFIX}/*"


def test_secret_is_read_once_per_environment(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    read_secret = secrets._read_secret_string

    def counting_read(secret_id: str) -> str:
        reads.append(secret_id)
        return read_secret(secret_id)

    monkeypatch.setattr(secrets, "_read_secret_string", counting_read)

    for _ in range(3):
        handler.lambda_handler(authorizer_event(f"Bearer {token_for(SCOPE_READ)}"), CONTEXT)

    assert len(reads) == 1


# ---------------------------------------------------------------- cold start

IMPORT_CHECK = """
import json, sys
from tests.support import load_handler
handler = load_handler("authorizer")
imported_on_load = "boto3" in sys.modules
event = {"type": "TOKEN", "authorizationToken": sys.argv[1], "methodArn": sys.argv[2]}
context = type("Context", (), {"aws_request_id": "r-1", "function_name": "f"})()
result = handler.lambda_handler(event, context)
print(json.dumps({
    "imported_on_load": imported_on_load,
    "imported_after_call": "boto3" in sys.modules,
    "effect": result["policyDocument"]["Statement"][0]["Effect"],
}))
"""


def serve_jwks(body: dict[str, Any]) -> ThreadingHTTPServer:
    payload = json.dumps(body).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_jwks_mode_never_imports_boto3() -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update(kid="k1", alg="RS256", use="sig")
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": DEFAULT_JWT_ISSUER,
            "aud": DEFAULT_JWT_AUDIENCE,
            "sub": "client-7",
            "scope": SCOPE_READ,
            "exp": now + 600,
        },
        private_key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )

    server = serve_jwks({"keys": [jwk]})
    try:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AWS_", "JWT_", "JWKS_"))
        }
        env.update(
            PYTHONPATH=os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)]),
            JWKS_URL=f"http://127.0.0.1:{server.server_address[1]}/jwks.json",
            JWT_SECRET_ARN="",
        )
        completed = subprocess.run(
            [sys.executable, "-c", IMPORT_CHECK, f"Bearer {token}", f"{API_PREFIX}/v1/GET/health"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["effect"] == "Allow"
    assert result["imported_on_load"] is False
    assert result["imported_after_call"] is False


def test_failure_is_counted_in_total_and_by_reason(
    handler: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = token_for("events:read", ttl=-600)

    with pytest.raises(Exception, match="^Unauthorized$"):
        handler.lambda_handler(authorizer_event(f"Bearer {expired}"), CONTEXT)

    metric_lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    dimension_sets = [line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] for line in metric_lines]
    assert [line["AuthorizationFailures"] for line in metric_lines] == [[1.0], [1.0]]
    assert sorted(dimension_sets, key=len) == [
        ["service", "environment"],
        ["service", "environment", "failureReason"],
    ]
    assert metric_lines[1]["failureReason"] == "TOKEN_EXPIRED"
