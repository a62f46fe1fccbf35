"""Secrets Manager reads with a per-process cache.

A Lambda execution environment serves many invocations, so each secret is read
once and kept for `max_age_seconds`. After that the next call reads it again,
which picks up a rotated value. The read goes through the layer's own client
(callflow.awsclient.SecretsManagerClient), which is created on the first read,
so a cold start pays neither boto3's import nor its model load, and a
function that never reads a secret (the authorizer in JWKS mode) pays
nothing. boto3's client is used instead when
SecretsManagerClient.from_environment returns None: CALLFLOW_AWS_CLIENT=boto3,
traced AWS calls, or no credentials or region in the environment.
"""

from __future__ import annotations

import threading
import time
from typing import Any

DEFAULT_MAX_AGE_SECONDS = 300
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 3
MAX_ATTEMPTS = 3

# secret id -> (time.monotonic() when read, SecretString)
_cache: dict[str, tuple[float, str]] = {}
_cache_lock = threading.Lock()
_client: Any = None


class SecretUnavailableError(Exception):
    """Secrets Manager did not return a usable string for a secret.

    The message names the secret id and the cause, never the secret value.
    """

    def __init__(self, secret_id: str, message: str) -> None:
        super().__init__(message)
        self.secret_id = secret_id
        self.message = message


def get_secret_value(secret_id: str, *, max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS) -> str:
    """Return the SecretString of `secret_id`, cached for `max_age_seconds`.

    Once the cached copy is older than that, the next call reads the secret again.

    Raises SecretUnavailableError when the id is empty, Secrets Manager fails
    after the client's retries, or the secret contains binary data instead of a string.
    """
    if not secret_id:
        raise SecretUnavailableError(
            secret_id, "No secret id is configured: set the secret's ARN in the environment."
        )

    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(secret_id)
    if cached is not None and now - cached[0] < max_age_seconds:
        return cached[1]

    value = _read_secret_string(secret_id)

    with _cache_lock:
        _cache[secret_id] = (now, value)
    return value


def clear_cache() -> None:
    """Forget every cached secret and the Secrets Manager client (for tests)."""
    global _client
    with _cache_lock:
        _cache.clear()
        _client = None


def _read_secret_string(secret_id: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _secrets_manager_client().get_secret_value(SecretId=secret_id)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        raise SecretUnavailableError(
            secret_id,
            f"Reading secret {secret_id} from Secrets Manager failed with {code}: "
            "check that the secret exists and that the function's role may read it.",
        ) from error
    except BotoCoreError as error:
        raise SecretUnavailableError(
            secret_id,
            f"Reading secret {secret_id} from Secrets Manager failed "
            f"({type(error).__name__}): check the network path to Secrets Manager.",
        ) from error

    value = response.get("SecretString")
    if not isinstance(value, str):
        raise SecretUnavailableError(
            secret_id,
            f"Secret {secret_id} has no SecretString: store the key as a string, not as binary.",
        )
    return value


def _secrets_manager_client() -> Any:
    # Created on the first read, not at import, because a function may never
    # read a secret.
    global _client
    if _client is None:
        from callflow.awsclient import SecretsManagerClient

        client = SecretsManagerClient.from_environment(
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            max_attempts=MAX_ATTEMPTS,
        )
        _client = client if client is not None else _boto3_secrets_manager_client()
    return _client


def _boto3_secrets_manager_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "secretsmanager",
        config=Config(
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        ),
    )
