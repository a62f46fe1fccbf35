"""Token verification and the authorizer policy (callflow.auth).

The only network use is a JWKS endpoint that these tests serve themselves on
127.0.0.1 with http.server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from callflow import auth, secrets
from callflow.auth import (
    JWKS_TIMEOUT_SECONDS,
    LEEWAY_SECONDS,
    MAX_TOKEN_BYTES,
    SCOPE_HEALTH,
    SCOPE_READ,
    SCOPE_WRITE,
    FailureReason,
    Principal,
    build_policy,
    route_allowed,
    verify_token,
)
from callflow.errors import AuthError
from callflow.settings import Settings

SECRET = "unit-test-signing-key-0123456789abcdefghijklmnopqrstuvwxyz"
OTHER_SECRET = "another-signing-key-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:callflow/test/jwt-AbCdEf"
ISSUER = "callflow-service"
AUDIENCE = "callflow-api"
RSA_KID = "rsa-key-1"
EC_KID = "ec-key-1"

API_PREFIX = "arn:aws:execute-api:us-east-1:000000000000:abc123"
STAGE_PREFIX = f"{API_PREFIX}/local"

# Every route of the API, with a request on it, and the scope it needs.
REQUESTS = [
    ("GET", "/events", {SCOPE_READ}),
    ("GET", "/events/evt-0001", {SCOPE_READ}),
    ("GET", "/calls/call-42/events", {SCOPE_READ}),
    ("GET", "/health", {SCOPE_READ, SCOPE_WRITE, SCOPE_HEALTH}),
    ("POST", "/events", {SCOPE_WRITE}),
]


# ---------------------------------------------------------------- keys and servers


@dataclass(frozen=True)
class Keys:
    rsa_private: rsa.RSAPrivateKey
    rsa_public_pem: bytes
    other_rsa_private: rsa.RSAPrivateKey
    ec_private: ec.EllipticCurvePrivateKey

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa_private.public_key(), as_dict=True)
        ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.ec_private.public_key(), as_dict=True)
        rsa_jwk.update(kid=RSA_KID, alg="RS256", use="sig")
        ec_jwk.update(kid=EC_KID, alg="ES256", use="sig")
        return {"keys": [rsa_jwk, ec_jwk]}


@pytest.fixture(scope="module")
def keys() -> Keys:
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Keys(
        rsa_private=rsa_private,
        rsa_public_pem=rsa_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        other_rsa_private=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_private=ec.generate_private_key(ec.SECP256R1()),
    )


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that can delay its responses."""

    def __init__(self, body: dict[str, Any] | bytes, delay_seconds: float = 0.0) -> None:
        self.requests = 0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests += 1
                if delay_seconds:
                    server.release.wait(delay_seconds)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    with JwksServer(keys.jwks()) as server:
        yield server


def closed_port_url() -> str:
    """Return a URL on 127.0.0.1 whose port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/.well-known/jwks.json"


# ---------------------------------------------------------------- settings and tokens


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    auth.clear_caches()
    yield
    auth.clear_caches()


@pytest.fixture
def secret_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Serve SECRET for SECRET_ARN instead of Secrets Manager, and return the list of ids read."""
    reads: list[str] = []

    def fake_get_secret_value(secret_id: str, *, max_age_seconds: int = 300) -> str:
        reads.append(secret_id)
        if secret_id != SECRET_ARN:
            raise secrets.SecretUnavailableError(secret_id, f"No secret {secret_id}.")
        return SECRET

    monkeypatch.setattr(secrets, "get_secret_value", fake_get_secret_value)
    return reads


def make_settings(**overrides: Any) -> Settings:
    base = Settings(
        environment="test",
        events_bucket="callflow-test-events",
        time_index_shards=16,
        max_event_bytes=64 * 1024,
        max_request_bytes=1024 * 1024,
        jwt_secret_arn=SECRET_ARN,
        jwks_url="",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        pagination_secret_arn="",
    )
    return replace(base, **overrides)


@pytest.fixture
def secret_settings(secret_reads: list[str]) -> Settings:
    return make_settings()


