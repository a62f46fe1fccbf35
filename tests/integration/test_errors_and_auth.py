"""Error statuses and authorization of the deployed API."""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.conftest import READ, WRITE, Api
from tests.integration.test_store_and_read import unique_case


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"] == code
    assert response.json()["message"]
    # The id a client quotes. API Gateway sends one id in x-amzn-RequestId and
    # to the function; MiniStack sends the function another, so the header is
    # compared only for the authorizer's rejections, which API Gateway writes.
    request_id = response.json()["requestId"]
    assert UUID.fullmatch(request_id), request_id
    if status in (401, 403):
        assert request_id == response.headers["x-amzn-RequestId"]
    # API Gateway's error bodies and the functions' are written in the same compact form.
    assert response.text == json.dumps(response.json(), separators=(",", ":"), ensure_ascii=False)


def test_missing_token_is_401(anonymous):
    assert_error(anonymous.get("/health"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer a.b", "Bearer a.b.c"],
)
def test_malformed_token_is_401(anonymous, header):
    response = anonymous.request("GET", "/health", headers={"Authorization": header})

    assert_error(response, 401, "UNAUTHORIZED")


def test_expired_token_is_401(stack, make_token):
    client = Api(stack.base_url, make_token(READ, ttl=-120))

    assert_error(client.get("/health"), 401, "UNAUTHORIZED")


def test_token_for_other_audience_is_401(stack, make_token):
    client = Api(stack.base_url, make_token(READ, audience="another-api"))

    assert_error(client.get("/health"), 401, "UNAUTHORIZED")


def test_read_token_cannot_post(stack, make_token, run_id):
    reader = Api(stack.base_url, make_token(READ))
    event = unique_case("sip-basic-call.json", run_id)[0]

    assert_error(reader.post_events(event), 403, "FORBIDDEN")


def test_write_token_cannot_read(stack, make_token):
    writer = Api(stack.base_url, make_token(WRITE))

    assert_error(writer.get("/events/evt-anything"), 403, "FORBIDDEN")


def test_health_scope_reaches_only_health(stack, make_token, run_id):
    monitor = Api(stack.base_url, make_token("health:read"))
    event = unique_case("sip-basic-call.json", run_id)[0]

    assert monitor.get("/health").status_code == 200
    assert_error(monitor.get("/events"), 403, "FORBIDDEN")
    assert_error(monitor.get(f"/calls/{event['callId']}/events"), 403, "FORBIDDEN")
    assert_error(monitor.post_events(event), 403, "FORBIDDEN")


def test_cached_read_policy_still_denies_post(stack, make_token, run_id):
    """API Gateway caches the policy per token; GET first, then POST with the same token."""
    reader = Api(stack.base_url, make_token(READ))
    event = unique_case("sip-basic-call.json", run_id)[0]

    first = reader.get("/health")
    second = reader.post_events(event)
    third = reader.get(f"/calls/{event['callId']}/events")

    assert first.status_code == 200
    assert_error(second, 403, "FORBIDDEN")
    assert_error(third, 404, "CALL_NOT_FOUND")


def test_cached_write_policy_allows_post_then_health(stack, make_token, run_id):
    writer = Api(stack.base_url, make_token(WRITE))
    event = unique_case("sip-basic-call.json", run_id)[0]

    assert writer.post_events(event).status_code == 201
    assert writer.get("/health").status_code == 200
    assert_error(writer.get(f"/events/{event['eventId']}"), 403, "FORBIDDEN")


def test_unknown_event_is_404(api, run_id):
    assert_error(api.get(f"/events/evt-missing-{run_id}"), 404, "EVENT_NOT_FOUND")


def test_unknown_call_is_404(api, run_id):
    assert_error(api.get(f"/calls/call-missing-{run_id}/events"), 404, "CALL_NOT_FOUND")


def test_unknown_route_is_404(api):
    assert_error(api.get("/nothing-here"), 404, "ROUTE_NOT_FOUND")


def test_event_over_size_limit_is_413(api, run_id):
    event = unique_case("sip-basic-call.json", run_id)[0]
    event["payload"] = {"blob": "x" * (70 * 1024)}

    response = api.post_events(event)

    assert_error(response, 413, "EVENT_TOO_LARGE")
    assert api.get(f"/events/{event['eventId']}").status_code == 404


def test_request_over_size_limit_is_413(api, run_id):
    events = unique_case("sip-basic-call.json", run_id)
    batch = []
    for index in range(40):
        event = {**events[0], "eventId": f"big-{index}-{run_id}", "payload": {"blob": "y" * 30000}}
        batch.append(event)

    assert_error(api.post_events(batch), 413, "REQUEST_TOO_LARGE")


def test_batch_over_100_events_is_400(api, run_id):
    event = unique_case("sip-basic-call.json", run_id)[0]
    batch = [{**event, "eventId": f"many-{index}-{run_id}"} for index in range(101)]

    assert_error(api.post_events(batch), 400, "BATCH_TOO_LARGE")


def test_empty_batch_is_400(api):
    assert_error(api.post_events([]), 400, "EMPTY_BATCH")


def test_invalid_json_is_400(api):
    response = api.request(
        "POST", "/events", data=b'{"eventType": ', headers={"Content-Type": "application/json"}
    )

    assert_error(response, 400, "INVALID_JSON")


def test_wrong_content_type_is_415(api, run_id):
    event = unique_case("sip-basic-call.json", run_id)[0]
    response = api.request("POST", "/events", data=str(event), headers={"Content-Type": "text/plain"})

    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_unknown_field_is_400(api, run_id):
    event = {**unique_case("sip-basic-call.json", run_id)[0], "colour": "blue"}

    response = api.post_events(event)

    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.json()["details"][0]["field"] == "colour"


def test_unknown_query_parameter_is_400(api):
    assert_error(api.get("/events", params={"eventtype": "SIP_INVITE"}), 400, "UNKNOWN_PARAMETER")


def test_reversed_date_range_is_400(api):
    params = {"startDate": "2026-03-03T00:00:00Z", "endDate": "2026-03-02T00:00:00Z"}

    assert_error(api.get("/events", params=params), 400, "INVALID_DATE_RANGE")


def test_bad_limit_is_400(api):
    assert_error(api.get("/events", params={"limit": "0"}), 400, "INVALID_PARAMETER")
