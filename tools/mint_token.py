#!/usr/bin/env python3
"""Print an HS256 bearer token for a deployed Callflow stack.

The signing key is read from the Secrets Manager secret named by the stack's
output JwtSecretArn. boto3 picks the account, region and endpoint as usual, so
with AWS_ENDPOINT_URL set the tool talks to a local emulator. Only the token
goes to stdout:

    TOKEN=$(python tools/mint_token.py --scopes "events:read")
    curl -H "Authorization: Bearer $TOKEN" "$API_BASE_URL/health"

Stacks deployed with a JwksUrl do not accept these tokens: get them from the
identity provider instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Run as a script, only tools/ is on sys.path, but the callflow package lives in the layer.
COMMON_LAYER = Path(__file__).resolve().parent.parent / "layers" / "common"
if str(COMMON_LAYER) not in sys.path:
    sys.path.insert(0, str(COMMON_LAYER))

import jwt  # noqa: E402

from callflow import secrets  # noqa: E402
from callflow.auth import KNOWN_SCOPES  # noqa: E402
from callflow.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER, get_settings  # noqa: E402

STACK_NAME_ENV = "CALLFLOW_STACK_NAME"
DEFAULT_STACK_NAME = "callflow-local"
DEFAULT_SCOPES = "events:read events:write"
DEFAULT_SUBJECT = "callflow-developer"
DEFAULT_TTL_SECONDS = 3600
SECRET_OUTPUT_KEY = "JwtSecretArn"
ALGORITHM = "HS256"


class StackLookupError(Exception):
    """The stack or its JwtSecretArn output could not be read."""


def mint_token(
    secret: str,
    scopes: str | Iterable[str],
    subject: str,
    ttl: int,
    issuer: str,
    audience: str,
    now: float | None = None,
) -> str:
    """Sign an HS256 token with `secret` (encoded UTF-8) that expires `ttl` seconds after `now`.

    `scopes` is a space-separated string or an iterable of scopes. `now` is
    Unix time in seconds and defaults to the current time. A negative `ttl`
    gives a token that has already expired, which tests use.
    """
    scope_list = scopes.split() if isinstance(scopes, str) else list(scopes)
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "scope": " ".join(scope_list),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret.encode("utf-8"), algorithm=ALGORITHM)


def find_jwt_secret_arn(stack_name: str, cloudformation: Any = None) -> str:
    """Return the stack's JwtSecretArn output. Raise StackLookupError naming what is missing."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    client = cloudformation if cloudformation is not None else _cloudformation_client()
    location = _describe_location(client)

    try:
        response = client.describe_stacks(StackName=stack_name)
    except ClientError as error:
        details = error.response.get("Error", {})
        message = details.get("Message", "")
        if details.get("Code") == "ValidationError" and "does not exist" in message:
            raise StackLookupError(
                f"Stack {stack_name!r} was not found {location}. Deploy it first: "
                f"`make local` for the local emulator, `sam deploy --stack-name {stack_name}` "
                f"for AWS. Or pass --stack-name or set {STACK_NAME_ENV} to a deployed stack."
            ) from error
        raise StackLookupError(
            f"Describing stack {stack_name!r} {location} failed with "
            f"{details.get('Code', 'an error')}: {message}"
        ) from error
    except BotoCoreError as error:
        hint = "Check AWS credentials, the region and AWS_ENDPOINT_URL."
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        if isinstance(error, EndpointConnectionError) and endpoint.startswith("http://127.0.0.1:"):
            hint = f"No emulator answers at {endpoint}: start it with `make local`."
        raise StackLookupError(
            f"Describing stack {stack_name!r} {location} failed: {error}. {hint}"
        ) from error

    stacks = response.get("Stacks", [])
    outputs = {
        output["OutputKey"]: output["OutputValue"]
        for stack in stacks[:1]
        for output in stack.get("Outputs", [])
    }
    if SECRET_OUTPUT_KEY not in outputs:
        raise StackLookupError(
            f"Stack {stack_name!r} {location} has no output {SECRET_OUTPUT_KEY}. Wait until "
            f"its deployment has finished, or redeploy it from the current template.yaml "
            f"(sam deploy --stack-name {stack_name})."
        )
    return outputs[SECRET_OUTPUT_KEY]


def _cloudformation_client() -> Any:
    import boto3

    return boto3.client("cloudformation")


def _describe_location(client: Any) -> str:
    meta = getattr(client, "meta", None)
    region = getattr(meta, "region_name", None) or "(no region set)"
    endpoint = getattr(meta, "endpoint_url", None) or "(default endpoint)"
    return f"in region {region} at {endpoint}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser; defaults come from the environment and callflow.settings."""
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="mint_token.py",
        description="Print an HS256 bearer token signed with the JwtSecretArn secret of a stack.",
    )
    parser.add_argument(
        "--stack-name",
        default=os.environ.get(STACK_NAME_ENV) or DEFAULT_STACK_NAME,
        help=f"CloudFormation stack to read the secret from (default: ${STACK_NAME_ENV}, "
        f"else {DEFAULT_STACK_NAME}).",
    )
    parser.add_argument(
        "--scopes",
        default=DEFAULT_SCOPES,
        help=f"space-separated scopes for the scope claim (default: {DEFAULT_SCOPES!r}).",
    )
    parser.add_argument(
        "--subject",
        default=DEFAULT_SUBJECT,
        help=f"sub claim, which becomes the principalId (default: {DEFAULT_SUBJECT}).",
    )
    parser.add_argument(
        "--ttl",
        type=_positive_int,
        default=DEFAULT_TTL_SECONDS,
        help=f"lifetime of the token in seconds (default: {DEFAULT_TTL_SECONDS}).",
    )
    parser.add_argument(
        "--issuer",
        default=settings.jwt_issuer,
        help=f"iss claim (default: $JWT_ISSUER, else {DEFAULT_JWT_ISSUER}).",
    )
    parser.add_argument(
        "--audience",
        default=settings.jwt_audience,
        help=f"aud claim (default: $JWT_AUDIENCE, else {DEFAULT_JWT_AUDIENCE}).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print a token and return 0, or print what is missing to stderr and return 1."""
    args = build_parser().parse_args(argv)
    unknown = sorted(set(args.scopes.split()) - KNOWN_SCOPES)
    if unknown:
        # Still minted, for testing denials, but the API grants nothing for these.
        print(
            f"mint_token.py: warning: scopes {', '.join(unknown)} are unknown to the API, "
            f"which defines only {', '.join(sorted(KNOWN_SCOPES))}",
            file=sys.stderr,
        )

    try:
        secret_arn = find_jwt_secret_arn(args.stack_name)
        secret = secrets.get_secret_value(secret_arn)
    except StackLookupError as error:
        print(f"mint_token.py: error: {error}", file=sys.stderr)
        return 1
    except secrets.SecretUnavailableError as error:
        print(f"mint_token.py: error: {error.message}", file=sys.stderr)
        return 1

    print(
        mint_token(
            secret,
            args.scopes,
            subject=args.subject,
            ttl=args.ttl,
            issuer=args.issuer,
            audience=args.audience,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
