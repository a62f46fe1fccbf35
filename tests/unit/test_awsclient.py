"""The standard-library AWS clients (callflow.awsclient), checked against boto3 and botocore.

Three kinds of server back these tests, all on 127.0.0.1:
- moto's ThreadedMotoServer, where every call of S3Client must return what a
  boto3 client returns for the same call against the same server;
- a scripted ThreadingHTTPServer that replies to each request with the next
  step of a list (an S3 response, a stall or a dropped connection), for
  retries, timeouts and connection reuse;
- none at all for the SigV4 checks, which sign the same request with botocore
  and with sign_request and compare the Authorization headers. Neither moto nor
  the local emulator checks signatures, so these checks are what stands for
  real S3 accepting them.
"""

from __future__ import annotations

import datetime
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.utils import percent_encode
from moto.server import ThreadedMotoServer

from callflow.awsclient import (
    Credentials,
    Endpoint,
    S3Client,
    SecretsManagerClient,
    canonical_query_string,
    sign_request,
)

REGION = "us-east-1"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//token+with/slashes="

# Keys whose URL path or listing needs care: spaces, "+" (a space in form
# encoding), "=", non-ASCII letters, "~" (unreserved in SigV4) and "%".
ODD_KEYS = [
    "calls/with space/event 1.json",
    "calls/plus+sign/a+b.json",
    "calls/equals=sign/k=v.json",
    "calls/unicode/zürich-東京-☎.json",
    "calls/tilde~/~home.json",
    "calls/percent%2F/literal%20.json",
]


@pytest.fixture(autouse=True)
def isolated_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's AWS settings away from boto3, botocore and from_environment."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_CA_BUNDLE",
        "CALLFLOW_AWS_CLIENT",
        "CALLFLOW_TRACE_AWS_CALLS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


def make_client(
    endpoint_url: str,
    *,
    max_attempts: int = 1,
    connect_timeout: float = 1.0,
    read_timeout: float = 5.0,
) -> S3Client:
    return S3Client(
        region=REGION,
        credentials=Credentials(ACCESS_KEY, SECRET_KEY),
        endpoint=Endpoint.resolve(REGION, {"AWS_ENDPOINT_URL": endpoint_url}),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        max_pool_connections=4,
    )