@pytest.fixture
def jwks_settings(jwks_server: JwksServer) -> Settings:
    return make_settings(jwt_secret_arn="", jwks_url=jwks_server.url)


def claims(**overrides: Any) -> dict[str, Any]:
    """Return valid claims for both scopes. An override of None removes that claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "client-7",
        "scope": f"{SCOPE_READ} {SCOPE_WRITE}",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret.encode(), algorithm="HS256", headers=headers or None)


def rs256(keys: Keys, payload: dict[str, Any], kid: str | None = RSA_KID) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, keys.rsa_private, algorithm="RS256", headers=headers)


def es256(keys: Keys, payload: dict[str, Any], kid: str = EC_KID) -> str:
    return jwt.encode(payload, keys.ec_private, algorithm="ES256", headers={"kid": kid})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def hs256_with_key_bytes(payload: dict[str, Any], key: bytes, kid: str) -> str:
    """Sign HS256 by hand, because PyJWT refuses a PEM public key as an HMAC secret."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def replace_payload(token: str, payload: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64url_json(payload)}.{signature}"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def rejection_reason(header: str | None, settings: Settings) -> str:
    with pytest.raises(AuthError) as caught:
        verify_token(header, settings=settings)
    return caught.value.reason


# ---------------------------------------------------------------- rejected tokens

NOT_UTF8_HEADER = b'{"alg": "HS256\xff"}'
NOT_UTF8_PAYLOAD = b'{"sub": "\xc3\x28"}'

