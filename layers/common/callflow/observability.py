"""Logs, metrics and traces shared by the handlers.

Logs are Powertools JSON lines with request fields, and metrics are
Powertools EMF lines. X-Ray subsegments for every AWS call are opt-in (see
traced_handler), because the X-Ray SDK adds about a hundred milliseconds or
more to every cold start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

# Modules of the callflow package log through logging.getLogger(__name__);
# make_logger gives this parent logger the handler and format of the service.
PACKAGE_LOGGER_NAME = "callflow"
SERVICE_NAME_VARIABLE = "POWERTOOLS_SERVICE_NAME"

# Custom metrics, in the namespace the template's alarms and dashboard read.
METRICS_NAMESPACE = "Callflow"
METRICS_NAMESPACE_VARIABLE = "POWERTOOLS_METRICS_NAMESPACE"
ENVIRONMENT_VARIABLE = "ENVIRONMENT"
# "true" records an X-Ray subsegment for every AWS call the function makes.
TRACE_AWS_CALLS_VARIABLE = "CALLFLOW_TRACE_AWS_CALLS"

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def make_logger(service: str) -> Logger:
    """Create the Powertools Logger of a function, with UTC ISO 8601 timestamps.

    POWERTOOLS_SERVICE_NAME, which the template sets per function, overrides
    `service`, so logs and metrics name the same service. The level comes from
    POWERTOOLS_LOG_LEVEL (default INFO). Records of the callflow package's own
    loggers go out in the same JSON form.
    """
    service_name = os.environ.get(SERVICE_NAME_VARIABLE) or service
    logger = Logger(service=service_name, utc=True, use_rfc3339=True)

    # Register the package logger first: the copy only reaches registered loggers.
    logging.getLogger(PACKAGE_LOGGER_NAME)
    copy_config_to_registered_loggers(source_logger=logger, include={PACKAGE_LOGGER_NAME})
    return logger


def make_metrics(service: str) -> Metrics:
    """Create the Powertools Metrics of a function: EMF lines with service and environment.

    Every metric carries the dimensions service (POWERTOOLS_SERVICE_NAME, else
    `service`) and environment (ENVIRONMENT), which the template's alarms and
    dashboard select on. Metrics are written when the handler decorated with
    `log_metrics` returns.
    """
    service_name = os.environ.get(SERVICE_NAME_VARIABLE) or service
    namespace = os.environ.get(METRICS_NAMESPACE_VARIABLE) or METRICS_NAMESPACE
    metrics = Metrics(namespace=namespace, service=service_name)
    metrics.set_default_dimensions(environment=os.environ.get(ENVIRONMENT_VARIABLE, "local"))
    return metrics


def bind_request(logger: Logger, event: dict[str, Any], context: Any) -> None:
    """Add requestId and functionName to every following log line of `logger`.

    requestId is API Gateway's requestContext.requestId, which the client can
    quote, or the Lambda request id when the event has none.
    """
    request_context = event.get("requestContext") or {}
    request_id = request_context.get("requestId") or getattr(context, "aws_request_id", None)
    function_name = getattr(context, "function_name", None)
    logger.append_keys(requestId=request_id, functionName=function_name)


def aws_call_tracing_enabled() -> bool:
    """Return whether CALLFLOW_TRACE_AWS_CALLS turns on an X-Ray subsegment per AWS call."""
    return os.environ.get(TRACE_AWS_CALLS_VARIABLE, "false").strip().lower() == "true"


def traced_handler(handler: _Handler) -> _Handler:
    """Wrap `handler` in Powertools Tracer when CALLFLOW_TRACE_AWS_CALLS is "true", else return it.

    With the function's active tracing, Lambda records every invocation in
    X-Ray without any SDK. The Tracer adds a subsegment for each boto3 call,
    such as every S3 write, at the cost of importing the X-Ray SDK on every
    cold start, so it is imported only when the variable is "true". Only
    botocore is patched, and responses are not copied into the trace, since
    they can contain personal data and exceed the size of a trace document.
    """
    if not aws_call_tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    tracer = Tracer(patch_modules=("botocore",))
    wrapped = tracer.capture_lambda_handler(handler, capture_response=False)
    return wrapped  # type: ignore[return-value]
