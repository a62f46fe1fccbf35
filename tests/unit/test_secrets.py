"""Secrets Manager reads with a TTL cache (callflow.secrets), against moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from callflow import secrets
from callflow.secrets import SecretUnavailableError, get_secret_value
from tests.support import ROOT

REGION = "us-east-1"


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    secrets.clear_cache()
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)
    secrets.clear_cache()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(secrets.time, "monotonic", fake)
    return fake


def test_secret_string_is_returned(secretsmanager: Any) -> None:
    arn = secretsmanager.create_secret(Name="callflow/test/key", SecretString="value-1")["ARN"]

    assert get_secret_value(arn) == "value-1"


def test_cached_value_is_served_within_max_age(secretsmanager: Any, clock: FakeClock) -> None:
    arn = secretsmanager.create_secret(Name="callflow/test/key", SecretString="value-1")["ARN"]
    get_secret_value(arn, max_age_seconds=300)
    secretsmanager.put_secret_value(SecretId=arn, SecretString="value-2")

    clock.now += 299

    assert get_secret_value(arn, max_age_seconds=300) == "value-1"


def test_rotated_value_is_read_after_max_age(secretsmanager: Any, clock: FakeClock) -> None:
    arn = secretsmanager.create_secret(Name="callflow/test/key", SecretString="value-1")["ARN"]
    get_secret_value(arn, max_age_seconds=300)
    secretsmanager.put_secret_value(SecretId=arn, SecretString="value-2")

    clock.now += 300

    assert get_secret_value(arn, max_age_seconds=300) == "value-2"


def test_cache_is_per_secret_id(secretsmanager: Any) -> None:
    first = secretsmanager.create_secret(Name="callflow/test/a", SecretString="a")["ARN"]
    second = secretsmanager.create_secret(Name="callflow/test/b", SecretString="b")["ARN"]

    assert get_secret_value(first) == "a"
    assert get_secret_value(second) == "b"


def test_missing_secret_raises_unavailable(secretsmanager: Any) -> None:
    with pytest.raises(SecretUnavailableError) as caught:
        get_secret_value("callflow/test/absent")

    assert caught.value.secret_id == "callflow/test/absent"
    assert "ResourceNotFoundException" in caught.value.message


def test_binary_secret_raises_unavailable(secretsmanager: Any) -> None:
    arn = secretsmanager.create_secret(Name="callflow/test/bin", SecretBinary=b"\x00\x01")["ARN"]

    with pytest.raises(SecretUnavailableError, match="no SecretString"):
        get_secret_value(arn)


def test_empty_secret_id_raises_unavailable() -> None:
    with pytest.raises(SecretUnavailableError, match="No secret id"):
        get_secret_value("")


def test_error_message_never_contains_value(secretsmanager: Any) -> None:
    created = secretsmanager.create_secret(Name="callflow/test/bin", SecretBinary=b"hidden-bytes")
    arn = created["ARN"]

    with pytest.raises(SecretUnavailableError) as caught:
        get_secret_value(arn)

    assert "hidden-bytes" not in str(caught.value)


def test_import_does_not_load_boto3() -> None:
    code = "import sys, json; import callflow.secrets; print(json.dumps('boto3' in sys.modules))"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "layers" / "common")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) is False