# (case id, mode, Authorization header builder, expected failureReason)
Builder = Callable[[Keys], "str | None"]
REJECTED: list[tuple[str, str, Builder, FailureReason]] = [
    ("no_header", "secret", lambda k: None, FailureReason.TOKEN_MISSING),
    ("empty_header", "secret", lambda k: "", FailureReason.TOKEN_MISSING),
    ("empty_bearer", "secret", lambda k: "Bearer ", FailureReason.TOKEN_MISSING),
    (
        "basic_scheme",
        "secret",
        lambda k: "Basic dXNlcjpwYXNzd29yZA==",
        FailureReason.INVALID_SCHEME,
    ),
    ("token_without_scheme", "secret", lambda k: hs256(claims()), FailureReason.INVALID_SCHEME),
    ("garbage", "secret", lambda k: "Bearer not-a-jwt", FailureReason.TOKEN_MALFORMED),
    ("two_dots_only", "secret", lambda k: "Bearer ..", FailureReason.TOKEN_MALFORMED),
    (
        "four_segments",
        "secret",
        lambda k: bearer(hs256(claims()) + ".x"),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "two_tokens",
        "secret",
        lambda k: f"Bearer {hs256(claims())} {hs256(claims())}",
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "not_base64url",
        "secret",
        lambda k: "Bearer eyJhbGciOiJIUzI1NiJ9.e30+.c2ln",
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "header_not_json",
        "secret",
        lambda k: bearer(f"{b64url(b'not json')}.{b64url_json(claims())}.c2ln"),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "payload_not_object",
        "secret",
        lambda k: bearer(f"{b64url_json({'alg': 'HS256'})}.{b64url_json([1, 2])}.c2ln"),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "header_not_utf8",
        "secret",
        lambda k: bearer(f"{b64url(NOT_UTF8_HEADER)}.{b64url_json(claims())}.c2ln"),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "payload_not_utf8",
        "secret",
        lambda k: bearer(f"{b64url_json({'alg': 'HS256'})}.{b64url(NOT_UTF8_PAYLOAD)}.c2ln"),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "non_ascii_character",
        "secret",
        lambda k: bearer(hs256(claims())[:-2] + "é"),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "undecodable_byte_as_surrogate",
        "secret",
        lambda k: bearer(hs256(claims())[:-2] + b"\xff".decode("utf-8", "surrogateescape")),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "over_8_kib",
        "secret",
        lambda k: bearer(hs256(claims(padding="x" * MAX_TOKEN_BYTES))),
        FailureReason.TOKEN_TOO_LARGE,
    ),
    (
        "alg_none_secret_mode",
        "secret",
        lambda k: bearer(jwt.encode(claims(), None, algorithm="none")),
        FailureReason.UNSUPPORTED_ALGORITHM,
    ),
    (
        "alg_none_jwks_mode",
        "jwks",
        lambda k: bearer(jwt.encode(claims(), None, algorithm="none", headers={"kid": RSA_KID})),
        FailureReason.UNSUPPORTED_ALGORITHM,
    ),
    (
        "hs256_signed_with_rsa_public_pem",
        "jwks",
        lambda k: bearer(hs256_with_key_bytes(claims(), k.rsa_public_pem, RSA_KID)),
        FailureReason.UNSUPPORTED_ALGORITHM,
    ),
    (
        "hs512_secret_mode",
        "secret",
        lambda k: bearer(jwt.encode(claims(), (SECRET * 2).encode(), algorithm="HS512")),
        FailureReason.UNSUPPORTED_ALGORITHM,
    ),
    (
        "rs256_in_secret_mode",
        "secret",
        lambda k: bearer(rs256(k, claims())),
        FailureReason.UNSUPPORTED_ALGORITHM,
    ),
    (
        "es256_header_with_rsa_kid",
        "jwks",
        lambda k: bearer(es256(k, claims(), kid=RSA_KID)),
        FailureReason.UNSUPPORTED_ALGORITHM,
    ),
    (
        "wrong_secret",
        "secret",
        lambda k: bearer(hs256(claims(), secret=OTHER_SECRET)),
        FailureReason.INVALID_SIGNATURE,
    ),
    (
        "wrong_rsa_key",
        "jwks",
        lambda k: bearer(
            jwt.encode(claims(), k.other_rsa_private, algorithm="RS256", headers={"kid": RSA_KID})
        ),
        FailureReason.INVALID_SIGNATURE,
    ),
    (
        "payload_changed_after_signing",
        "secret",
        lambda k: bearer(replace_payload(hs256(claims(scope=SCOPE_READ)), claims())),
        FailureReason.INVALID_SIGNATURE,
    ),
    (
        "expired",
        "secret",
        lambda k: bearer(hs256(claims(exp=int(time.time()) - LEEWAY_SECONDS - 60))),
        FailureReason.TOKEN_EXPIRED,
    ),
    (
        "not_yet_valid",
        "secret",
        lambda k: bearer(hs256(claims(nbf=int(time.time()) + LEEWAY_SECONDS + 60))),
        FailureReason.TOKEN_NOT_YET_VALID,
    ),
    (
        "missing_exp",
        "secret",
        lambda k: bearer(hs256(claims(exp=None))),
        FailureReason.MISSING_CLAIM,
    ),
    (
        "exp_not_a_number",
        "secret",
        lambda k: bearer(hs256(claims(exp="tomorrow"))),
        FailureReason.TOKEN_MALFORMED,
    ),
    (
        "wrong_issuer",
        "secret",
        lambda k: bearer(hs256(claims(iss="someone-else"))),
        FailureReason.INVALID_ISSUER,
    ),
    (
        "missing_issuer",
        "secret",
        lambda k: bearer(hs256(claims(iss=None))),
        FailureReason.MISSING_CLAIM,
    ),
    (
        "wrong_audience",
        "secret",
        lambda k: bearer(hs256(claims(aud="another-api"))),
        FailureReason.INVALID_AUDIENCE,
    ),
    (
        "audience_list_without_ours",
        "secret",
        lambda k: bearer(hs256(claims(aud=["another-api", "third-api"]))),
        FailureReason.INVALID_AUDIENCE,
    ),
    (
        "missing_sub",
        "secret",
        lambda k: bearer(hs256(claims(sub=None))),
        FailureReason.MISSING_CLAIM,
    ),
    ("empty_sub", "secret", lambda k: bearer(hs256(claims(sub=""))), FailureReason.MISSING_CLAIM),
    (
        "scope_not_a_string",
        "secret",
        lambda k: bearer(hs256(claims(scope=[SCOPE_READ]))),
        FailureReason.INVALID_CLAIM,
    ),
    (
        "jwks_unknown_kid",
        "jwks",
        lambda k: bearer(rs256(k, claims(), kid="retired-key")),
        FailureReason.UNKNOWN_KEY_ID,
    ),
    (
        "jwks_no_kid",
        "jwks",
        lambda k: bearer(rs256(k, claims(), kid=None)),
        FailureReason.UNKNOWN_KEY_ID,
    ),
]


