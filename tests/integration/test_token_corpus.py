"""A corpus of bad bearer tokens: API Gateway rejects each with 401, or 403 for a missing scope.

None of them may reach the storer or the retriever. The check counts the
functions' invocations in CloudWatch Logs (function_logs.py) before and after
the corpus: the authorizer's count grows and logs the expected failureReason
for each token, and the storer's and retriever's counts stay as they were.
Valid tokens with the right scopes pass on every route their scopes cover.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER
from tests.integration.conftest import READ, WRITE, Api, Stack
from tests.integration.function_logs import FunctionLogs
from tests.integration.raw_http import RawResponse, send

MAX_TOKEN_BYTES = 8 * 1024
# More than the authorizer's 30 s leeway for exp and nbf.
CLOCK_MARGIN_SECONDS = 600
JSON = "application/json"

Route = tuple[str, str]
POST_EVENTS = ("POST", "/events")
LIST_EVENTS = ("GET", "/events")
GET_EVENT = ("GET", "/events/token-corpus-event")
CALL_EVENTS = ("GET", "/calls/token-corpus-call/events")
HEALTH = ("GET", "/health")
ALL_ROUTES = (POST_EVENTS, LIST_EVENTS, GET_EVENT, CALL_EVENTS, HEALTH)
READ_ROUTES = (LIST_EVENTS, GET_EVENT, CALL_EVENTS, HEALTH)
WRITE_ROUTES = (POST_EVENTS, HEALTH)
READ_ONLY = (LIST_EVENTS, GET_EVENT, CALL_EVENTS)
OTHER_SECRET = b"a-secret-of-another-stack-32-bytes"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


class TokenFactory:
    """Mints tokens for the stack under test, good ones and each kind of bad one."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def claims(self, scope: str = f"{READ} {WRITE}", **changes: Any) -> dict[str, Any]:
        """Return valid claims with `changes` applied. A value of None removes the claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": DEFAULT_JWT_ISSUER,
            "aud": DEFAULT_JWT_AUDIENCE,
            "sub": "token-corpus",
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + CLOCK_MARGIN_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def signed(self, claims: dict[str, Any] | None = None, algorithm: str = "HS256") -> str:
        return jwt.encode(claims or self.claims(), self.secret.encode("utf-8"), algorithm=algorithm)

    def hmac_signed(self, key: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """Sign with HMAC-SHA256 by hand, because PyJWT rejects a PEM public key as HMAC secret."""
        signing_input = f"{segment(header)}.{segment(claims)}"
        signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def unsigned(tokens: TokenFactory) -> str:
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(tokens.claims())}."


def public_key_as_secret(tokens: TokenFactory) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    return tokens.hmac_signed(public_pem(rsa_key()), header, tokens.claims())


def scope_escalated(tokens: TokenFactory) -> str:
    """Return a read-only token whose payload now claims both scopes, with the old signature."""
    header, _, signature = tokens.signed(tokens.claims(scope=READ)).split(".")
    return f"{header}.{segment(tokens.claims(scope=f'{READ} {WRITE}'))}.{signature}"


def signature_removed(tokens: TokenFactory) -> str:
    header_and_payload = tokens.signed().rsplit(".", 1)[0]
    return f"{header_and_payload}."


def oversized(tokens: TokenFactory) -> str:
    return tokens.signed(tokens.claims(padding="p" * MAX_TOKEN_BYTES))


@dataclass(frozen=True)
class TokenKind:
    """One way a token is wrong, the routes it is sent to, and the expected status and code.

    `header` builds the Authorization header value (None: no header).
    `reason` is the failureReason the authorizer logs, or None when API
    Gateway rejects the request without calling the authorizer. With
    `routes` None, KINDS picks one route by the kind's position.
    """

    id: str
    header: Callable[[TokenFactory], str | bytes | None]
    reason: str | None
    status: int = 401
    code: str = "UNAUTHORIZED"
    routes: tuple[Route, ...] | None = None


def bearer(build: Callable[[TokenFactory], str]) -> Callable[[TokenFactory], str]:
    return lambda tokens: f"Bearer {build(tokens)}"


def with_claims(**changes: Any) -> Callable[[TokenFactory], str]:
    """Return a header builder for a token signed with the stack's secret and changed claims."""
    return lambda tokens: f"Bearer {tokens.signed(tokens.claims(**changes))}"


