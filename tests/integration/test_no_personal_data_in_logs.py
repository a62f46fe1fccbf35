"""The functions never log the participants (from, to) or the payload of an event.

The test stores, re-posts, conflicts, rejects and reads back events whose
from, to, source and payload contain recognisable phone numbers and names.
It then reads every line the three functions logged meanwhile (CloudWatch
Logs, see function_logs.py) and searches them for those values. First it
asserts that the storer's and retriever's lines for these very requests are
there, so an empty or unreadable log cannot make it pass.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.integration.conftest import READ, WRITE, Api
from tests.integration.function_logs import FunctionLogs

MAX_EVENT_BYTES = 64 * 1024

# Made-up phone numbers and names, written as a producer sends them.
PHONE_FROM = "+15550109999"
PHONE_TO = "+15550108888"
PHONE_IN_PAYLOAD = "+15550107777"
NAME_FROM = "Ada Lovelace"
NAME_IN_PAYLOAD = "Margaret Hamilton"
NAME_NON_ASCII = "Zoë Müller-Łukasiewicz"
SIP_URI = f"sip:{PHONE_TO}@pbx.example.com"
SENSITIVE_VALUES = [
    PHONE_FROM,
    PHONE_TO,
    PHONE_IN_PAYLOAD,
    NAME_FROM,
    NAME_IN_PAYLOAD,
    NAME_NON_ASCII,
    SIP_URI,
]


def spellings(value: str) -> set[str]:
    """Return the forms a value takes in a log line: as is, JSON-escaped, and digits only."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    if value.startswith("+") and value[1:].isdigit():
        forms.add(value[1:])
    return forms


def sensitive_event(run_id: str, index: int, **changes: Any) -> dict[str, Any]:
    event = {
        "eventId": f"pii-{index}-{run_id}",
        "eventType": "CALL_STARTED",
        "callId": f"pii-call-{run_id}",
        "timestamp": f"2026-03-02T14:0{index}:00Z",
        "source": f"{NAME_FROM} desk phone",
        "from": f'"{NAME_FROM}" <sip:{PHONE_FROM}@pbx.example.com>',
        "to": SIP_URI,
        "payload": {
            "caller": {"name": NAME_IN_PAYLOAD, "phone": PHONE_IN_PAYLOAD},
            "agent": NAME_NON_ASCII,
            "notes": f"Call back {NAME_FROM} on {PHONE_FROM}",
        },
    }
    event.update(changes)
    return event


def exercise_every_log_path(api: Api, run_id: str) -> list[str]:
    """Send requests that make the storer and retriever log, and return the stored eventIds."""
    single = sensitive_event(run_id, 0)
    batch = [sensitive_event(run_id, index) for index in (1, 2)]

    # Stored, then duplicate, then conflict (same eventId, other content).
    assert api.post_events(single).status_code == 201
    assert api.post_events(batch).status_code == 201
    assert api.post_events(single).status_code == 200
    assert api.post_events({**single, "to": PHONE_FROM}).status_code == 409
    # A batch may not repeat an eventId, so the conflicting copy of batch[0]
    # goes with batch[1], which is already stored (a duplicate).
    assert api.post_events([batch[1], {**batch[0], "from": PHONE_TO}]).status_code == 207

    # Rejected: invalid fields carrying the values, and an event over the size limit.
    invalid = sensitive_event(run_id, 3, **{"from": PHONE_FROM * 30, "to": 15550108888})
    assert api.post_events(invalid).status_code == 400
    notes = f"{NAME_IN_PAYLOAD} " * (MAX_EVENT_BYTES // len(NAME_IN_PAYLOAD))
    too_large = sensitive_event(run_id, 4, payload={"notes": notes})
    assert api.post_events(too_large).status_code == 413

    # Read back by id, by call and by range.
    assert api.get(f"/events/{single['eventId']}").status_code == 200
    assert api.get(f"/calls/{single['callId']}/events").status_code == 200
    params = {"startDate": "2026-03-02", "endDate": "2026-03-02", "callId": single["callId"]}
    assert api.get("/events", params=params).status_code == 200

    return [single["eventId"], *(event["eventId"] for event in batch)]


def test_logs_contain_no_participants_or_payload(stack, make_token, run_id):
    since_ms = int(time.time() * 1000) - 1000
    logs = FunctionLogs(stack.outputs, since_ms=since_ms, on_emulator=stack.on_emulator)
    # A token of its own, so that the authorizer runs (and logs) for this test too.
    client = Api(stack.base_url, make_token(READ, WRITE))

    stored_ids = exercise_every_log_path(client, run_id)

    # The storer logs each stored eventId and the retriever the callId it read,
    # so these lines prove that the logs of the requests above are readable.
    # One of each is enough: on a busy machine the emulator can lose a
    # function's output (see test_token_corpus.py).
    def requests_logged() -> bool:
        storer_text = "\n".join(line.message for line in logs.lines("storer"))
        retriever_text = "\n".join(line.message for line in logs.lines("retriever"))
        stored = any(event_id in storer_text for event_id in stored_ids)
        return stored and f"pii-call-{run_id}" in retriever_text

    assert logs.wait_until(requests_logged), "log lines of this test's requests were not found"
    logs.settle()

    lines = {function: logs.lines(function) for function in ("authorizer", "storer", "retriever")}
    assert all(lines.values()), {function: len(found) for function, found in lines.items()}

    for function, found in lines.items():
        for line in found:
            for value in SENSITIVE_VALUES:
                for form in spellings(value):
                    assert form not in line.message, (function, value, line.message[:300])