@pytest.mark.parametrize(
    ("mode", "build_header", "expected"),
    [pytest.param(mode, build, reason, id=name) for name, mode, build, reason in REJECTED],
)
def test_token_corpus_is_rejected(
    request: pytest.FixtureRequest,
    keys: Keys,
    mode: str,
    build_header: Builder,
    expected: FailureReason,
) -> None:
    settings = request.getfixturevalue(f"{mode}_settings")

    reason = rejection_reason(build_header(keys), settings)

    assert reason == expected


def test_token_corpus_has_twenty_kinds() -> None:
    assert len(REJECTED) >= 20


def test_rejection_message_never_contains_token(secret_settings: Settings) -> None:
    token = hs256(claims(exp=int(time.time()) - 3600))

    with pytest.raises(AuthError) as caught:
        verify_token(bearer(token), settings=secret_settings)

    assert token not in caught.value.message
    assert token.split(".")[2] not in str(caught.value)


def test_scheme_without_space_is_not_quoted(secret_settings: Settings) -> None:
    token = hs256(claims())

    with pytest.raises(AuthError) as caught:
        verify_token(token, settings=secret_settings)

    assert token not in caught.value.message


def test_malformed_token_never_reads_secret(
    secret_settings: Settings, secret_reads: list[str]
) -> None:
    rejection_reason("Bearer not-a-jwt", secret_settings)

    assert secret_reads == []