def expired(tokens: TokenFactory) -> str:
    return tokens.signed(tokens.claims(exp=int(time.time()) - CLOCK_MARGIN_SECONDS))


def not_yet_valid(tokens: TokenFactory) -> str:
    return tokens.signed(tokens.claims(nbf=int(time.time()) + CLOCK_MARGIN_SECONDS))


def wrong_key(tokens: TokenFactory) -> str:
    return jwt.encode(tokens.claims(), OTHER_SECRET, algorithm="HS256")


def hs512(tokens: TokenFactory) -> str:
    return tokens.signed(algorithm="HS512")


def rs256(tokens: TokenFactory) -> str:
    return jwt.encode(tokens.claims(), rsa_key(), algorithm="RS256")


def header_not_json(tokens: TokenFactory) -> str:
    return f"Bearer {b64url(b'nope')}.{segment(tokens.claims())}."


def two_tokens(tokens: TokenFactory) -> str:
    return f"Bearer {tokens.signed()} {tokens.signed()}"


FORBIDDEN = {"status": 403, "code": "FORBIDDEN", "reason": "INSUFFICIENT_SCOPE"}

CORPUS = [
    # API Gateway rejects a request without the header before any authorizer
    # call, so every route is cheap to try.
    TokenKind("no-header", lambda tokens: None, None, routes=ALL_ROUTES),
    TokenKind("empty-bearer", lambda tokens: "Bearer ", "TOKEN_MISSING"),
    TokenKind("wrong-scheme", lambda tokens: f"Basic {b64url(b'user:pass')}", "INVALID_SCHEME"),
    TokenKind("token-without-scheme", lambda tokens: tokens.signed(), "INVALID_SCHEME"),
    TokenKind("garbage", lambda tokens: "Bearer not-a-jwt", "TOKEN_MALFORMED"),
    TokenKind("two-dots-only", lambda tokens: "Bearer ..", "TOKEN_MALFORMED"),
    TokenKind("four-segments", bearer(lambda tokens: f"{tokens.signed()}.x"), "TOKEN_MALFORMED"),
    TokenKind("two-tokens", two_tokens, "TOKEN_MALFORMED"),
    TokenKind("header-not-json", header_not_json, "TOKEN_MALFORMED"),
    TokenKind("alg-none", bearer(unsigned), "UNSUPPORTED_ALGORITHM"),
    TokenKind("alg-hs512", bearer(hs512), "UNSUPPORTED_ALGORITHM"),
    TokenKind("alg-rs256", bearer(rs256), "UNSUPPORTED_ALGORITHM"),
    TokenKind("hs256-with-public-key-pem", bearer(public_key_as_secret), "INVALID_SIGNATURE"),
    TokenKind("wrong-key", bearer(wrong_key), "INVALID_SIGNATURE"),
    TokenKind("signature-removed", bearer(signature_removed), "INVALID_SIGNATURE"),
    TokenKind("payload-scope-escalated", bearer(scope_escalated), "INVALID_SIGNATURE"),
    TokenKind("expired", bearer(expired), "TOKEN_EXPIRED"),
    TokenKind("not-yet-valid", bearer(not_yet_valid), "TOKEN_NOT_YET_VALID"),
    TokenKind("missing-exp", with_claims(exp=None), "MISSING_CLAIM"),
    TokenKind("missing-sub", with_claims(sub=None), "MISSING_CLAIM"),
    TokenKind("wrong-issuer", with_claims(iss="https://issuer.example"), "INVALID_ISSUER"),
    TokenKind("wrong-audience", with_claims(aud="another-api"), "INVALID_AUDIENCE"),
    TokenKind("scope-not-a-string", with_claims(scope=[READ, WRITE]), "INVALID_CLAIM"),
    TokenKind("token-over-8-kib", bearer(oversized), "TOKEN_TOO_LARGE"),
    # http.client sends these bytes unchanged, and the authorizer receives
    # text that is not ASCII.
    TokenKind("non-utf8-bytes", lambda tokens: b"Bearer \xff\xfe.\xc3\x28.\x80", "TOKEN_MALFORMED"),
    # Valid tokens whose scopes do not cover the route: the policy denies it.
    TokenKind("read-scope-on-post", with_claims(scope=READ), routes=(POST_EVENTS,), **FORBIDDEN),
    TokenKind("write-scope-on-reads", with_claims(scope=WRITE), routes=READ_ONLY, **FORBIDDEN),
    TokenKind(
        "unknown-scope-only",
        with_claims(scope="events:admin"),
        routes=(POST_EVENTS, LIST_EVENTS, HEALTH),
        **FORBIDDEN,
    ),
    TokenKind("no-scope-claim", with_claims(scope=None), routes=(POST_EVENTS, HEALTH), **FORBIDDEN),
]

