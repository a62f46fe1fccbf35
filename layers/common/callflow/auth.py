"""Bearer token verification, scopes, and the policy the API Gateway authorizer returns.

Two modes, chosen by configuration. When `jwks_url` is set, tokens must be
RS256 or ES256 and signed by a key published at that URL (Cognito, Auth0,
Okta, ...). Otherwise tokens must be HS256, signed with the key string stored
in the Secrets Manager secret `jwt_secret_arn`. The accepted algorithms are
fixed per mode and never read from the token, which rules out "none" and the
HS256-with-a-public-key confusion.

API Gateway caches the returned policy per token (300 s by default) and applies
it to every later request with that token, whatever its method and path. So
`build_policy` lists every route the token's scopes permit, not only the route
of the request that triggered the authorizer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal, Protocol

import jwt

from callflow import secrets
from callflow.errors import AuthError

SCOPE_READ = "events:read"
SCOPE_WRITE = "events:write"
# For uptime checks: /health only, so a monitor's token reads no event.
SCOPE_HEALTH = "health:read"
KNOWN_SCOPES = frozenset({SCOPE_READ, SCOPE_WRITE, SCOPE_HEALTH})

TOKEN_TYPE: Literal["Bearer"] = "Bearer"
MAX_TOKEN_BYTES = 8 * 1024
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub")

JWKS_ALGORITHMS = ("RS256", "ES256")
SECRET_ALGORITHMS = ("HS256",)
JWKS_TIMEOUT_SECONDS = 2.0
JWKS_CACHE_SECONDS = 300
SECRET_MAX_AGE_SECONDS = 300

POLICY_VERSION = "2012-10-17"
INVOKE_ACTION = "execute-api:Invoke"

# Routes each scope permits, as (HTTP method, resource path). "*" is the IAM
# wildcard: it matches any run of characters, "/" included.
SCOPE_ROUTES: dict[str, tuple[tuple[str, str], ...]] = {
    SCOPE_READ: (
        ("GET", "/events"),
        ("GET", "/events/*"),
        ("GET", "/calls/*/events"),
        ("GET", "/health"),
    ),
    SCOPE_WRITE: (
        ("POST", "/events"),
        ("GET", "/health"),
    ),
    SCOPE_HEALTH: (("GET", "/health"),),
}

_BASE64URL_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


class FailureReason(StrEnum):
    """Stable failureReason values that the authorizer writes to its log."""

    TOKEN_MISSING = "TOKEN_MISSING"
    INVALID_SCHEME = "INVALID_SCHEME"
    TOKEN_TOO_LARGE = "TOKEN_TOO_LARGE"
    TOKEN_MALFORMED = "TOKEN_MALFORMED"
    UNSUPPORTED_ALGORITHM = "UNSUPPORTED_ALGORITHM"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    UNKNOWN_KEY_ID = "UNKNOWN_KEY_ID"
    JWKS_UNAVAILABLE = "JWKS_UNAVAILABLE"
    SECRET_UNAVAILABLE = "SECRET_UNAVAILABLE"
    AUTH_NOT_CONFIGURED = "AUTH_NOT_CONFIGURED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
    MISSING_CLAIM = "MISSING_CLAIM"
    INVALID_CLAIM = "INVALID_CLAIM"
    INVALID_ISSUER = "INVALID_ISSUER"
    INVALID_AUDIENCE = "INVALID_AUDIENCE"
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"


class AuthSettings(Protocol):
    """The part of `callflow.settings.Settings` that token verification reads."""

    @property
    def jwks_url(self) -> str: ...

    @property
    def jwt_secret_arn(self) -> str: ...

    @property
    def jwt_issuer(self) -> str: ...

    @property
    def jwt_audience(self) -> str: ...


@dataclass(frozen=True)
class Principal:
    """The verified caller: the token's subject and scopes."""

    principal_id: str
    scopes: frozenset[str]
    token_type: Literal["Bearer"] = TOKEN_TYPE


