"""Store call flows through the deployed API and read them back."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from tests.support import load_case

CASES = ["sip-basic-call.json", "contact-center-transfer.json", "pbx-unanswered-call.json"]


def unique_case(name: str, run_id: str) -> list[dict]:
    """Load a sample call and make its callId and eventIds unique to this run."""
    events = copy.deepcopy(load_case(name))
    for event in events:
        event["callId"] = f"{event['callId']}-{run_id}"
        if "eventId" in event:
            event["eventId"] = f"{event['eventId']}-{run_id}"
    return events


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def test_health_reports_healthy(api):
    response = api.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert "timestamp" in response.json()


@pytest.mark.parametrize("case", CASES)
def test_sample_call_reads_back_in_order(api, run_id, case):
    events = unique_case(case, run_id)
    call_id = events[0]["callId"]

    posted = api.post_events(events)
    assert posted.status_code == 201, posted.text
    assert posted.json()["summary"]["stored"] == len(events)

    response = api.get(f"/calls/{call_id}/events")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["callId"] == call_id
    assert body["count"] == len(events)
    timestamps = [utc(event["timestamp"]) for event in body["events"]]
    assert timestamps == sorted(timestamps)
    expected = sorted(utc(event["timestamp"]) for event in events)
    assert timestamps == expected


def test_call_across_midnight_returns_both_days(api, run_id):
    events = unique_case("contact-center-transfer.json", run_id)
    assert api.post_events(events).status_code == 201

    body = api.get(f"/calls/{events[0]['callId']}/events").json()

    days = {utc(event["timestamp"]).date().isoformat() for event in body["events"]}
    assert days == {"2026-03-02", "2026-03-03"}
    assert body["events"][0]["eventType"] == "CALL_STARTED"
    assert body["events"][-1]["eventType"] == "CALL_ENDED"


def test_missing_ids_assigned_and_replayable(api, run_id):
    events = unique_case("pbx-unanswered-call.json", run_id)

    first = api.post_events(events)
    replay = api.post_events(events)

    assert first.status_code == 201
    ids = [result["eventId"] for result in first.json()["results"]]
    assert len(set(ids)) == len(events)
    assert replay.status_code == 200
    assert replay.json()["summary"]["duplicate"] == len(events)
    assert [result["eventId"] for result in replay.json()["results"]] == ids


def test_offset_timestamp_is_normalised_and_original_kept(api, run_id):
    events = unique_case("pbx-unanswered-call.json", run_id)
    stored = api.post_events(events[:1]).json()["results"][0]

    event = api.get(f"/events/{stored['eventId']}").json()

    assert event["timestampOriginal"] == "2026-03-04T09:15:03.004+01:00"
    assert event["timestamp"] == "2026-03-04T08:15:03.004Z"


def test_single_event_round_trip(api, run_id):
    event = unique_case("sip-basic-call.json", run_id)[1]

    stored = api.post_events(event)
    read = api.get(f"/events/{event['eventId']}")

    assert stored.status_code == 201
    assert stored.json()["status"] == "stored"
    assert stored.json()["s3Key"].endswith(f"{event['eventId']}.json")
    assert read.status_code == 200
    assert read.json()["payload"] == event["payload"]
    assert read.json()["from"] == event["from"]


def test_same_event_again_is_duplicate(api, run_id):
    event = unique_case("sip-basic-call.json", run_id)[0]
    assert api.post_events(event).status_code == 201

    replay = api.post_events(event)

    assert replay.status_code == 200
    assert replay.json()["status"] == "duplicate"


def test_same_id_with_other_content_is_conflict(api, run_id):
    event = unique_case("sip-basic-call.json", run_id)[0]
    assert api.post_events(event).status_code == 201
    changed = {**event, "payload": {"direction": "inbound"}}

    response = api.post_events(changed)

    assert response.status_code == 409
    assert response.json()["code"] == "EVENT_CONFLICT"
    assert event["eventId"] in response.json()["message"]
    original, posted = event.get("payload", {}), changed["payload"]
    expected = sorted(
        f"payload.{name}"
        for name in set(original) | set(posted)
        if original.get(name) != posted.get(name) or (name in original) != (name in posted)
    )
    assert response.json()["details"][0]["differingFields"] == expected
    assert api.get(f"/events/{event['eventId']}").json()["payload"] == event["payload"]


def test_batch_with_conflict_reports_each_event(api, run_id):
    events = unique_case("sip-basic-call.json", run_id)[:3]
    assert api.post_events(events[:1]).status_code == 201
    conflicting = {**events[0], "source": "another-proxy"}

    response = api.post_events([conflicting, events[1], events[2]])

    assert response.status_code == 207
    statuses = [result["status"] for result in response.json()["results"]]
    assert statuses == ["conflict", "stored", "stored"]


def test_invalid_batch_is_rejected_whole(api, run_id):
    events = unique_case("sip-basic-call.json", run_id)[:3]
    events[1] = {**events[1], "timestamp": "2026-03-02 14:05:00"}
    del events[2]["callId"]

    response = api.post_events(events)

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    indexes = sorted({detail["index"] for detail in response.json()["details"]})
    assert indexes == [1, 2]
    assert api.get(f"/events/{events[0]['eventId']}").status_code == 404
    assert api.get(f"/calls/{events[0]['callId']}/events").status_code == 404


def test_list_by_range_type_and_call(api, run_id):
    events = unique_case("sip-basic-call.json", run_id)
    assert api.post_events(events).status_code == 201
    params = {
        "startDate": "2026-03-02T14:00:00Z",
        "endDate": "2026-03-02T14:10:00Z",
        "eventType": "SIP_INVITE",
        "callId": events[0]["callId"],
    }

    response = api.get("/events", params=params)

    assert response.status_code == 200, response.text
    ids = [event["eventId"] for event in response.json()["events"]]
    assert ids == [f"evt-9c21-002-{run_id}", f"evt-9c21-004-{run_id}"]
    assert (response.json()["startDate"], response.json()["endDate"]) == (
        params["startDate"],
        params["endDate"],
    )


def test_list_pages_with_next_token(api, run_id):
    events = unique_case("sip-basic-call.json", run_id)
    assert api.post_events(events).status_code == 201
    params = {
        "startDate": "2026-03-02T14:05:00Z",
        "endDate": "2026-03-02T14:10:00Z",
        "callId": events[0]["callId"],
        "limit": 5,
    }

    seen: list[str] = []
    pages = 0
    while True:
        body = api.get("/events", params=params).json()
        seen += [event["eventId"] for event in body["events"]]
        pages += 1
        if "nextToken" not in body:
            break
        params["nextToken"] = body["nextToken"]

    assert seen == [event["eventId"] for event in events]
    assert pages == 3


def test_tampered_next_token_is_rejected(api, run_id):
    events = unique_case("sip-basic-call.json", run_id)
    assert api.post_events(events).status_code == 201
    params = {"callId": events[0]["callId"], "startDate": "2026-03-02", "endDate": "2026-03-02", "limit": 2}
    token = api.get("/events", params=params).json()["nextToken"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

    response = api.get("/events", params={**params, "nextToken": tampered})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_NEXT_TOKEN"