# The authorizer rejects a token before it looks at the route, so each kind
# goes to one route and the kinds take turns over all routes. This matters on
# the emulator: its warm worker (ministack/core/lambda_runtime.py) ends the
# function's process after a handler error, so every rejection costs a cold
# start of a second or two.
KINDS = [
    kind if kind.routes else replace(kind, routes=(ALL_ROUTES[index % len(ALL_ROUTES)],))
    for index, kind in enumerate(CORPUS)
]


# ---------------------------------------------------------------------------
# Helpers and fixtures


@pytest.fixture(scope="module")
def tokens(signing_secret: str) -> TokenFactory:
    return TokenFactory(signing_secret)


@pytest.fixture(scope="module")
def stored_event(api: Api) -> None:
    """Store the event that GET_EVENT and CALL_EVENTS read (a duplicate after the first run)."""
    event = {
        "eventId": GET_EVENT[1].rsplit("/", 1)[1],
        "eventType": "CALL_STARTED",
        "callId": CALL_EVENTS[1].split("/")[2],
        "timestamp": "2026-03-02T14:05:00Z",
    }
    response = api.post_events(event)
    assert response.status_code in (200, 201), response.text


def event_body() -> bytes:
    event = {
        "eventId": f"token-corpus-{uuid.uuid4().hex}",
        "eventType": "CALL_STARTED",
        "callId": "token-corpus-call",
        "timestamp": "2026-03-02T14:05:00Z",
    }
    return json.dumps(event).encode("utf-8")


def call(stack: Stack, route: Route, header: str | bytes | None) -> RawResponse:
    method, path = route
    headers: dict[str, str | bytes] = {}
    if header is not None:
        headers["Authorization"] = header
    body = None
    if method == "POST":
        headers["Content-Type"] = JSON
        body = event_body()
    return send(stack.base_url, method, path, headers=headers, body=body)


def send_kind(
    stack: Stack, tokens: TokenFactory, kind: TokenKind
) -> list[tuple[Route, RawResponse]]:
    """Send one freshly built header of `kind` to each of its routes."""
    header = kind.header(tokens)
    return [(route, call(stack, route, header)) for route in kind.routes]


def assert_gateway_error(
    response: RawResponse, status: int, code: str, route: Route
) -> None:
    assert response.status == status, (route, response.text)
    assert response.content_type.startswith(JSON), (route, response.content_type)
    body = response.json()
    assert body["code"] == code, (route, body)
    assert body["message"], (route, body)


def recent_logs(stack: Stack) -> FunctionLogs:
    """Return a reader of the function logs from one second ago on."""
    since_ms = int(time.time() * 1000) - 1000
    return FunctionLogs(stack.outputs, since_ms=since_ms, on_emulator=stack.on_emulator)


def failure_reasons(logs: FunctionLogs) -> Counter[str]:
    """Count the failureReason values the authorizer logged since the logs' start time."""
    reasons: Counter[str] = Counter()
    for line in logs.lines("authorizer"):
        record = line.json()
        if record and record.get("authResult") == "DENY" and "failureReason" in record:
            reasons[record["failureReason"]] += 1
    return reasons