@dataclass(frozen=True)
class MethodArn:
    """The parts of an execute-api method ARN.

    The form is arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{METHOD}/{path}.
    """

    partition: str
    region: str
    account_id: str
    api_id: str
    stage: str
    http_method: str
    resource_path: str

    def api_prefix(self) -> str:
        """Return the ARN up to the API id, without a trailing slash."""
        return (
            f"arn:{self.partition}:execute-api:{self.region}:{self.account_id}:{self.api_id}"
        )

    def route_arn(self, http_method: str, resource_path: str) -> str:
        """Return the ARN of one route of this API and stage."""
        return f"{self.api_prefix()}/{self.stage}/{http_method}{resource_path}"


# ---------------------------------------------------------------- verification


def verify_token(authorization_header: str | None, *, settings: AuthSettings) -> Principal:
    """Verify the Authorization header value and return the principal it names.

    Raises AuthError with a FailureReason. Structural checks run before any
    key is fetched, so a malformed token costs no JWKS or Secrets Manager call.
    """
    token = _extract_bearer_token(authorization_header)
    header = _read_jose_header(token)

    if not settings.jwt_issuer or not settings.jwt_audience:
        raise AuthError(
            FailureReason.AUTH_NOT_CONFIGURED,
            "JWT_ISSUER and JWT_AUDIENCE must both be set for the authorizer.",
        )

    key: Any
    if settings.jwks_url:
        algorithms = JWKS_ALGORITHMS
        _check_algorithm(header, algorithms)
        key = _jwks_signing_key(settings.jwks_url, header)
    else:
        algorithms = SECRET_ALGORITHMS
        _check_algorithm(header, algorithms)
        key = _signing_secret(settings.jwt_secret_arn)

    claims = _decode_claims(token, key, algorithms, settings)

    subject = claims["sub"]
    if not subject:
        raise AuthError(FailureReason.MISSING_CLAIM, "The token's sub claim is empty.")
    return Principal(principal_id=subject, scopes=_read_scopes(claims))


def clear_caches() -> None:
    """Forget the cached JWKS clients and their key sets (for tests)."""
    _jwks_client.cache_clear()


def _extract_bearer_token(authorization_header: str | None) -> str:
    if authorization_header is None:
        raise AuthError(
            FailureReason.TOKEN_MISSING,
            "The request has no Authorization header: send Authorization: Bearer <JWT>.",
        )

    # Surrounding white space is not part of an HTTP field value (RFC 9110, 5.5).
    value = authorization_header.strip()
    if not value:
        raise AuthError(FailureReason.TOKEN_MISSING, "The Authorization header is empty.")

    # The scheme is not quoted in the message: without a space it is the token itself.
    scheme, _, token = value.partition(" ")
    if scheme.lower() != TOKEN_TYPE.lower():
        raise AuthError(
            FailureReason.INVALID_SCHEME,
            "The Authorization header does not use the Bearer scheme: "
            "send Authorization: Bearer <JWT>.",
        )
    if not token:
        raise AuthError(
            FailureReason.TOKEN_MISSING, "The Authorization header has no token after Bearer."
        )

    # Checked on the text before anything is decoded. A valid token is ASCII,
    # so its length in characters equals its length in bytes.
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError(
            FailureReason.TOKEN_TOO_LARGE,
            f"The token is {len(token)} characters long; the limit is {MAX_TOKEN_BYTES} bytes.",
        )
    if not token.isascii():
        raise AuthError(
            FailureReason.TOKEN_MALFORMED, "The token contains characters outside ASCII."
        )
    if any(character.isspace() for character in token):
        raise AuthError(
            FailureReason.TOKEN_MALFORMED,
            "The Authorization header must hold exactly one token after Bearer.",
        )
    return token


