"""The proxy request, response and router of callflow.http, and the opt-in tracer."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from callflow.http import Request, Response, Router
from tests.support import ROOT, load_fixture


def make_router(calls: list[tuple[str, dict[str, str]]]) -> Router:
    router = Router()

    @router.get("/events/{eventId}")
    def get_event(request: Request, context: Any, eventId: str) -> Response:  # noqa: N803
        calls.append(("event", {"eventId": eventId}))
        return Response(200, json.dumps({"eventId": eventId}))

    @router.get("/calls/{callId}/events")
    def get_call(request: Request, context: Any, callId: str) -> Response:  # noqa: N803
        calls.append(("call", {"callId": callId}))
        return Response(200, "{}")

    @router.post("/events")
    def post_events(request: Request, context: Any) -> Response:
        calls.append(("post", {}))
        raise ValueError("boom")

    return router


def not_found(request: Request) -> Response:
    return Response(404, json.dumps({"code": "ROUTE_NOT_FOUND", "path": request.path}))


def on_error(request: Request, context: Any, error: Exception) -> Response:
    return Response(500, json.dumps({"error": type(error).__name__}), headers={"Retry-After": "1"})


def test_request_reads_the_fixture_fields() -> None:
    request = Request.from_event(load_fixture("get-call-events.json"))
    assert request.method == "GET"
    assert request.resource == "/calls/{callId}/events"
    assert request.path_parameters == {"callId": "call-c0ffee42"}
    assert request.query == {}


def test_header_lookup_ignores_case() -> None:
    request = Request.from_event({"httpMethod": "post", "headers": {"Content-TYPE": "text/plain"}})
    assert request.method == "POST"
    assert request.header("content-type") == "text/plain"
    assert request.header("Content-Type") == "text/plain"
    assert request.header("accept") is None


def test_route_matches_on_resource_with_path_parameters() -> None:
    calls: list[tuple[str, dict[str, str]]] = []
    response = make_router(calls).resolve(
        load_fixture("get-call-events.json"), None, not_found=not_found, on_error=on_error
    )
    assert response["statusCode"] == 200
    assert calls == [("call", {"callId": "call-c0ffee42"})]


def test_resource_wins_over_path() -> None:
    # API Gateway matched /events/{eventId}; the path alone would not tell.
    calls: list[tuple[str, dict[str, str]]] = []
    event = {
        "httpMethod": "GET",
        "resource": "/events/{eventId}",
        "path": "/events/a/b",
        "pathParameters": {"eventId": "a/b"},
    }
    make_router(calls).resolve(event, None, not_found=not_found, on_error=on_error)
    assert calls == [("event", {"eventId": "a/b"})]


def test_event_without_resource_routes_by_path() -> None:
    calls: list[tuple[str, dict[str, str]]] = []
    event = {"httpMethod": "GET", "path": "/events/evt-1"}
    make_router(calls).resolve(event, None, not_found=not_found, on_error=on_error)
    assert calls == [("event", {"eventId": "evt-1"})]


@pytest.mark.parametrize(
    "event",
    [
        {"httpMethod": "DELETE", "resource": "/events/{eventId}", "path": "/events/x"},
        {"httpMethod": "GET", "resource": "/nowhere", "path": "/nowhere"},
        {"httpMethod": "GET", "path": "/events/a/b"},
    ],
)
def test_unmatched_request_goes_to_not_found(event: dict[str, Any]) -> None:
    calls: list[tuple[str, dict[str, str]]] = []
    response = make_router(calls).resolve(event, None, not_found=not_found, on_error=on_error)
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["path"] == event["path"]
    assert calls == []


def test_handler_exception_goes_to_on_error() -> None:
    calls: list[tuple[str, dict[str, str]]] = []
    event = {"httpMethod": "POST", "resource": "/events", "path": "/events"}
    response = make_router(calls).resolve(event, None, not_found=not_found, on_error=on_error)
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"error": "ValueError"}
    assert response["multiValueHeaders"]["Retry-After"] == ["1"]
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert response["isBase64Encoded"] is False


TRACER_PROBE = """
import sys
from callflow.observability import traced_handler

def handler(event, context):
    return {"ok": True}

wrapped = traced_handler(handler)
print(wrapped is handler, "aws_xray_sdk" in sys.modules)
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", "True False"), ("", "True False"), ("true", "False True")],
)
def test_tracer_imports_xray_only_when_enabled(value: str, expected: str) -> None:
    environment = {
        "PYTHONPATH": str(ROOT / "layers" / "common"),
        "CALLFLOW_TRACE_AWS_CALLS": value,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-c", TRACER_PROBE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == expected