def client_error_of(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


# -- parity with boto3 against moto's server ------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def boto3_s3(moto_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )


@pytest.fixture(scope="module")
def s3client(moto_url: str) -> S3Client:
    return make_client(moto_url)


@pytest.fixture
def bucket(boto3_s3: Any) -> str:
    name = f"callflow-{uuid.uuid4().hex[:12]}"
    boto3_s3.create_bucket(Bucket=name)
    return name


def comparable_get(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "Body": result["Body"].read(),
        "ContentLength": result["ContentLength"],
        "ContentType": result["ContentType"],
        "ETag": result["ETag"],
        "Metadata": result["Metadata"],
        "HTTPStatusCode": result["ResponseMetadata"]["HTTPStatusCode"],
    }


def comparable_list(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "Keys": [item["Key"] for item in result.get("Contents", [])],
        "HasContents": "Contents" in result,
        "IsTruncated": result["IsTruncated"],
        "KeyCount": result["KeyCount"],
        "HasNextContinuationToken": "NextContinuationToken" in result,
        "HTTPStatusCode": result["ResponseMetadata"]["HTTPStatusCode"],
    }


def status_of(result: dict[str, Any]) -> int:
    return result["ResponseMetadata"]["HTTPStatusCode"]


def comparable_error(error: ClientError) -> dict[str, Any]:
    return {
        "Code": error.response["Error"]["Code"],
        "Message": error.response["Error"]["Message"],
        "HTTPStatusCode": error.response["ResponseMetadata"]["HTTPStatusCode"],
        "Operation": error.operation_name,
    }


def test_put_then_get_matches_boto3(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    for index, key in enumerate(ODD_KEYS):
        body = f'{{"event": {index}, "key": "{key}"}}'.encode()
        metadata = {"call-id": f"call-{index}", "Schema-Version": "2"}

        put = s3client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json", Metadata=metadata
        )
        ours = comparable_get(s3client.get_object(Bucket=bucket, Key=key))
        theirs = comparable_get(boto3_s3.get_object(Bucket=bucket, Key=key))

        assert ours == theirs, key
        assert ours["Body"] == body
        assert ours["ContentType"] == "application/json"
        assert ours["Metadata"] == {"call-id": f"call-{index}", "schema-version": "2"}
        assert put["ETag"] == theirs["ETag"]
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_put_stores_object_under_exact_key(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    for key in ODD_KEYS:
        s3client.put_object(Bucket=bucket, Key=key, Body=key.encode())

    listed = [item["Key"] for item in boto3_s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert boto3_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode(), key


def test_get_reads_boto3_put(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    key = ODD_KEYS[3]
    boto3_s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=b"written by boto3",
        ContentType="text/plain",
        Metadata={"origin": "boto3"},
    )

    ours = comparable_get(s3client.get_object(Bucket=bucket, Key=key))

    assert ours == comparable_get(boto3_s3.get_object(Bucket=bucket, Key=key))
    assert ours["Body"] == b"written by boto3"
    assert ours["Metadata"] == {"origin": "boto3"}


def test_put_without_content_type_matches_boto3(
    s3client: S3Client, boto3_s3: Any, bucket: str
) -> None:
    ours_put = s3client.put_object(Bucket=bucket, Key="ours", Body=b"same body")
    theirs_put = boto3_s3.put_object(Bucket=bucket, Key="theirs", Body=b"same body")

    assert ours_put["ETag"] == theirs_put["ETag"]
    ours = comparable_get(s3client.get_object(Bucket=bucket, Key="ours"))
    theirs = comparable_get(boto3_s3.get_object(Bucket=bucket, Key="theirs"))
    assert ours == theirs


def test_list_objects_v2_pages_match_boto3(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    keys = [f"calls/c-{index:02d}.json" for index in range(7)]
    for key in [*keys, "calls-other/x.json", "index/y.json"]:
        boto3_s3.put_object(Bucket=bucket, Key=key, Body=b"{}")

    ours = s3client.list_objects_v2(Bucket=bucket, Prefix="calls/", MaxKeys=3)
    theirs = boto3_s3.list_objects_v2(Bucket=bucket, Prefix="calls/", MaxKeys=3)
    assert comparable_list(ours) == comparable_list(theirs)
    assert comparable_list(ours)["Keys"] == keys[:3]
    assert ours["IsTruncated"] is True

    ours_pages = [comparable_list(ours)]
    theirs_pages = [comparable_list(theirs)]
    while ours["IsTruncated"]:
        ours = s3client.list_objects_v2(
            Bucket=bucket,
            Prefix="calls/",
            MaxKeys=3,
            ContinuationToken=ours["NextContinuationToken"],
        )
        theirs = boto3_s3.list_objects_v2(
            Bucket=bucket,
            Prefix="calls/",
            MaxKeys=3,
            ContinuationToken=theirs["NextContinuationToken"],
        )
        ours_pages.append(comparable_list(ours))
        theirs_pages.append(comparable_list(theirs))

    assert ours_pages == theirs_pages
    assert [key for page in ours_pages for key in page["Keys"]] == keys
    assert "NextContinuationToken" not in ours


def test_list_continuation_token_works_with_boto3(
    s3client: S3Client, boto3_s3: Any, bucket: str
) -> None:
    for index in range(5):
        boto3_s3.put_object(Bucket=bucket, Key=f"k{index}", Body=b"")

    first = s3client.list_objects_v2(Bucket=bucket, MaxKeys=2)
    token = first["NextContinuationToken"]

    # The server keeps one state per token, so each client spends its own.
    ours = s3client.list_objects_v2(Bucket=bucket, MaxKeys=2, ContinuationToken=token)
    theirs_first = boto3_s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
    theirs = boto3_s3.list_objects_v2(
        Bucket=bucket, MaxKeys=2, ContinuationToken=theirs_first["NextContinuationToken"]
    )
    assert comparable_list(ours) == comparable_list(theirs)
    assert comparable_list(ours)["Keys"] == ["k2", "k3"]


def test_list_objects_v2_start_after_matches_boto3(
    s3client: S3Client, boto3_s3: Any, bucket: str
) -> None:
    for key in ODD_KEYS:
        boto3_s3.put_object(Bucket=bucket, Key=key, Body=b"")
    start_after = sorted(ODD_KEYS)[1]

    ours = s3client.list_objects_v2(Bucket=bucket, Prefix="calls/", StartAfter=start_after)
    theirs = boto3_s3.list_objects_v2(Bucket=bucket, Prefix="calls/", StartAfter=start_after)

    assert comparable_list(ours) == comparable_list(theirs)
    assert comparable_list(ours)["Keys"] == sorted(ODD_KEYS)[2:]


@pytest.mark.parametrize(
    "prefix", ["calls/with space/", "calls/plus+sign/a+", "calls/unicode/zürich", "nothing/"]
)
def test_list_objects_v2_prefix_matches_boto3(
    s3client: S3Client, boto3_s3: Any, bucket: str, prefix: str
) -> None:
    for key in ODD_KEYS:
        boto3_s3.put_object(Bucket=bucket, Key=key, Body=b"")

    ours = s3client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    theirs = boto3_s3.list_objects_v2(Bucket=bucket, Prefix=prefix)

    assert comparable_list(ours) == comparable_list(theirs)
    assert comparable_list(ours)["Keys"] == [key for key in ODD_KEYS if key.startswith(prefix)]


def test_head_object_matches_boto3(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    s3client.put_object(Bucket=bucket, Key=ODD_KEYS[0], Body=b"present")

    ours = s3client.head_object(Bucket=bucket, Key=ODD_KEYS[0])
    theirs = boto3_s3.head_object(Bucket=bucket, Key=ODD_KEYS[0])

    assert ours["ETag"] == theirs["ETag"]
    assert status_of(ours) == status_of(theirs) == 200


def test_head_object_missing_raises_404(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    ours = client_error_of(lambda: s3client.head_object(Bucket=bucket, Key="missing key"))
    theirs = client_error_of(lambda: boto3_s3.head_object(Bucket=bucket, Key="missing key"))

    assert comparable_error(ours) == comparable_error(theirs)
    assert ours.response["Error"]["Code"] == "404"


def test_get_object_missing_raises_no_such_key(
    s3client: S3Client, boto3_s3: Any, bucket: str
) -> None:
    ours = client_error_of(lambda: s3client.get_object(Bucket=bucket, Key="missing key"))
    theirs = client_error_of(lambda: boto3_s3.get_object(Bucket=bucket, Key="missing key"))

    assert comparable_error(ours) == comparable_error(theirs)
    assert ours.response["Error"]["Code"] == "NoSuchKey"


def test_head_bucket_matches_boto3(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    ours = s3client.head_bucket(Bucket=bucket)
    theirs = boto3_s3.head_bucket(Bucket=bucket)
    assert status_of(ours) == status_of(theirs) == 200

    missing = f"{bucket}-missing"
    ours_error = client_error_of(lambda: s3client.head_bucket(Bucket=missing))
    theirs_error = client_error_of(lambda: boto3_s3.head_bucket(Bucket=missing))
    assert comparable_error(ours_error) == comparable_error(theirs_error)
    assert ours_error.response["Error"]["Code"] == "404"


def test_delete_object_matches_boto3(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    for key in ODD_KEYS[:2]:
        boto3_s3.put_object(Bucket=bucket, Key=key, Body=b"to delete")

    ours = s3client.delete_object(Bucket=bucket, Key=ODD_KEYS[0])
    theirs = boto3_s3.delete_object(Bucket=bucket, Key=ODD_KEYS[1])

    assert status_of(ours) == status_of(theirs)
    assert "Contents" not in boto3_s3.list_objects_v2(Bucket=bucket)
    error = client_error_of(lambda: boto3_s3.head_object(Bucket=bucket, Key=ODD_KEYS[0]))
    assert error.response["Error"]["Code"] == "404"


def test_delete_missing_object_matches_boto3(
    s3client: S3Client, boto3_s3: Any, bucket: str
) -> None:
    ours = s3client.delete_object(Bucket=bucket, Key="never written")
    theirs = boto3_s3.delete_object(Bucket=bucket, Key="never written")

    assert status_of(ours) == status_of(theirs)


def test_put_if_none_match_rejects_existing_key(
    s3client: S3Client, boto3_s3: Any, bucket: str
) -> None:
    key = ODD_KEYS[2]
    first = s3client.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 200

    ours = client_error_of(
        lambda: s3client.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")
    )
    theirs = client_error_of(
        lambda: boto3_s3.put_object(Bucket=bucket, Key=key, Body=b"third", IfNoneMatch="*")
    )

    assert comparable_error(ours) == comparable_error(theirs)
    assert ours.response["Error"]["Code"] == "PreconditionFailed"
    assert ours.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert boto3_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"first"


def test_put_objects_stores_each_object(s3client: S3Client, boto3_s3: Any, bucket: str) -> None:
    puts = [
        {"Key": key, "Body": f"body of {key}".encode(), "ContentType": "application/json",
         "Metadata": {"content-sha256": "abc"}}
        for key in ODD_KEYS[:4]
    ]

    results = s3client.put_objects(Bucket=bucket, Puts=puts)

    assert [status_of(result) for result in results] == [200] * 4
    for put in puts:
        stored = boto3_s3.get_object(Bucket=bucket, Key=put["Key"])
        assert stored["Body"].read() == put["Body"]
        assert stored["ContentType"] == "application/json"
        assert stored["Metadata"] == {"content-sha256": "abc"}


def test_put_objects_returns_each_error_in_its_place(
    s3client: S3Client, boto3_s3: Any, bucket: str
) -> None:
    boto3_s3.put_object(Bucket=bucket, Key="b", Body=b"already there")
    puts = [{"Key": key, "Body": key.encode(), "IfNoneMatch": "*"} for key in ("a", "b", "c")]

    first, second, third = s3client.put_objects(Bucket=bucket, Puts=puts)

    assert status_of(first) == 200
    assert status_of(third) == 200
    assert isinstance(second, ClientError)
    assert second.response["Error"]["Code"] == "PreconditionFailed"
    assert second.operation_name == "PutObject"
    assert boto3_s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"already there"
    assert boto3_s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"c"


# -- SigV4 parity with botocore --------------------------------------------------

SIGNING_TIME = datetime.datetime(2024, 5, 17, 23, 59, 58, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class SigningCase:
    name: str
    method: str
    region: str
    environ: dict[str, str]
    bucket: str
    key: str | None
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


SIGNING_CASES = [
    SigningCase(
        name="put-path-style",
        method="PUT",
        region="us-east-1",
        environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"},
        bucket="callflow-events",
        key=ODD_KEYS[0],
        headers={
            "if-none-match": "*",
            "content-type": "application/json",
            "x-amz-meta-call-id": "call-c0ffee42",
            "x-amz-meta-note": "  runs   of   spaces  ",
        },
        body=b'{"eventId": "e-1", "text": "\xc3\xbc"}',
    ),
    SigningCase(
        name="put-virtual-hosted-with-token",
        method="PUT",
        region="eu-west-1",
        environ={},
        bucket="callflow-events",
        key=ODD_KEYS[3],
        token=SESSION_TOKEN,
        headers={"if-none-match": "*", "content-type": "application/json"},
        body=b'{"eventId": "e-2"}',
    ),
    SigningCase(
        name="list-path-style-with-token",
        method="GET",
        region="us-east-1",
        environ={"AWS_ENDPOINT_URL_S3": "http://localhost:4566/base/"},
        bucket="callflow-events",
        key=None,
        token=SESSION_TOKEN,
        query={
            "list-type": "2",
            "prefix": "calls/2024 05/a+b=c/zürich~*",
            "max-keys": "3",
            "continuation-token": "1/AbC+dEf==&x",
            "start-after": "calls/2024 05/ä",
        },
    ),
    SigningCase(
        name="list-virtual-hosted",
        method="GET",
        region="ap-southeast-2",
        environ={},
        bucket="callflow-events",
        key=None,
        query={"list-type": "2", "prefix": "index/time/07/", "max-keys": "1000"},
    ),
    SigningCase(
        name="get-object-virtual-hosted",
        method="GET",
        region="us-west-2",
        environ={},
        bucket="callflow-events",
        key=ODD_KEYS[1],
    ),
    SigningCase(
        name="head-object-virtual-hosted-with-token",
        method="HEAD",
        region="us-east-1",
        environ={},
        bucket="callflow-events",
        key=ODD_KEYS[4],
        token=SESSION_TOKEN,
    ),
    SigningCase(
        name="head-bucket-with-dots",
        method="HEAD",
        region="eu-central-1",
        environ={},
        bucket="callflow.events.example",
        key=None,
    ),
    SigningCase(
        name="delete-object-cn-region",
        method="DELETE",
        region="cn-north-1",
        environ={},
        bucket="callflow-events",
        key=ODD_KEYS[2],
        token=SESSION_TOKEN,
    ),
]


def botocore_request_url(case: SigningCase, endpoint: Endpoint) -> str:
    """Build the request URL as botocore does, encoding the key with botocore's percent_encode."""
    netloc = endpoint.host if endpoint.port is None else f"{endpoint.host}:{endpoint.port}"
    key_path = "" if case.key is None else "/" + percent_encode(case.key, safe="/~")
    if endpoint.path_style or "." in case.bucket:
        return f"{endpoint.scheme}://{netloc}{endpoint.base_path}/{case.bucket}{key_path or '/'}"
    return f"{endpoint.scheme}://{case.bucket}.{netloc}{key_path or '/'}"


@pytest.mark.parametrize("case", SIGNING_CASES, ids=lambda case: case.name)
def test_signature_matches_botocore(case: SigningCase, monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore.auth imported get_current_datetime from botocore.compat by name
    # and SigV4Auth.add_auth calls it once for x-amz-date and the scope, so
    # patching the name in botocore.auth freezes botocore's signing time.
    frozen = SIGNING_TIME.replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: frozen)
    endpoint = Endpoint.resolve(case.region, case.environ)
    host, path = endpoint.locate(case.bucket, case.key)
    ours = sign_request(
        case.method,
        host,
        path,
        canonical_query_string(case.query),
        dict(case.headers),
        case.body,
        credentials=Credentials(ACCESS_KEY, SECRET_KEY, case.token),
        region=case.region,
        now=SIGNING_TIME,
    )

    # botocore gets only the caller's headers and adds host, x-amz-date,
    # x-amz-security-token and x-amz-content-sha256 itself, as it does for a
    # real call. Over https, S3SigV4Auth sends UNSIGNED-PAYLOAD only when the
    # request carries a checksum header (Content-MD5 or a flexible checksum)
    # and streams its body, or when the client config turns payload signing
    # off. None of these requests does, so botocore hashes the body on both
    # schemes, like sign_request. The x-amz-content-sha256 check below fails
    # if a botocore update changes that.
    request = AWSRequest(
        method=case.method,
        url=botocore_request_url(case, endpoint),
        headers=dict(case.headers),
        data=case.body,
        params=dict(case.query),
    )
    credentials = BotocoreCredentials(ACCESS_KEY, SECRET_KEY, case.token)
    S3SigV4Auth(credentials, "s3", case.region).add_auth(request)

    assert request.headers["X-Amz-Content-SHA256"] == ours["x-amz-content-sha256"]
    assert request.headers["X-Amz-Date"] == ours["x-amz-date"] == "20240517T235958Z"
    assert request.headers.get("X-Amz-Security-Token") == case.token
    assert ours.get("x-amz-security-token") == case.token
    assert ours["authorization"] == request.headers["Authorization"]


def test_signature_changes_with_secret_key() -> None:
    arguments = ("GET", "bucket.s3.us-east-1.amazonaws.com", "/key", "", {}, b"")
    first = sign_request(
        *arguments, credentials=Credentials(ACCESS_KEY, SECRET_KEY), region=REGION, now=SIGNING_TIME
    )
    second = sign_request(
        *arguments, credentials=Credentials(ACCESS_KEY, "other"), region=REGION, now=SIGNING_TIME
    )

    assert first["authorization"] != second["authorization"]


class StopBeforeSending(Exception):
    """Raised by the before-send hook so that boto3 never opens a connection."""


@pytest.mark.parametrize(
    ("region", "bucket", "addressing_style"),
    [
        ("us-west-2", "callflow-events", "virtual"),
        ("eu-central-1", "callflow.events.example", "auto"),
        ("cn-north-1", "callflow-events", "virtual"),
    ],
)
def test_object_url_matches_boto3(region: str, bucket: str, addressing_style: str) -> None:
    client = boto3.client(
        "s3",
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": addressing_style}, retries={"total_max_attempts": 1}),
    )
    urls: list[str] = []

    def capture(request: AWSRequest, **_: Any) -> None:
        urls.append(request.url)
        raise StopBeforeSending

    client.meta.events.register("before-send.s3.GetObject", capture)
    endpoint = Endpoint.resolve(region, {})

    for key in ODD_KEYS:
        with pytest.raises(StopBeforeSending):
            client.get_object(Bucket=bucket, Key=key)
        host, path = endpoint.locate(bucket, key)

        assert urls[-1] == f"https://{host}{path}", key


# -- retries, timeouts and connections against a scripted server -----------------


@dataclass(frozen=True)
class Step:
    """A scripted response: an HTTP reply, a stall until the test ends, or a closed connection."""

    status: int = 200
    body: bytes = b""
    stall: bool = False
    drop: bool = False
    close_after: bool = False


def s3_error(code: str) -> bytes:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{code} from the script</Message></Error>"
    ).encode()


class ScriptedServer(ThreadingHTTPServer):
    """An HTTP server that replies with scripted steps and counts connections and requests."""

    daemon_threads = True

    def __init__(self, steps: list[Step]) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.steps = list(steps)
        self.requests: list[str] = []
        self.accepted = 0
        self.closed = 0
        self.released = threading.Event()
        self.lock = threading.Lock()
        # When set, no request gets its reply before this many requests arrived.
        self.barrier: threading.Barrier | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def get_request(self) -> tuple[socket.socket, Any]:
        request = super().get_request()
        with self.lock:
            self.accepted += 1
        return request

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.lock:
            self.closed += 1

    def next_step(self, request_line: str) -> Step:
        with self.lock:
            self.requests.append(request_line)
            if not self.steps:
                return Step(500, s3_error("ScriptExhausted"))
            return self.steps.pop(0)


class ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedServer

    def respond(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        step = self.server.next_step(self.requestline)
        if self.server.barrier is not None:
            try:
                self.server.barrier.wait()
            except threading.BrokenBarrierError:
                self.close_connection = True
                return
        if step.stall:
            self.server.released.wait(10)
            self.close_connection = True
            return
        if step.drop:
            self.close_connection = True
            return

        self.send_response(step.status)
        self.send_header("Content-Length", str(len(step.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(step.body)
        # Closing without a "Connection: close" header leaves the client
        # holding a keep-alive connection that is already closed.
        self.close_connection = step.close_after

    do_GET = do_PUT = do_HEAD = do_DELETE = respond

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


StartServer = Callable[[list[Step]], ScriptedServer]


@pytest.fixture
def scripted_server() -> Iterator[StartServer]:
    servers: list[ScriptedServer] = []

    def start(steps: list[Step]) -> ScriptedServer:
        server = ScriptedServer(steps)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.released.set()
        server.shutdown()
        server.server_close()


@contextmanager
def closed_port() -> Iterator[int]:
    """Yield a loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the scripted server"
        time.sleep(0.005)


def test_slow_down_is_retried(scripted_server: StartServer) -> None:
    server = scripted_server([Step(503, s3_error("SlowDown")), Step(200, b"stored body")])
    client = make_client(server.url, max_attempts=3)

    result = client.get_object(Bucket="callflow-events", Key="a b")

    assert result["Body"].read() == b"stored body"
    assert server.requests == ["GET /callflow-events/a%20b HTTP/1.1"] * 2


def test_internal_error_raises_after_max_attempts(scripted_server: StartServer) -> None:
    server = scripted_server([Step(500, s3_error("InternalError"))] * 3 + [Step(200, b"too late")])
    client = make_client(server.url, max_attempts=3)

    error = client_error_of(lambda: client.get_object(Bucket="callflow-events", Key="k"))

    assert error.response["Error"]["Code"] == "InternalError"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert error.operation_name == "GetObject"
    assert len(server.requests) == 3


def test_precondition_failed_is_not_retried(scripted_server: StartServer) -> None:
    server = scripted_server([Step(412, s3_error("PreconditionFailed")), Step(200)])
    client = make_client(server.url, max_attempts=3)

    error = client_error_of(
        lambda: client.put_object(Bucket="callflow-events", Key="k", Body=b"x", IfNoneMatch="*")
    )

    assert error.response["Error"]["Code"] == "PreconditionFailed"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert len(server.requests) == 1


def test_unanswered_request_raises_read_timeout(scripted_server: StartServer) -> None:
    read_timeout, attempts = 0.2, 3
    server = scripted_server([Step(stall=True)] * attempts)
    client = make_client(server.url, max_attempts=attempts, read_timeout=read_timeout)

    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.get_object(Bucket="callflow-events", Key="k")
    elapsed = time.monotonic() - started

    assert len(server.requests) == attempts
    assert elapsed >= read_timeout * attempts
    # The backoff between attempts adds at most 0.1 s + 0.2 s.
    assert elapsed < read_timeout * attempts + 0.3 + 0.5


def test_closed_port_raises_endpoint_connection_error() -> None:
    with closed_port() as port:
        client = make_client(f"http://127.0.0.1:{port}", max_attempts=2, connect_timeout=0.5)

        started = time.monotonic()
        with pytest.raises(EndpointConnectionError):
            client.head_bucket(Bucket="callflow-events")

    assert time.monotonic() - started < 1.0


def test_dropped_connection_raises_connection_closed(scripted_server: StartServer) -> None:
    server = scripted_server([Step(drop=True)] * 3)
    client = make_client(server.url, max_attempts=3)

    with pytest.raises(ConnectionClosedError):
        client.get_object(Bucket="callflow-events", Key="k")

    assert len(server.requests) == 3


def test_closed_keep_alive_connection_is_replaced(scripted_server: StartServer) -> None:
    server = scripted_server([Step(200, b"first", close_after=True), Step(200, b"second")])
    # One attempt: the client must notice the closed connection before it
    # sends on it, not retry after a failed request.
    client = make_client(server.url, max_attempts=1)

    assert client.get_object(Bucket="callflow-events", Key="k")["Body"].read() == b"first"
    wait_until(lambda: server.closed == 1)
    assert client.get_object(Bucket="callflow-events", Key="k")["Body"].read() == b"second"

    assert server.accepted == 2
    assert len(server.requests) == 2


def test_sequential_requests_reuse_one_connection(scripted_server: StartServer) -> None:
    server = scripted_server([Step(200, f"body {index}".encode()) for index in range(5)])
    client = make_client(server.url)

    bodies = [client.get_object(Bucket="callflow-events", Key="k")["Body"].read() for _ in range(5)]

    assert bodies == [f"body {index}".encode() for index in range(5)]
    assert len(server.requests) == 5
    assert server.accepted == 1


def test_put_objects_sends_before_reading(
    scripted_server: StartServer,
) -> None:
    server = scripted_server([Step(200)] * 3)
    # The server replies to none of the three until all three have arrived, so
    # a client that waits for each reply before the next request times out.
    server.barrier = threading.Barrier(3, timeout=2)
    client = make_client(server.url)

    results = client.put_objects(
        Bucket="callflow-events", Puts=[{"Key": key, "Body": b"x"} for key in ("a", "b", "c")]
    )

    assert [status_of(result) for result in results] == [200] * 3
    assert sorted(server.requests) == [f"PUT /callflow-events/{key} HTTP/1.1" for key in ("a", "b", "c")]
    assert server.accepted == 3


def test_put_objects_retries_throttled_puts_together(scripted_server: StartServer) -> None:
    server = scripted_server([Step(503, s3_error("SlowDown"))] * 2 + [Step(200)] * 2)
    client = make_client(server.url, max_attempts=3)

    results = client.put_objects(
        Bucket="callflow-events", Puts=[{"Key": key, "Body": b"x"} for key in ("a", "b")]
    )

    assert [status_of(result) for result in results] == [200, 200]
    assert len(server.requests) == 4


def test_put_objects_gives_each_put_its_own_attempts(scripted_server: StartServer) -> None:
    server = scripted_server([Step(500, s3_error("InternalError"))] * 4)
    client = make_client(server.url, max_attempts=2)

    results = client.put_objects(
        Bucket="callflow-events", Puts=[{"Key": key, "Body": b"x"} for key in ("a", "b")]
    )

    assert all(isinstance(result, ClientError) for result in results)
    assert [result.response["Error"]["Code"] for result in results] == ["InternalError"] * 2
    assert len(server.requests) == 4


def test_put_objects_does_not_retry_precondition_failed(scripted_server: StartServer) -> None:
    server = scripted_server([Step(412, s3_error("PreconditionFailed"))] * 2 + [Step(200)] * 2)
    client = make_client(server.url, max_attempts=3)

    results = client.put_objects(
        Bucket="callflow-events",
        Puts=[{"Key": key, "Body": b"x", "IfNoneMatch": "*"} for key in ("a", "b")],
    )

    assert [result.response["Error"]["Code"] for result in results] == ["PreconditionFailed"] * 2
    assert len(server.requests) == 2


def test_put_objects_returns_connection_failures(scripted_server: StartServer) -> None:
    server = scripted_server([Step(drop=True)] * 2)
    client = make_client(server.url, max_attempts=1)

    results = client.put_objects(
        Bucket="callflow-events", Puts=[{"Key": key, "Body": b"x"} for key in ("a", "b")]
    )

    assert [type(result) for result in results] == [ConnectionClosedError] * 2


def test_put_objects_reuses_its_connections(scripted_server: StartServer) -> None:
    server = scripted_server([Step(200)] * 6)
    client = make_client(server.url)
    puts = [{"Key": key, "Body": b"x"} for key in ("a", "b", "c")]

    client.put_objects(Bucket="callflow-events", Puts=puts)
    client.put_objects(Bucket="callflow-events", Puts=puts)

    assert len(server.requests) == 6
    assert server.accepted == 3
    assert client.connections_opened == 3


# -- Endpoint.resolve ------------------------------------------------------------


def test_resolve_plain_bucket_is_virtual_hosted() -> None:
    endpoint = Endpoint.resolve("eu-west-1", {})

    assert endpoint == Endpoint("https", "s3.eu-west-1.amazonaws.com", None, False)
    assert endpoint.locate("callflow-events", "calls/a b.json") == (
        "callflow-events.s3.eu-west-1.amazonaws.com",
        "/calls/a%20b.json",
    )
    assert endpoint.locate("callflow-events", None) == (
        "callflow-events.s3.eu-west-1.amazonaws.com",
        "/",
    )


def test_resolve_bucket_with_dots_is_path_style() -> None:
    endpoint = Endpoint.resolve("eu-west-1", {})

    host = "s3.eu-west-1.amazonaws.com"
    assert endpoint.locate("callflow.events", "k+1") == (host, "/callflow.events/k%2B1")
    assert endpoint.locate("callflow.events", None) == (host, "/callflow.events/")


def test_resolve_china_region_uses_cn_domain() -> None:
    endpoint = Endpoint.resolve("cn-northwest-1", {})

    assert endpoint.host == "s3.cn-northwest-1.amazonaws.com.cn"
    host, _ = endpoint.locate("callflow-events", "k")
    assert host == "callflow-events.s3.cn-northwest-1.amazonaws.com.cn"


def test_resolve_endpoint_url_keeps_base_path() -> None:
    endpoint = Endpoint.resolve(REGION, {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566/s3/"})

    assert endpoint == Endpoint("http", "127.0.0.1", 4566, True, "/s3")
    assert endpoint.locate("callflow-events", "a~b c") == (
        "127.0.0.1:4566",
        "/s3/callflow-events/a~b%20c",
    )
    assert endpoint.locate("callflow-events", None) == ("127.0.0.1:4566", "/s3/callflow-events/")


def test_resolve_prefers_s3_endpoint_url() -> None:
    endpoint = Endpoint.resolve(
        REGION,
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "AWS_ENDPOINT_URL_S3": "https://s3.internal.example:8443",
        },
    )

    assert endpoint == Endpoint("https", "s3.internal.example", 8443, True, "")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:4566", "localhost:4566", "http://"])
def test_resolve_rejects_non_http_endpoint_url(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.resolve(REGION, {"AWS_ENDPOINT_URL": url})


# -- S3Client.from_environment -------------------------------------------------------

LAMBDA_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
    "AWS_REGION": "eu-west-1",
}


def client_from(environ: dict[str, str]) -> S3Client | None:
    return S3Client.from_environment(
        connect_timeout=1.0,
        read_timeout=2.0,
        max_attempts=3,
        max_pool_connections=8,
        environ=environ,
    )


def test_from_environment_builds_client() -> None:
    client = client_from(LAMBDA_ENVIRONMENT)

    assert client is not None
    assert client.region == "eu-west-1"
    assert client.credentials == Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    assert client.endpoint == Endpoint("https", "s3.eu-west-1.amazonaws.com", None, False)
    assert (client.connect_timeout, client.read_timeout, client.max_attempts) == (1.0, 2.0, 3)


def test_from_environment_reads_default_region_and_endpoint() -> None:
    dropped = ("AWS_REGION", "AWS_SESSION_TOKEN")
    environ = {key: value for key, value in LAMBDA_ENVIRONMENT.items() if key not in dropped}
    environ |= {"AWS_DEFAULT_REGION": "us-west-2", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:4566"}

    client = client_from(environ)

    assert client is not None
    assert client.region == "us-west-2"
    assert client.credentials.token is None
    assert client.endpoint == Endpoint("http", "127.0.0.1", 4566, True, "")


@pytest.mark.parametrize("value", ["boto3", " BOTO3 "])
def test_from_environment_honours_boto3_choice(value: str) -> None:
    assert client_from(LAMBDA_ENVIRONMENT | {"CALLFLOW_AWS_CLIENT": value}) is None


def test_from_environment_ignores_other_client_choice() -> None:
    assert client_from(LAMBDA_ENVIRONMENT | {"CALLFLOW_AWS_CLIENT": "callflow"}) is not None


def test_from_environment_defers_to_boto3_when_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLOW_TRACE_AWS_CALLS", "true")
    assert client_from(LAMBDA_ENVIRONMENT) is None

    monkeypatch.setenv("CALLFLOW_TRACE_AWS_CALLS", "false")
    assert client_from(LAMBDA_ENVIRONMENT) is not None


@pytest.mark.parametrize("missing", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"])
def test_from_environment_without_credentials_or_region(missing: str) -> None:
    environ = {key: value for key, value in LAMBDA_ENVIRONMENT.items() if key != missing}

    assert client_from(environ) is None


def test_from_environment_treats_empty_values_as_missing() -> None:
    assert client_from(LAMBDA_ENVIRONMENT | {"AWS_SECRET_ACCESS_KEY": ""}) is None
    assert client_from(LAMBDA_ENVIRONMENT | {"AWS_REGION": ""}) is None


def test_store_defaults_to_layer_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from callflow.store import make_s3_client

    monkeypatch.delenv("CALLFLOW_AWS_CLIENT", raising=False)
    monkeypatch.delenv("CALLFLOW_TRACE_AWS_CALLS", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert isinstance(make_s3_client.__wrapped__(), S3Client)

    monkeypatch.setenv("CALLFLOW_AWS_CLIENT", "boto3")
    fallback = make_s3_client.__wrapped__()
    assert not isinstance(fallback, S3Client)
    assert fallback.meta.service_model.service_name == "s3"


# -- Secrets Manager ---------------------------------------------------------------


def secrets_client(endpoint_url: str, *, max_attempts: int = 1) -> SecretsManagerClient:
    client = SecretsManagerClient.from_environment(
        connect_timeout=1.0,
        read_timeout=5.0,
        max_attempts=max_attempts,
        environ={
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint_url,
        },
    )
    assert client is not None
    return client


@pytest.fixture(scope="module")
def boto3_secrets(moto_url: str) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def test_get_secret_value_matches_boto3(moto_url: str, boto3_secrets: Any) -> None:
    name = f"callflow/test/{uuid.uuid4().hex}"
    created = boto3_secrets.create_secret(Name=name, SecretString="key material ☎ with spaces")

    ours = secrets_client(moto_url).get_secret_value(SecretId=created["ARN"])
    theirs = boto3_secrets.get_secret_value(SecretId=created["ARN"])

    for field_name in ("ARN", "Name", "VersionId", "SecretString", "VersionStages"):
        assert ours[field_name] == theirs[field_name]
    assert ours["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_missing_secret_error_matches_boto3(moto_url: str, boto3_secrets: Any) -> None:
    missing = f"callflow/test/missing-{uuid.uuid4().hex}"

    ours = client_error_of(lambda: secrets_client(moto_url).get_secret_value(SecretId=missing))
    theirs = client_error_of(lambda: boto3_secrets.get_secret_value(SecretId=missing))

    assert ours.response["Error"]["Code"] == theirs.response["Error"]["Code"] == "ResourceNotFoundException"
    status = ours.response["ResponseMetadata"]["HTTPStatusCode"]
    assert status == theirs.response["ResponseMetadata"]["HTTPStatusCode"]
    assert ours.operation_name == "GetSecretValue"


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b'{"__type":"com.amazonaws.secretsmanager#ThrottlingException","message":"slow down"}', {}, "ThrottlingException"),
        (b'{"__type":"AccessDeniedException:http://internal/","Message":"no"}', {}, "AccessDeniedException"),
        (b"not json", {"x-amzn-errortype": "InternalServiceError:http://internal/"}, "InternalServiceError"),
        (b"", {}, "500"),
    ],
)
def test_json_error_codes_match_botocore(body: bytes, headers: dict[str, str], code: str) -> None:
    from callflow.awsclient import _json_client_error

    error = _json_client_error("GetSecretValue", 500, headers, body)

    assert error.response["Error"]["Code"] == code


def test_secrets_endpoint_defaults_to_region() -> None:
    endpoint = Endpoint.resolve("eu-west-1", {}, service="secretsmanager")
    assert (endpoint.scheme, endpoint.host) == ("https", "secretsmanager.eu-west-1.amazonaws.com")
    assert Endpoint.resolve("cn-north-1", {}, service="secretsmanager").host == (
        "secretsmanager.cn-north-1.amazonaws.com.cn"
    )
    # The S3 variable does not move Secrets Manager.
    named = Endpoint.resolve("eu-west-1", {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1"}, service="secretsmanager")
    assert named.host == "secretsmanager.eu-west-1.amazonaws.com"


def test_secrets_manager_signature_matches_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.auth import SigV4Auth

    frozen = SIGNING_TIME.replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: frozen)
    body = b'{"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:callflow/jwt-AbCdEf"}'
    headers = {"content-type": "application/x-amz-json-1.1", "x-amz-target": "secretsmanager.GetSecretValue"}
    host = "secretsmanager.eu-west-1.amazonaws.com"

    ours = sign_request(
        "POST",
        host,
        "/",
        "",
        dict(headers),
        body,
        credentials=Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN),
        region="eu-west-1",
        now=SIGNING_TIME,
        service="secretsmanager",
    )
    request = AWSRequest(method="POST", url=f"https://{host}/", headers=dict(headers), data=body)
    SigV4Auth(BotocoreCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "secretsmanager", "eu-west-1").add_auth(
        request
    )

    assert "x-amz-content-sha256" not in ours
    assert ours["authorization"] == request.headers["Authorization"]


def test_secrets_read_through_layer_client(
    moto_url: str, boto3_secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callflow import secrets as callflow_secrets

    name = f"callflow/test/{uuid.uuid4().hex}"
    arn = boto3_secrets.create_secret(Name=name, SecretString="pagination-key")["ARN"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_url)
    callflow_secrets.clear_cache()
    try:
        assert callflow_secrets.get_secret_value(arn) == "pagination-key"
        assert isinstance(callflow_secrets._client, SecretsManagerClient)
        with pytest.raises(callflow_secrets.SecretUnavailableError) as caught:
            callflow_secrets.get_secret_value(f"{name}-missing")
        assert "ResourceNotFoundException" in caught.value.message
    finally:
        callflow_secrets.clear_cache()