def _read_jose_header(token: str) -> dict[str, Any]:
    """Check the compact JWS structure and return the decoded JOSE header.

    The payload is decoded too, so that a payload that is not UTF-8 JSON is
    rejected as malformed before any key is fetched. The signature segment may
    be empty here, so that an unsigned token is rejected for its algorithm.
    """
    segments = token.split(".")
    if len(segments) != 3:
        raise AuthError(
            FailureReason.TOKEN_MALFORMED,
            f"The token has {len(segments)} dot-separated segments; a JWT has three.",
        )

    header_segment, payload_segment, signature_segment = segments
    if not header_segment or not payload_segment:
        raise AuthError(
            FailureReason.TOKEN_MALFORMED, "The token's header or payload segment is empty."
        )

    header = _decode_json_segment(header_segment, "header")
    _decode_json_segment(payload_segment, "payload")
    _decode_base64url(signature_segment, "signature")
    return header


def _decode_base64url(segment: str, name: str) -> bytes:
    if not _BASE64URL_SEGMENT.fullmatch(segment):
        raise AuthError(
            FailureReason.TOKEN_MALFORMED,
            f"The token's {name} segment contains characters outside base64url.",
        )
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as error:
        raise AuthError(
            FailureReason.TOKEN_MALFORMED, f"The token's {name} segment is not valid base64url."
        ) from error


