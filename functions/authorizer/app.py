"""API Gateway TOKEN authorizer: verify the bearer token and return the policy for its scopes.

Import time adds to every cold start, which delays the API request that
triggered it, so this module imports no AWS SDK client. callflow.secrets
creates its Secrets Manager client on the first read, which the JWKS mode
never makes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from callflow.auth import (
    TOKEN_TYPE,
    FailureReason,
    build_policy,
    format_scopes,
    parse_method_arn,
    route_allowed,
    verify_token,
)
from callflow.errors import AuthError
from callflow.observability import METRICS_NAMESPACE, bind_request, make_logger
from callflow.settings import get_settings

# API Gateway returns 401 only when the authorizer fails with exactly this
# message. Any other error becomes a 500.
UNAUTHORIZED_MESSAGE = "Unauthorized"
SERVICE_NAME = "callflow-authorizer"

logger = make_logger(SERVICE_NAME)
AUTH_FAILURES_METRIC = "AuthorizationFailures"


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Return the IAM policy for the token in `event`, or raise Exception("Unauthorized")."""
    started = time.perf_counter()
    # A TOKEN event has no requestContext, so requestId is the Lambda request id.
    bind_request(logger, event, context)

    try:
        principal = verify_token(event.get("authorizationToken"), settings=get_settings())
    except AuthError as error:
        # Only the reason and a message that never quotes the token are logged.
        logger.warning(
            "Authorization failed",
            extra={
                "authResult": "DENY",
                "failureReason": str(error.reason),
                "failureMessage": error.message,
                "tokenType": TOKEN_TYPE,
                "authLatencyMs": _elapsed_ms(started),
            },
        )
        _count_failure(str(error.reason))
        raise Exception(UNAUTHORIZED_MESSAGE) from None

    method_arn = event["methodArn"]
    policy = build_policy(principal, method_arn)
    scopes = format_scopes(principal.scopes)
    logger.info(
        "Authorization succeeded",
        extra={
            "authResult": "ALLOW",
            "principalId": principal.principal_id,
            "tokenType": principal.token_type,
            "scopes": scopes,
            "authLatencyMs": _elapsed_ms(started),
        },
    )

    # The policy still lists every route the token may use, because API
    # Gateway caches it for the token. This line records that the request
    # which triggered the authorizer is itself outside those routes, so API
    # Gateway returns 403 for it. Later requests served from the cache are
    # not logged here.
    requested = parse_method_arn(method_arn)
    if not route_allowed(principal.scopes, requested.http_method, requested.resource_path):
        logger.warning(
            "Request not covered by the token's scopes",
            extra={
                "authResult": "DENY",
                "failureReason": str(FailureReason.INSUFFICIENT_SCOPE),
                "principalId": principal.principal_id,
                "tokenType": principal.token_type,
                "scopes": scopes,
                "httpMethod": requested.http_method,
                "resourcePath": requested.resource_path,
            },
        )

    return policy


def _count_failure(reason: str) -> None:
    """Write AuthorizationFailures twice: in total, which the alarm reads, and by reason.

    CloudWatch does not add up a metric across dimension sets, so the alarm
    needs the series without failureReason and the dashboard the one with it.
    """
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE
    dimensions = {"service": logger.service, "environment": os.environ.get("ENVIRONMENT", "local")}
    for extra_dimensions in ({}, {"failureReason": reason}):
        with single_metric(
            name=AUTH_FAILURES_METRIC,
            unit=MetricUnit.Count,
            value=1,
            namespace=namespace,
            default_dimensions={**dimensions, **extra_dimensions},
        ):
            pass


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