def test_oversized_token_is_rejected_before_decoding(
    monkeypatch: pytest.MonkeyPatch, secret_settings: Settings
) -> None:
    def fail_if_called(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the oversized token was decoded")

    monkeypatch.setattr(auth, "_read_jose_header", fail_if_called)

    reason = rejection_reason(bearer("a" * (MAX_TOKEN_BYTES + 1)), secret_settings)

    assert reason == FailureReason.TOKEN_TOO_LARGE


def test_token_at_size_limit_is_decoded(secret_settings: Settings) -> None:
    reason = rejection_reason(bearer("a" * MAX_TOKEN_BYTES), secret_settings)

    assert reason == FailureReason.TOKEN_MALFORMED


def test_secret_unavailable_is_rejected(secret_settings: Settings) -> None:
    settings = replace(secret_settings, jwt_secret_arn=SECRET_ARN + "-missing")

    reason = rejection_reason(bearer(hs256(claims())), settings)

    assert reason == FailureReason.SECRET_UNAVAILABLE


def test_no_key_source_is_not_configured(secret_settings: Settings) -> None:
    settings = replace(secret_settings, jwt_secret_arn="", jwks_url="")

    reason = rejection_reason(bearer(hs256(claims())), settings)

    assert reason == FailureReason.AUTH_NOT_CONFIGURED


def test_jwks_url_without_http_is_not_configured(keys: Keys) -> None:
    settings = make_settings(jwt_secret_arn="", jwks_url="file:///etc/jwks.json")

    reason = rejection_reason(bearer(rs256(keys, claims())), settings)

    assert reason == FailureReason.AUTH_NOT_CONFIGURED


def test_jwks_endpoint_down_is_unavailable(keys: Keys) -> None:
    settings = make_settings(jwt_secret_arn="", jwks_url=closed_port_url())

    started = time.monotonic()
    reason = rejection_reason(bearer(rs256(keys, claims())), settings)
    elapsed = time.monotonic() - started

    assert reason == FailureReason.JWKS_UNAVAILABLE
    assert elapsed < JWKS_TIMEOUT_SECONDS + 1.0


def test_jwks_endpoint_slow_is_unavailable_within_timeout(keys: Keys) -> None:
    with JwksServer(keys.jwks(), delay_seconds=JWKS_TIMEOUT_SECONDS + 5) as slow_server:
        settings = make_settings(jwt_secret_arn="", jwks_url=slow_server.url)

        started = time.monotonic()
        reason = rejection_reason(bearer(rs256(keys, claims())), settings)
        elapsed = time.monotonic() - started

    assert reason == FailureReason.JWKS_UNAVAILABLE
    assert elapsed < JWKS_TIMEOUT_SECONDS + 1.0
    assert slow_server.requests == 1


def test_jwks_endpoint_not_json_is_unavailable(keys: Keys) -> None:
    with JwksServer(b"<html>maintenance</html>") as broken_server:
        settings = make_settings(jwt_secret_arn="", jwks_url=broken_server.url)
        reason = rejection_reason(bearer(rs256(keys, claims())), settings)

    assert reason == FailureReason.JWKS_UNAVAILABLE


def test_jwks_without_usable_keys_is_unavailable(keys: Keys) -> None:
    with JwksServer({"keys": "not a list"}) as broken_server:
        settings = make_settings(jwt_secret_arn="", jwks_url=broken_server.url)
        reason = rejection_reason(bearer(rs256(keys, claims())), settings)

    assert reason == FailureReason.JWKS_UNAVAILABLE


# ---------------------------------------------------------------- accepted tokens


def test_hs256_valid_passes(secret_settings: Settings) -> None:
    principal = verify_token(bearer(hs256(claims())), settings=secret_settings)

    assert principal == Principal("client-7", frozenset({SCOPE_READ, SCOPE_WRITE}), "Bearer")


def test_rs256_valid_passes(keys: Keys, jwks_settings: Settings) -> None:
    principal = verify_token(bearer(rs256(keys, claims(scope=SCOPE_READ))), settings=jwks_settings)

    assert principal.principal_id == "client-7"
    assert principal.scopes == {SCOPE_READ}


def test_es256_valid_passes(keys: Keys, jwks_settings: Settings) -> None:
    principal = verify_token(bearer(es256(keys, claims(scope=SCOPE_WRITE))), settings=jwks_settings)

    assert principal.principal_id == "client-7"
    assert principal.scopes == {SCOPE_WRITE}


def test_jwks_keys_are_fetched_once(keys: Keys, jwks_server: JwksServer) -> None:
    settings = make_settings(jwt_secret_arn="", jwks_url=jwks_server.url)
    before = jwks_server.requests

    for _ in range(3):
        verify_token(bearer(rs256(keys, claims())), settings=settings)
    verify_token(bearer(es256(keys, claims())), settings=settings)

    assert jwks_server.requests - before == 1


def test_hs256_in_jwks_mode_never_fetches_keys(keys: Keys, jwks_server: JwksServer) -> None:
    settings = make_settings(jwt_secret_arn="", jwks_url=jwks_server.url)
    before = jwks_server.requests

    reason = rejection_reason(bearer(hs256(claims(), kid=RSA_KID)), settings)

    assert reason == FailureReason.UNSUPPORTED_ALGORITHM
    assert jwks_server.requests == before


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_scheme_is_case_insensitive(secret_settings: Settings, scheme: str) -> None:
    principal = verify_token(f"{scheme} {hs256(claims())}", settings=secret_settings)

    assert principal.principal_id == "client-7"


def test_surrounding_white_space_is_ignored(secret_settings: Settings) -> None:
    principal = verify_token(f"  Bearer {hs256(claims())}  ", settings=secret_settings)

    assert principal.principal_id == "client-7"


def test_expiry_within_leeway_passes(secret_settings: Settings) -> None:
    token = hs256(claims(exp=int(time.time()) - LEEWAY_SECONDS + 10))

    principal = verify_token(bearer(token), settings=secret_settings)

    assert principal.principal_id == "client-7"


def test_audience_list_containing_ours_passes(secret_settings: Settings) -> None:
    token = hs256(claims(aud=["another-api", AUDIENCE]))

    principal = verify_token(bearer(token), settings=secret_settings)

    assert principal.principal_id == "client-7"


def test_scp_list_gives_scopes(secret_settings: Settings) -> None:
    token = hs256(claims(scope=None, scp=[SCOPE_READ, "openid"]))

    principal = verify_token(bearer(token), settings=secret_settings)

    assert principal.scopes == {SCOPE_READ, "openid"}


def test_scope_and_scp_are_combined(secret_settings: Settings) -> None:
    token = hs256(claims(scope=SCOPE_READ, scp=[SCOPE_WRITE]))

    principal = verify_token(bearer(token), settings=secret_settings)

    assert principal.scopes == {SCOPE_READ, SCOPE_WRITE}


def test_token_without_scopes_passes_with_none(secret_settings: Settings) -> None:
    principal = verify_token(bearer(hs256(claims(scope=None))), settings=secret_settings)

    assert principal.scopes == frozenset()


@pytest.mark.parametrize(
    "scopes",
    [{SCOPE_READ}, {SCOPE_WRITE}, {SCOPE_READ, SCOPE_WRITE}],
    ids=["read", "write", "read_write"],
)
def test_valid_token_keeps_its_scopes(secret_settings: Settings, scopes: set[str]) -> None:
    token = hs256(claims(scope=" ".join(sorted(scopes))))

    principal = verify_token(bearer(token), settings=secret_settings)

    assert principal.scopes == scopes


# ---------------------------------------------------------------- policy


def wildcard_matches(pattern: str, value: str) -> bool:
    """Match as IAM does: "*" is any run of characters and "?" any one character."""
    parts = []
    for character in pattern:
        if character == "*":
            parts.append(".*")
        elif character == "?":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    return re.fullmatch("".join(parts), value) is not None


def policy_allows(policy: dict[str, Any], method_arn: str) -> bool:
    """Evaluate an authorizer policy as IAM does: an explicit Deny wins, else an Allow is needed."""
    allowed = False
    for statement in policy["policyDocument"]["Statement"]:
        resources = statement["Resource"]
        if isinstance(resources, str):
            resources = [resources]
        if statement["Action"] not in ("execute-api:Invoke", "execute-api:*", "*"):
            continue
        if not any(wildcard_matches(resource, method_arn) for resource in resources):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def method_arn(method: str, path: str, prefix: str = STAGE_PREFIX) -> str:
    return f"{prefix}/{method}{path}"


def principal_with(*scopes: str) -> Principal:
    return Principal(principal_id="client-7", scopes=frozenset(scopes))


@pytest.mark.parametrize(
    "scopes",
    [(SCOPE_READ,), (SCOPE_WRITE,), (SCOPE_READ, SCOPE_WRITE), (SCOPE_HEALTH,)],
    ids=["read", "write", "read_write", "health"],
)
@pytest.mark.parametrize(("method", "path", "needed"), REQUESTS)
def test_policy_covers_exactly_scope_routes(
    scopes: tuple[str, ...], method: str, path: str, needed: set[str]
) -> None:
    policy = build_policy(principal_with(*scopes), method_arn("GET", "/health"))

    assert policy_allows(policy, method_arn(method, path)) == bool(needed & set(scopes))


@pytest.mark.parametrize(
    "scopes",
    [(SCOPE_READ,), (SCOPE_WRITE,), (SCOPE_READ, SCOPE_WRITE), (SCOPE_HEALTH,), ()],
    ids=["read", "write", "read_write", "health", "none"],
)
@pytest.mark.parametrize(("method", "path", "needed"), REQUESTS)
def test_route_allowed_agrees_with_policy(
    scopes: tuple[str, ...], method: str, path: str, needed: set[str]
) -> None:
    policy = build_policy(principal_with(*scopes), method_arn("POST", "/events"))

    assert route_allowed(frozenset(scopes), method, path) == bool(needed & set(scopes))
    assert route_allowed(frozenset(scopes), method, path) == policy_allows(
        policy, method_arn(method, path)
    )


def test_cached_read_policy_denies_post() -> None:
    # API Gateway builds the policy on the first request (a GET) and replays it for the POST.
    policy = build_policy(principal_with(SCOPE_READ), method_arn("GET", "/events"))

    assert policy_allows(policy, method_arn("GET", "/events/evt-0001"))
    assert policy_allows(policy, method_arn("GET", "/calls/call-42/events"))
    assert not policy_allows(policy, method_arn("POST", "/events"))


def test_cached_write_policy_allows_health_after_post() -> None:
    policy = build_policy(principal_with(SCOPE_WRITE), method_arn("POST", "/events"))

    assert policy_allows(policy, method_arn("GET", "/health"))
    assert not policy_allows(policy, method_arn("GET", "/events"))


def test_health_scope_allows_only_health() -> None:
    policy = build_policy(principal_with(SCOPE_HEALTH), method_arn("GET", "/health"))
    statement = policy["policyDocument"]["Statement"][0]

    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == [f"{STAGE_PREFIX}/GET/health"]


def test_policy_does_not_depend_on_requested_route() -> None:
    principal = principal_with(SCOPE_READ)

    from_get = build_policy(principal, method_arn("GET", "/events/evt-0001"))
    from_post = build_policy(principal, method_arn("POST", "/events"))

    assert from_get == from_post


def test_policy_is_limited_to_api_and_stage() -> None:
    policy = build_policy(principal_with(SCOPE_READ, SCOPE_WRITE), method_arn("GET", "/events"))
    other_api = "arn:aws:execute-api:us-east-1:000000000000:zzz999/local"

    assert not policy_allows(policy, method_arn("GET", "/events", prefix=f"{API_PREFIX}/prod"))
    assert not policy_allows(policy, method_arn("GET", "/events", prefix=other_api))


def test_policy_without_scopes_denies_whole_api() -> None:
    policy = build_policy(principal_with(), method_arn("GET", "/health"))
    statements = policy["policyDocument"]["Statement"]

    assert [statement["Effect"] for statement in statements] == ["Deny"]
    assert statements[0]["Resource"] == f"{API_PREFIX}/*"
    for method, path, _ in REQUESTS:
        assert not policy_allows(policy, method_arn(method, path))


def test_policy_with_unknown_scope_only_denies() -> None:
    policy = build_policy(principal_with("openid", "profile"), method_arn("GET", "/health"))

    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_policy_context_and_principal() -> None:
    principal = principal_with(SCOPE_WRITE, SCOPE_READ, "openid")

    policy = build_policy(principal, method_arn("GET", "/events"))

    assert policy["principalId"] == "client-7"
    assert policy["context"] == {"scopes": "events:read events:write", "tokenType": "Bearer"}
    assert policy["policyDocument"]["Version"] == "2012-10-17"


def test_policy_never_contains_token(secret_settings: Settings) -> None:
    token = hs256(claims())
    principal = verify_token(bearer(token), settings=secret_settings)

    policy_text = json.dumps(build_policy(principal, method_arn("GET", "/events")))

    assert token not in policy_text
    assert token.split(".")[2] not in policy_text


@pytest.mark.parametrize(
    "bad_arn",
    [
        "",
        "arn:aws:lambda:us-east-1:000000000000:function:x",
        "arn:aws:execute-api:us-east-1:000000000000:abc123",
        "arn:aws:execute-api:us-east-1:000000000000:abc123/local",
    ],
)
def test_build_policy_rejects_non_method_arn(bad_arn: str) -> None:
    with pytest.raises(ValueError, match="methodArn"):
        build_policy(principal_with(SCOPE_READ), bad_arn)


def test_route_allowed_requires_exact_method() -> None:
    assert not route_allowed(frozenset({SCOPE_READ}), "get", "/events")
    assert not route_allowed(frozenset({SCOPE_READ}), "DELETE", "/events/evt-0001")


def test_route_wildcard_matches_newline_in_path() -> None:
    # IAM's * matches any character, so API Gateway allows this path. The
    # authorizer must not log it as outside the token's scopes.
    assert route_allowed(frozenset({SCOPE_READ}), "GET", "/events/a\nb")