def _decode_json_segment(segment: str, name: str) -> dict[str, Any]:
    raw = _decode_base64url(segment, name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AuthError(
            FailureReason.TOKEN_MALFORMED,
            f"The token's {name} does not decode to UTF-8 text, so it is not a JWT {name}.",
        ) from error

    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise AuthError(
            FailureReason.TOKEN_MALFORMED, f"The token's {name} is not valid JSON."
        ) from error

    if not isinstance(value, dict):
        raise AuthError(
            FailureReason.TOKEN_MALFORMED, f"The token's {name} is not a JSON object."
        )
    return value


def _check_algorithm(header: dict[str, Any], algorithms: tuple[str, ...]) -> None:
    # The header's alg value is not quoted in the message: it is caller-controlled text.
    if header.get("alg") not in algorithms:
        raise AuthError(
            FailureReason.UNSUPPORTED_ALGORITHM,
            f"The token's alg header is not one of {', '.join(algorithms)}, "
            "the algorithms this API is configured to accept.",
        )


# ---------------------------------------------------------------- keys


@lru_cache(maxsize=4)
def _jwks_client(url: str, timeout_seconds: float) -> jwt.PyJWKClient:
    # One client per URL for the life of the execution environment, so its
    # key-set cache survives between invocations. The key set is fetched again
    # after JWKS_CACHE_SECONDS, which picks up added and removed keys.
    return jwt.PyJWKClient(
        url,
        cache_jwk_set=True,
        lifespan=JWKS_CACHE_SECONDS,
        timeout=timeout_seconds,
    )


def _jwks_signing_key(url: str, header: dict[str, Any]) -> jwt.PyJWK:
    key_id = header.get("kid")
    if key_id is None:
        raise AuthError(
            FailureReason.UNKNOWN_KEY_ID,
            "The token has no kid header, so no key from the JWKS can be chosen.",
        )
    if not isinstance(key_id, str):
        raise AuthError(FailureReason.TOKEN_MALFORMED, "The token's kid header is not a string.")

    try:
        client = _jwks_client(url, JWKS_TIMEOUT_SECONDS)
    except jwt.PyJWKClientError as error:
        raise AuthError(
            FailureReason.AUTH_NOT_CONFIGURED,
            f"JWKS_URL {url} is not usable ({error}): set an https URL.",
        ) from error

    # Fetch (or take from the cache) the whole key set first: errors here come
    # from the endpoint, while a failed lookup below means an unknown kid.
    # NOTE: the timeout applies to each socket operation, not to the whole
    # fetch, and does not cover DNS resolution.
    try:
        client.get_signing_keys()
    except jwt.PyJWKClientConnectionError as error:
        raise _jwks_unavailable(url, error) from error
    except jwt.PyJWKClientError as error:
        raise _jwks_unavailable(url, error) from error
    except jwt.PyJWKSetError as error:
        raise _jwks_unavailable(url, error) from error
    except (ValueError, OSError) as error:
        # PyJWT lets a body that is not JSON, and a connection reset while
        # reading the body, through without wrapping them.
        raise _jwks_unavailable(url, error) from error

    try:
        return client.get_signing_key(key_id)
    except jwt.PyJWKClientConnectionError as error:
        raise _jwks_unavailable(url, error) from error
    except jwt.PyJWKClientError as error:
        raise AuthError(
            FailureReason.UNKNOWN_KEY_ID,
            f"The token's kid is not among the signing keys published at {url}.",
        ) from error


def _jwks_unavailable(url: str, error: Exception) -> AuthError:
    return AuthError(
        FailureReason.JWKS_UNAVAILABLE,
        f"Fetching the signing keys from {url} failed ({type(error).__name__}); "
        f"check that the endpoint answers within {JWKS_TIMEOUT_SECONDS:g} s.",
    )


def _signing_secret(secret_arn: str) -> bytes:
    if not secret_arn:
        raise AuthError(
            FailureReason.AUTH_NOT_CONFIGURED,
            "Neither JWKS_URL nor JWT_SECRET_ARN is set, so no token can be verified.",
        )
    try:
        secret = secrets.get_secret_value(secret_arn, max_age_seconds=SECRET_MAX_AGE_SECONDS)
    except secrets.SecretUnavailableError as error:
        raise AuthError(FailureReason.SECRET_UNAVAILABLE, error.message) from error
    return secret.encode("utf-8")


# ---------------------------------------------------------------- claims


def _decode_claims(
    token: str, key: Any, algorithms: tuple[str, ...], settings: AuthSettings
) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as error:
        raise AuthError(
            FailureReason.TOKEN_EXPIRED,
            f"The token expired more than {LEEWAY_SECONDS} s ago: request a new one.",
        ) from error
    except jwt.ImmatureSignatureError as error:
        raise AuthError(
            FailureReason.TOKEN_NOT_YET_VALID,
            f"The token's nbf or iat lies more than {LEEWAY_SECONDS} s in the future.",
        ) from error
    except jwt.InvalidSignatureError as error:
        raise AuthError(
            FailureReason.INVALID_SIGNATURE, "The token's signature does not match its key."
        ) from error
    except jwt.InvalidAlgorithmError as error:
        raise AuthError(
            FailureReason.UNSUPPORTED_ALGORITHM,
            "The token's alg header does not match the algorithm of its signing key.",
        ) from error
    except jwt.InvalidKeyError as error:
        raise AuthError(
            FailureReason.INVALID_SIGNATURE, "The configured key cannot verify this token."
        ) from error
    except jwt.InvalidIssuerError as error:
        raise AuthError(
            FailureReason.INVALID_ISSUER,
            f"The token's iss claim is not {settings.jwt_issuer!r}.",
        ) from error
    except jwt.InvalidAudienceError as error:
        raise AuthError(
            FailureReason.INVALID_AUDIENCE,
            f"The token's aud claim does not contain {settings.jwt_audience!r}.",
        ) from error
    except jwt.MissingRequiredClaimError as error:
        raise AuthError(
            FailureReason.MISSING_CLAIM, f"The token has no {error.claim} claim."
        ) from error
    except jwt.exceptions.InvalidSubjectError as error:
        raise AuthError(
            FailureReason.INVALID_CLAIM, "The token's sub claim is not a string."
        ) from error
    except jwt.exceptions.InvalidIssuedAtError as error:
        raise AuthError(
            FailureReason.INVALID_CLAIM, "The token's iat claim is not a number."
        ) from error
    except jwt.exceptions.InvalidJTIError as error:
        raise AuthError(
            FailureReason.INVALID_CLAIM, "The token's jti claim is not a string."
        ) from error
    except jwt.DecodeError as error:
        raise AuthError(
            FailureReason.TOKEN_MALFORMED,
            "The token could not be decoded: a claim such as exp or nbf has the wrong type.",
        ) from error
    except jwt.InvalidTokenError as error:
        # For example a crit header that names an extension PyJWT does not support.
        raise AuthError(
            FailureReason.TOKEN_MALFORMED, f"The token was rejected ({type(error).__name__})."
        ) from error


def _read_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """Collect scopes from "scope" (a space-separated string) and "scp".

    Okta sends "scp" as a list of strings, and some providers as a space-separated string.
    """
    scopes: set[str] = set()

    scope = claims.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise AuthError(
                FailureReason.INVALID_CLAIM,
                "The token's scope claim is not a space-separated string.",
            )
        scopes.update(scope.split())

    scp = claims.get("scp")
    if isinstance(scp, str):
        scopes.update(scp.split())
    elif isinstance(scp, list) and all(isinstance(item, str) for item in scp):
        scopes.update(scp)
    elif scp is not None:
        raise AuthError(
            FailureReason.INVALID_CLAIM, "The token's scp claim is not a list of strings."
        )

    return frozenset(scopes)


# ---------------------------------------------------------------- policy


def parse_method_arn(method_arn: str) -> MethodArn:
    """Split an execute-api method ARN into its parts. Raise ValueError when it is not one."""
    fields = method_arn.split(":", 5)
    if len(fields) != 6 or fields[0] != "arn" or fields[2] != "execute-api":
        raise ValueError(
            f"methodArn {method_arn!r} is not an execute-api ARN "
            "(arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{METHOD}/{path})."
        )

    _, partition, _, region, account_id, resource = fields
    parts = resource.split("/", 3)
    if len(parts) < 3 or not all(parts[:3]):
        raise ValueError(
            f"methodArn {method_arn!r} does not end in {{apiId}}/{{stage}}/{{METHOD}}/{{path}}."
        )

    api_id, stage, http_method = parts[:3]
    resource_path = "/" + parts[3] if len(parts) == 4 else "/"
    return MethodArn(
        partition=partition,
        region=region,
        account_id=account_id,
        api_id=api_id,
        stage=stage,
        http_method=http_method,
        resource_path=resource_path,
    )


def allowed_routes(scopes: frozenset[str] | set[str]) -> list[tuple[str, str]]:
    """Return the (method, path pattern) routes the scopes permit, in a stable order."""
    routes: list[tuple[str, str]] = []
    for scope in sorted(scopes & KNOWN_SCOPES):
        for route in SCOPE_ROUTES[scope]:
            if route not in routes:
                routes.append(route)
    return routes


def route_allowed(scopes: frozenset[str] | set[str], method: str, path: str) -> bool:
    """Return whether the scopes permit `method` on `path`, matching "*" as IAM does."""
    return any(
        route_method == method and _wildcard_pattern(route_path).fullmatch(path)
        for route_method, route_path in allowed_routes(scopes)
    )


def build_policy(principal: Principal, method_arn: str) -> dict[str, Any]:
    """Build the authorizer result: the IAM policy for every route the scopes permit.

    The routes come from the API id and stage of `method_arn`, not from its
    method and path, because API Gateway reuses a cached policy for other
    requests with the same token. A principal with no known scope gets an
    explicit Deny on the whole API, so API Gateway returns 403. The
    token is never copied into the policy or its context.
    """
    arn = parse_method_arn(method_arn)
    routes = allowed_routes(principal.scopes)

    if routes:
        statement = {
            "Effect": "Allow",
            "Action": INVOKE_ACTION,
            "Resource": [arn.route_arn(method, path) for method, path in routes],
        }
    else:
        statement = {
            "Effect": "Deny",
            "Action": INVOKE_ACTION,
            "Resource": f"{arn.api_prefix()}/*",
        }

    return {
        "principalId": principal.principal_id,
        "policyDocument": {"Version": POLICY_VERSION, "Statement": [statement]},
        "context": {
            "scopes": format_scopes(principal.scopes),
            "tokenType": principal.token_type,
        },
    }


def format_scopes(scopes: frozenset[str] | set[str]) -> str:
    """Return the scopes this API defines, sorted and space-separated. Other scopes are left out."""
    return " ".join(sorted(scopes & KNOWN_SCOPES))


@lru_cache(maxsize=16)
def _wildcard_pattern(pattern: str) -> re.Pattern[str]:
    # DOTALL because IAM's * matches any character, a newline in a path included.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
