"""Configuration of the Callflow functions, read once from environment variables.

The template sets these variables on each function; tests set them with
monkeypatch and call `get_settings.cache_clear()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_TIME_INDEX_SHARDS = 16
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
MAX_BATCH_SIZE = 100
DEFAULT_JWT_ISSUER = "callflow-service"
DEFAULT_JWT_AUDIENCE = "callflow-api"


@dataclass(frozen=True)
class Settings:
    """Values every function may read; each function uses only its own."""

    environment: str
    events_bucket: str
    time_index_shards: int
    max_event_bytes: int
    max_request_bytes: int
    jwt_secret_arn: str
    jwks_url: str
    jwt_issuer: str
    jwt_audience: str
    pagination_secret_arn: str


def _int_env(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from error
    if not minimum <= value <= maximum:
        raise ValueError(f"environment variable {name}={value} is outside {minimum}..{maximum}")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once per process (a Lambda execution environment)."""
    return Settings(
        environment=os.environ.get("ENVIRONMENT", "local"),
        events_bucket=os.environ.get("EVENTS_BUCKET", ""),
        time_index_shards=_int_env("TIME_INDEX_SHARDS", DEFAULT_TIME_INDEX_SHARDS, 1, 100),
        max_event_bytes=_int_env("MAX_EVENT_BYTES", DEFAULT_MAX_EVENT_BYTES, 1024, 256 * 1024),
        max_request_bytes=_int_env(
            "MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, 1024, 6 * 1024 * 1024
        ),
        jwt_secret_arn=os.environ.get("JWT_SECRET_ARN", ""),
        jwks_url=os.environ.get("JWKS_URL", ""),
        jwt_issuer=os.environ.get("JWT_ISSUER", DEFAULT_JWT_ISSUER),
        jwt_audience=os.environ.get("JWT_AUDIENCE", DEFAULT_JWT_AUDIENCE),
        pagination_secret_arn=os.environ.get("PAGINATION_SECRET_ARN", ""),
    )
