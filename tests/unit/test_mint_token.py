"""The token tool (tools/mint_token.py): tokens it signs and its errors."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import jwt
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from callflow import secrets
from callflow.auth import SCOPE_READ, SCOPE_WRITE, FailureReason, verify_token
from callflow.errors import AuthError
from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER, Settings, get_settings
from tests.support import ROOT
from tools import mint_token as tool
from tools.mint_token import mint_token

SECRET = "mint-test-signing-key-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:callflow/test/jwt-AbCdEf"
REGION = "us-east-1"


def make_settings(secret_arn: str) -> Settings:
    return Settings(
        environment="test",
        events_bucket="",
        time_index_shards=16,
        max_event_bytes=64 * 1024,
        max_request_bytes=1024 * 1024,
        jwt_secret_arn=secret_arn,
        jwks_url="",
        jwt_issuer=DEFAULT_JWT_ISSUER,
        jwt_audience=DEFAULT_JWT_AUDIENCE,
        pagination_secret_arn="",
    )


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings in secret mode, with Secrets Manager replaced by SECRET."""
    monkeypatch.setattr(secrets, "get_secret_value", lambda secret_id, **_: SECRET)
    return make_settings(SECRET_ARN)


def mint(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "secret": SECRET,
        "scopes": f"{SCOPE_READ} {SCOPE_WRITE}",
        "subject": "developer-1",
        "ttl": 600,
        "issuer": DEFAULT_JWT_ISSUER,
        "audience": DEFAULT_JWT_AUDIENCE,
    }
    arguments.update(overrides)
    return mint_token(**arguments)


def test_minted_token_verifies(settings: Settings) -> None:
    principal = verify_token(f"Bearer {mint()}", settings=settings)

    assert principal.principal_id == "developer-1"
    assert principal.scopes == {SCOPE_READ, SCOPE_WRITE}


def test_scopes_accept_a_list(settings: Settings) -> None:
    principal = verify_token(f"Bearer {mint(scopes=[SCOPE_READ])}", settings=settings)

    assert principal.scopes == {SCOPE_READ}


def test_claims_follow_now_and_ttl() -> None:
    token = mint(ttl=900, now=1_767_225_600)

    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)

    assert header["alg"] == "HS256"
    assert claims["iat"] == 1_767_225_600
    assert claims["nbf"] == 1_767_225_600
    assert claims["exp"] == 1_767_225_600 + 900
    assert claims["iss"] == DEFAULT_JWT_ISSUER
    assert claims["aud"] == DEFAULT_JWT_AUDIENCE
    assert claims["scope"] == f"{SCOPE_READ} {SCOPE_WRITE}"


def test_negative_ttl_gives_expired_token(settings: Settings) -> None:
    with pytest.raises(AuthError) as caught:
        verify_token(f"Bearer {mint(ttl=-120)}", settings=settings)

    assert caught.value.reason == FailureReason.TOKEN_EXPIRED


def test_other_audience_is_rejected(settings: Settings) -> None:
    with pytest.raises(AuthError) as caught:
        verify_token(f"Bearer {mint(audience='another-api')}", settings=settings)

    assert caught.value.reason == FailureReason.INVALID_AUDIENCE


def test_tokens_differ_by_jti() -> None:
    assert mint(now=1_767_225_600) != mint(now=1_767_225_600)


# ---------------------------------------------------------------- command line


@dataclass
class FakeCloudFormation:
    """A CloudFormation client whose describe_stacks reads a dict of stacks."""

    stacks: dict[str, list[dict[str, str]]]
    requested: list[str]

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.requested.append(StackName)
        if StackName not in self.stacks:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationError",
                        "Message": f"Stack with id {StackName} does not exist",
                    }
                },
                "DescribeStacks",
            )
        return {"Stacks": [{"StackName": StackName, "Outputs": self.stacks[StackName]}]}


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> FakeCloudFormation:
    fake = FakeCloudFormation(stacks={}, requested=[])
    monkeypatch.setattr(tool, "_cloudformation_client", lambda: fake)
    monkeypatch.delenv(tool.STACK_NAME_ENV, raising=False)
    return fake


@pytest.fixture
def stored_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Store SECRET in a moto Secrets Manager and return its ARN."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    secrets.clear_cache()
    with mock_aws():
        created = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="callflow/local/jwt-signing-key", SecretString=SECRET
        )
        yield created["ARN"]
    secrets.clear_cache()