@dataclass
class Baseline:
    """Invocation counts and authorizer failure reasons before the corpus, and the kinds sent."""

    logs: FunctionLogs
    authorizer: int
    storer: int
    retriever: int
    reasons: Counter[str]
    sent: set[str]


@pytest.fixture(scope="module")
def baseline(stack: Stack) -> Baseline:
    logs = recent_logs(stack)
    logs.settle()
    return Baseline(
        logs=logs,
        authorizer=logs.invocations("authorizer"),
        storer=logs.invocations("storer"),
        retriever=logs.invocations("retriever"),
        reasons=failure_reasons(logs),
        sent=set(),
    )


# ---------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.id)
def test_bad_token_is_rejected(stack, tokens, baseline, kind):
    responses = send_kind(stack, tokens, kind)
    baseline.sent.add(kind.id)

    for route, response in responses:
        assert_gateway_error(response, kind.status, kind.code, route)


def test_bad_tokens_reach_no_handler(stack, tokens, baseline):
    """Check the logs after the corpus above, which this test sends itself when run alone."""
    for kind in KINDS:
        if kind.id not in baseline.sent:
            send_kind(stack, tokens, kind)
            baseline.sent.add(kind.id)

    logs = baseline.logs
    expected = Counter(kind.reason for kind in KINDS if kind.reason is not None)

    # Each kind with a reason reaches the authorizer at least once. The START
    # lines come from Lambda (or the emulator) itself, so they are complete.
    assert logs.wait_until(
        lambda: logs.invocations("authorizer") >= baseline.authorizer + sum(expected.values())
    )
    logs.settle()
    assert logs.invocations("storer") == baseline.storer
    assert logs.invocations("retriever") == baseline.retriever

    def logged_reasons() -> Counter[str]:
        return failure_reasons(logs) - baseline.reasons

    def missing_reasons() -> dict[str, tuple[int, int]]:
        """Return {reason: (expected count, logged count)} for reasons logged too rarely."""
        logged = logged_reasons()
        return {
            reason: (count, logged[reason])
            for reason, count in expected.items()
            if logged[reason] < count
        }

    # The emulator collects a function's own output with waits of a few
    # milliseconds after each invocation (_drain_stderr_bounded in
    # ministack/core/lambda_runtime.py), so on a busy machine it can lose
    # lines. There the test only requires some reasons, all of them expected.
    if stack.on_emulator:
        assert logs.wait_until(lambda: not missing_reasons()) or logged_reasons()
    else:
        assert logs.wait_until(lambda: not missing_reasons()), missing_reasons()
    assert set(logged_reasons()) <= set(expected), logged_reasons()


def test_handler_invocations_are_counted(stack, tokens):
    """Check that the counts the previous test compares grow when a handler does run."""
    logs = recent_logs(stack)
    logs.settle()
    storer_before = logs.invocations("storer")
    retriever_before = logs.invocations("retriever")

    header = f"Bearer {tokens.signed()}"
    assert call(stack, POST_EVENTS, header).status == 201
    assert call(stack, HEALTH, header).status == 200

    assert logs.wait_until(lambda: logs.invocations("storer") > storer_before)
    assert logs.wait_until(lambda: logs.invocations("retriever") > retriever_before)


# The status of each route for a token whose scopes cover it. The read routes
# name the event and call that the stored_event fixture stores.
PASSING_STATUS = {
    POST_EVENTS: 201,
    LIST_EVENTS: 200,
    GET_EVENT: 200,
    CALL_EVENTS: 200,
    HEALTH: 200,
}


@pytest.mark.parametrize(
    ("scope", "routes"),
    [(READ, READ_ROUTES), (WRITE, WRITE_ROUTES), (f"{READ} {WRITE}", ALL_ROUTES)],
    ids=["read", "write", "read-and-write"],
)
def test_valid_token_passes_on_its_routes(stack, tokens, stored_event, scope, routes):
    header = f"Bearer {tokens.signed(tokens.claims(scope=scope))}"

    for route in routes:
        response = call(stack, route, header)

        assert response.status == PASSING_STATUS[route], (route, response.text)


def test_corpus_ids_are_unique():
    ids = [kind.id for kind in KINDS]

    assert len(set(ids)) == len(ids)
