"""Settings every unit test shares."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def boto3_s3_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make callflow.store.make_s3_client build boto3's client in unit tests.

    moto's mock_aws intercepts botocore's requests only, so handlers under
    mock_aws need boto3's client. The layer's own client is tested against
    moto's server in test_awsclient.py, and end to end by the integration suite.
    """
    monkeypatch.setenv("CALLFLOW_AWS_CLIENT", "boto3")