def test_cli_prints_verifiable_token(
    cloudformation: FakeCloudFormation, stored_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation.stacks["callflow-local"] = [
        {"OutputKey": "ApiId", "OutputValue": "abc123"},
        {"OutputKey": "JwtSecretArn", "OutputValue": stored_secret},
    ]

    exit_code = tool.main(["--scopes", SCOPE_READ, "--subject", "cli-user", "--ttl", "120"])

    captured = capsys.readouterr()
    assert exit_code == 0
    assert captured.err == ""
    token = captured.out.strip()
    principal = verify_token(f"Bearer {token}", settings=make_settings(stored_secret))
    assert principal.principal_id == "cli-user"
    assert principal.scopes == {SCOPE_READ}
    assert jwt.decode(token, options={"verify_signature": False})["exp"] <= time.time() + 120


def test_cli_stack_name_defaults_from_environment(
    cloudformation: FakeCloudFormation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tool.STACK_NAME_ENV, "callflow-dev")

    tool.main([])

    assert cloudformation.requested == ["callflow-dev"]


def test_cli_missing_stack_fails_clearly(
    cloudformation: FakeCloudFormation, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = tool.main(["--stack-name", "callflow-missing"])

    captured = capsys.readouterr()
    assert exit_code == 1
    assert captured.out == ""
    assert "'callflow-missing' was not found" in captured.err
    assert "make local" in captured.err
    assert "sam deploy --stack-name callflow-missing" in captured.err


def test_cli_without_emulator_suggests_starting_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Unreachable:
        def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/")

    monkeypatch.setattr(tool, "_cloudformation_client", lambda: Unreachable())
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")

    exit_code = tool.main(["--stack-name", "callflow-local"])

    captured = capsys.readouterr()
    assert exit_code == 1
    expected = "No emulator answers at http://127.0.0.1:4566: start it with `make local`."
    assert expected in captured.err


def test_cli_missing_output_fails_clearly(
    cloudformation: FakeCloudFormation, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation.stacks["callflow-local"] = [{"OutputKey": "ApiId", "OutputValue": "abc123"}]

    exit_code = tool.main([])

    captured = capsys.readouterr()
    assert exit_code == 1
    assert captured.out == ""
    assert "has no output JwtSecretArn" in captured.err


def test_cli_missing_secret_fails_clearly(
    cloudformation: FakeCloudFormation, stored_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation.stacks["callflow-local"] = [
        {"OutputKey": "JwtSecretArn", "OutputValue": stored_secret + "-deleted"}
    ]

    exit_code = tool.main([])

    captured = capsys.readouterr()
    assert exit_code == 1
    assert captured.out == ""
    assert "ResourceNotFoundException" in captured.err


@pytest.mark.parametrize("ttl", ["0", "-5", "soon"])
def test_cli_rejects_non_positive_ttl(
    cloudformation: FakeCloudFormation, capsys: pytest.CaptureFixture[str], ttl: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        tool.main(["--ttl", ttl])

    assert caught.value.code == 2
    assert "--ttl" in capsys.readouterr().err
    assert cloudformation.requested == []


def test_cli_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_ISSUER", "issuer-from-env")
    get_settings.cache_clear()
    try:
        arguments = tool.build_parser().parse_args([])
    finally:
        monkeypatch.delenv("JWT_ISSUER")
        get_settings.cache_clear()

    assert arguments.issuer == "issuer-from-env"
    assert arguments.audience == DEFAULT_JWT_AUDIENCE
    assert arguments.ttl == 3600
    assert arguments.scopes == "events:read events:write"


def test_script_runs_without_installed_package() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "mint_token.py"), "--help"],
        cwd=ROOT / "tools",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "--stack-name" in completed.stdout


def test_cli_warns_about_unknown_scope(
    cloudformation: FakeCloudFormation, stored_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation.stacks["callflow-local"] = [
        {"OutputKey": "JwtSecretArn", "OutputValue": stored_secret},
    ]

    exit_code = tool.main(["--scopes", "admin events:read"])

    captured = capsys.readouterr()
    assert exit_code == 0
    assert "warning: scopes admin are unknown" in captured.err
    assert captured.out.strip().count(".") == 2
