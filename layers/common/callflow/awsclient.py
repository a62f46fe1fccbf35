"""Small AWS clients for the handlers' hot path, on the standard library.

boto3 costs a cold start about 200 ms before the first request: its import
and the client's load of the service model and endpoint rules. The client
waits for it. This module makes the calls the handlers need, with the same
arguments and results as boto3's clients and botocore's exception classes,
so the code that calls them works the same with either:

- S3Client: the S3 calls EventStore makes (put_object, get_object,
  list_objects_v2, head_object, head_bucket, delete_object), and put_objects,
  which sends several puts at once from one thread.
- SecretsManagerClient: get_secret_value, for callflow.secrets.

What they do, as botocore does it:
- Signature Version 4 with the credentials Lambda puts in the environment
  (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). The payload
  is hashed and signed, not sent as UNSIGNED-PAYLOAD.
- S3: virtual-hosted addressing at https://BUCKET.s3.REGION.amazonaws.com, or
  path-style addressing at AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL when set
  (a VPC endpoint or a local emulator). Secrets Manager:
  https://secretsmanager.REGION.amazonaws.com, or
  AWS_ENDPOINT_URL_SECRETS_MANAGER / AWS_ENDPOINT_URL.
- Standard-mode retries: throttling, 5xx responses, timeouts and dropped
  connections are retried with jittered exponential backoff, up to
  `max_attempts` attempts in all.
- Keep-alive connections in a pool that threads share, with separate
  connect and read timeouts.

NOTE: they cover what the service's keys, buckets and secrets need, not all
of S3. There are no IPv6 endpoint URLs, and no path-style switch for bucket
names that are not valid host names (CloudFormation generates valid ones).
Keys must be text XML 1.0 can carry (event and call ids exclude control
characters). TLS errors surface as EndpointConnectionError rather than
botocore's SSLError.

from_environment returns None, and the caller uses boto3 instead, when
CALLFLOW_AWS_CLIENT is "boto3", when AWS calls are traced (the X-Ray SDK
patches botocore only), or when the environment has no credentials or region.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import os
import queue
import random
import select
import ssl
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import quote, urlsplit

from callflow.observability import aws_call_tracing_enabled

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

S3_SERVICE = "s3"
SECRETS_MANAGER_SERVICE = "secretsmanager"
ALGORITHM = "AWS4-HMAC-SHA256"
S3_XML_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
USER_AGENT = "callflow-awsclient/1"
CLIENT_VARIABLE = "CALLFLOW_AWS_CLIENT"
# service -> (the variable that names its endpoint, the first label of its host name)
SERVICE_ENDPOINTS = {
    S3_SERVICE: ("AWS_ENDPOINT_URL_S3", "s3"),
    SECRETS_MANAGER_SERVICE: ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "secretsmanager"),
}

# Standard-mode retries of botocore: these statuses and error codes are
# transient, and the backoff is random up to base * 2**attempt seconds.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "InternalServiceError",
        "ServiceUnavailable",
    }
)
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 20.0


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Credentials | None:
        access_key = environ.get("AWS_ACCESS_KEY_ID")
        secret_key = environ.get("AWS_SECRET_ACCESS_KEY")
        if not access_key or not secret_key:
            return None
        return cls(access_key, secret_key, environ.get("AWS_SESSION_TOKEN") or None)


@dataclass(frozen=True)
class Endpoint:
    """The destination of requests for a bucket: scheme, host, port and addressing style."""

    scheme: str
    host: str
    port: int | None
    path_style: bool
    base_path: str = ""

    @classmethod
    def resolve(
        cls, region: str, environ: Mapping[str, str] = os.environ, *, service: str = S3_SERVICE
    ) -> Endpoint:
        """Return the endpoint of `service` in `region`, or the one the environment names.

        A named endpoint (a VPC endpoint or a local emulator) is addressed
        path-style.
        """
        variable, host_prefix = SERVICE_ENDPOINTS[service]
        url = environ.get(variable) or environ.get("AWS_ENDPOINT_URL")
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"The {service} endpoint URL {url!r} is not an http(s) URL: set {variable} "
                    "or AWS_ENDPOINT_URL to an http:// or https:// URL, or unset both."
                )
            return cls(parts.scheme, parts.hostname, parts.port, True, parts.path.rstrip("/"))
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        return cls("https", f"{host_prefix}.{region}.{suffix}", None, False)

    @property
    def netloc(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def locate(self, bucket: str, key: str | None) -> tuple[str, str]:
        """Return (Host header, URI-encoded path) of `key` in `bucket` (the bucket itself when key is None)."""
        object_path = "" if key is None else "/" + quote(key, safe="/~")
        netloc = self.netloc
        # A bucket name with dots does not match the wildcard TLS certificate.
        if self.path_style or "." in bucket:
            return netloc, f"{self.base_path}/{quote(bucket, safe='')}{object_path or '/'}"
        return f"{bucket}.{netloc}", object_path or "/"


class _StreamingBody(io.BytesIO):
    """The Body of a get_object result: already read, so the connection is free."""


@dataclass(frozen=True)
class _Request:
    """One request to send, before signing: the same for every attempt."""

    operation: str
    method: str
    host: str
    path: str
    body: bytes
    headers: dict[str, str]
    query_string: str
    parse_error: Callable[[str, int, Mapping[str, str], bytes], ClientError]


@dataclass(frozen=True)
class _InFlight:
    """A request sent on a connection whose response has not been read yet."""

    connection: http.client.HTTPConnection
    pool: queue.LifoQueue[http.client.HTTPConnection]
    url: str


# The outcome of one request: (status, lower-case headers, body) for a success,
# or the ClientError or connection error that the call raises.
_Outcome = tuple[int, dict[str, str], bytes] | Exception
_CONNECTION_FAILURES = (
    ConnectionClosedError,
    ReadTimeoutError,
    ConnectTimeoutError,
    EndpointConnectionError,
)


def _is_retryable(outcome: _Outcome) -> bool:
    """Return whether standard-mode retries send this request again."""
    if isinstance(outcome, _CONNECTION_FAILURES):
        return True
    if isinstance(outcome, ClientError):
        status = outcome.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in RETRY_STATUSES or outcome.response["Error"]["Code"] in RETRY_CODES
    return False


def _signing_settings(environ: Mapping[str, str]) -> tuple[Credentials, str] | None:
    """Return the credentials and region to sign with, or None when the caller must use boto3.

    boto3 is used when CALLFLOW_AWS_CLIENT is "boto3", when AWS calls are
    traced, and when the environment lacks credentials or a region.
    """
    if environ.get(CLIENT_VARIABLE, "").strip().lower() == "boto3" or aws_call_tracing_enabled():
        return None
    credentials = Credentials.from_environment(environ)
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if credentials is None or not region:
        return None
    return credentials, region


class _AwsHttpClient:
    """Signed requests to one AWS service, with retries, over a pool of keep-alive connections."""

    service: ClassVar[str]

    def __init__(
        self,
        *,
        region: str,
        credentials: Credentials,
        endpoint: Endpoint,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        max_pool_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.region = region
        self.credentials = credentials
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self._ssl_context = ssl_context
        self._pools: dict[str, queue.LifoQueue[http.client.HTTPConnection]] = {}
        self._max_pool_connections = max_pool_connections
        # Connections opened so far: a warm function should open none.
        self.connections_opened = 0

    @classmethod
    def from_environment(
        cls,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        max_pool_connections: int = 1,
        environ: Mapping[str, str] = os.environ,
    ) -> Self | None:
        """Return a client for the environment's credentials, region and endpoint, or None to use boto3.

        One pooled connection, the default, suits a client that one thread calls at a time.
        """
        settings = _signing_settings(environ)
        if settings is None:
            return None
        credentials, region = settings
        return cls(
            region=region,
            credentials=credentials,
            endpoint=Endpoint.resolve(region, environ, service=cls.service),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            max_pool_connections=max_pool_connections,
        )

    # -- requests ---------------------------------------------------------------

    def _call(
        self,
        operation: str,
        method: str,
        host: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        parse_error: Callable[[str, int, Mapping[str, str], bytes], ClientError],
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request with retries, and return (status, lower-case headers, body).

        Raises the ClientError `parse_error` builds for an error response, and
        botocore's connection errors when no attempt got a response.
        """
        request = _Request(operation, method, host, path, body, dict(headers or {}),
                           canonical_query_string(query or {}), parse_error)
        outcome = self._call_together([request])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _call_together(self, requests: Sequence[_Request]) -> list[_Outcome]:
        """Send requests at once from this thread, with retries, and return their outcomes.

        Every request of an attempt goes out on its own connection before any
        response is read, so their round trips overlap without threads. The
        requests that failed in a retryable way are sent again together after
        one backoff, up to `max_attempts` attempts in all. The outcome of a
        request is what _call would return, or the exception it would raise.
        """
        outcomes: list[_Outcome | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        for attempt in range(self.max_attempts):
            if attempt:
                self._back_off(attempt - 1)
            retry: list[int] = []
            attempted = self._attempt_together([requests[i] for i in pending])
            for index, outcome in zip(pending, attempted, strict=True):
                if _is_retryable(outcome) and attempt + 1 < self.max_attempts:
                    retry.append(index)
                else:
                    outcomes[index] = outcome
            pending = retry
            if not pending:
                break
        return [outcome for outcome in outcomes if outcome is not None]

    def _attempt_together(self, requests: Sequence[_Request]) -> list[_Outcome]:
        """Make one attempt of each request: send them all, then read every response in turn."""
        now = datetime.now(UTC)
        started: list[_InFlight | Exception] = []
        for request in requests:
            signed = sign_request(
                request.method,
                request.host,
                request.path,
                request.query_string,
                dict(request.headers),
                request.body,
                credentials=self.credentials,
                region=self.region,
                now=now,
                service=self.service,
            )
            try:
                started.append(self._start(request, signed))
            except _CONNECTION_FAILURES as error:
                started.append(error)

        outcomes: list[_Outcome] = []
        for request, in_flight in zip(requests, started, strict=True):
            if isinstance(in_flight, Exception):
                outcomes.append(in_flight)
                continue
            try:
                status, response_headers, response_body = self._finish(in_flight)
            except (ConnectionClosedError, ReadTimeoutError) as error:
                outcomes.append(error)
                continue
            if status < 300:
                outcomes.append((status, response_headers, response_body))
            else:
                error = request.parse_error(request.operation, status, response_headers, response_body)
                outcomes.append(error)
        return outcomes

    def _start(self, request: _Request, headers: dict[str, str]) -> _InFlight:
        """Send a signed request on an idle or new connection, without reading the response."""
        host = request.host
        pool = self._pools.get(host)
        if pool is None:
            # setdefault keeps one pool when two threads get here first.
            pool = self._pools.setdefault(host, queue.LifoQueue())
        connection = _take_open_connection(pool) or self._connect(host)
        in_flight = _InFlight(connection, pool, self._url(host, request.path))

        target = request.path if not request.query_string else f"{request.path}?{request.query_string}"
        body = request.body if request.method in ("PUT", "POST") else None
        try:
            connection.request(request.method, target, body=body, headers=headers)
        except (http.client.HTTPException, OSError) as error:
            self._drop(in_flight, error)
        return in_flight

    def _finish(self, in_flight: _InFlight) -> tuple[int, dict[str, str], bytes]:
        """Read the response to a request _start sent, and give its connection back to the pool."""
        connection = in_flight.connection
        try:
            response = connection.getresponse()
            response_body = response.read()
        except (http.client.HTTPException, OSError) as error:
            self._drop(in_flight, error)

        if response.will_close or in_flight.pool.qsize() >= self._max_pool_connections:
            connection.close()
        else:
            in_flight.pool.put(connection)
        response_headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, response_headers, response_body

    @staticmethod
    def _drop(in_flight: _InFlight, error: BaseException) -> NoReturn:
        """Close the connection of a request that failed on it, and raise botocore's error for the failure."""
        in_flight.connection.close()
        if isinstance(error, TimeoutError):
            raise ReadTimeoutError(endpoint_url=in_flight.url, error=error) from error
        # The connection was open, so the server reset or closed it before a
        # whole response arrived. botocore raises ConnectionClosedError for
        # this (urllib3's ProtocolError) and retries it.
        raise ConnectionClosedError(endpoint_url=in_flight.url) from error

    def _connect(self, host: str) -> http.client.HTTPConnection:
        # The Host header of a virtual-hosted request names the bucket; the
        # connection goes to the same name.
        name, _, port_text = host.partition(":")
        port = int(port_text) if port_text else None
        connection: http.client.HTTPConnection
        if self.endpoint.scheme == "https":
            context = self._ssl_context or _default_ssl_context()
            connection = http.client.HTTPSConnection(name, port, timeout=self.connect_timeout, context=context)
        else:
            connection = http.client.HTTPConnection(name, port, timeout=self.connect_timeout)
        self.connections_opened += 1
        try:
            connection.connect()
        except TimeoutError as error:
            connection.close()
            raise ConnectTimeoutError(endpoint_url=self._url(host, "/"), error=error) from error
        except OSError as error:
            connection.close()
            raise EndpointConnectionError(endpoint_url=self._url(host, "/"), error=error) from error
        assert connection.sock is not None
        connection.sock.settimeout(self.read_timeout)
        return connection

    def _url(self, host: str, path: str) -> str:
        return f"{self.endpoint.scheme}://{host}{path}"

    @staticmethod
    def _back_off(attempt: int) -> None:
        time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)))


class S3Client(_AwsHttpClient):
    """The part of boto3's S3 client that EventStore calls."""

    service = S3_SERVICE

    # -- the calls of boto3's S3 client that EventStore makes ------------------

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803 (boto3's argument names)
        Key: str,  # noqa: N803
        Body: bytes,  # noqa: N803
        IfNoneMatch: str | None = None,  # noqa: N803
        ContentType: str | None = None,  # noqa: N803
        Metadata: Mapping[str, str] | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        outcome = self.put_objects(
            Bucket=Bucket,
            Puts=[{"Key": Key, "Body": Body, "IfNoneMatch": IfNoneMatch, "ContentType": ContentType,
                   "Metadata": Metadata}],
        )[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def put_objects(
        self,
        *,
        Bucket: str,  # noqa: N803
        Puts: Sequence[Mapping[str, Any]],  # noqa: N803
    ) -> list[dict[str, Any] | Exception]:
        """Put several objects at once from the calling thread; boto3 has no such call.

        Each item of `Puts` contains put_object's arguments except Bucket. All
        requests are sent, each on its own connection, before any response
        is read, so their round trips overlap as on threads, without the
        threads' hand-offs. Returns, in order, what put_object would return
        for each, or the exception it would raise. Retries are put_object's.
        """
        requests = []
        for put in Puts:
            headers: dict[str, str] = {}
            if put.get("IfNoneMatch") is not None:
                headers["if-none-match"] = put["IfNoneMatch"]
            if put.get("ContentType") is not None:
                headers["content-type"] = put["ContentType"]
            for name, value in (put.get("Metadata") or {}).items():
                headers[f"x-amz-meta-{name.lower()}"] = value
            host, path = self.endpoint.locate(Bucket, put["Key"])
            requests.append(
                _Request("PutObject", "PUT", host, path, put["Body"], headers, "", _s3_client_error)
            )
        results: list[dict[str, Any] | Exception] = []
        for outcome in self._call_together(requests):
            if isinstance(outcome, Exception):
                results.append(outcome)
            else:
                status, response_headers, _ = outcome
                results.append(
                    {"ETag": response_headers.get("etag"), "ResponseMetadata": {"HTTPStatusCode": status}}
                )
        return results

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        status, headers, body = self._request("GetObject", "GET", Bucket, Key)
        metadata = {
            name[len("x-amz-meta-"):]: value for name, value in headers.items() if name.startswith("x-amz-meta-")
        }
        return {
            "Body": _StreamingBody(body),
            "ContentLength": len(body),
            "ContentType": headers.get("content-type"),
            "ETag": headers.get("etag"),
            "Metadata": metadata,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        status, headers, _ = self._request("HeadObject", "HEAD", Bucket, Key)
        return {"ETag": headers.get("etag"), "ResponseMetadata": {"HTTPStatusCode": status}}

    def head_bucket(self, *, Bucket: str) -> dict[str, Any]:  # noqa: N803
        status, _, _ = self._request("HeadBucket", "HEAD", Bucket, None)
        return {"ResponseMetadata": {"HTTPStatusCode": status}}

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        status, _, _ = self._request("DeleteObject", "DELETE", Bucket, Key)
        return {"ResponseMetadata": {"HTTPStatusCode": status}}

    def list_objects_v2(
        self,
        *,
        Bucket: str,  # noqa: N803
        Prefix: str | None = None,  # noqa: N803
        MaxKeys: int | None = None,  # noqa: N803
        StartAfter: str | None = None,  # noqa: N803
        ContinuationToken: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        query = {"list-type": "2"}
        for name, value in (
            ("prefix", Prefix),
            ("max-keys", MaxKeys),
            ("start-after", StartAfter),
            ("continuation-token", ContinuationToken),
        ):
            if value is not None:
                query[name] = str(value)
        status, _, body = self._request("ListObjectsV2", "GET", Bucket, None, query=query)
        root = ElementTree.fromstring(body)
        contents = [
            {"Key": item.findtext(f"{S3_XML_NAMESPACE}Key", "")}
            for item in root.iter(f"{S3_XML_NAMESPACE}Contents")
        ]
        result: dict[str, Any] = {
            "IsTruncated": root.findtext(f"{S3_XML_NAMESPACE}IsTruncated", "false").strip() == "true",
            "KeyCount": len(contents),
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        if contents:
            result["Contents"] = contents
        token = root.findtext(f"{S3_XML_NAMESPACE}NextContinuationToken")
        if token:
            result["NextContinuationToken"] = token
        return result

    def _request(
        self,
        operation: str,
        method: str,
        bucket: str,
        key: str | None,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        host, path = self.endpoint.locate(bucket, key)
        return self._call(
            operation, method, host, path, body=body, headers=headers, query=query, parse_error=_s3_client_error
        )


class SecretsManagerClient(_AwsHttpClient):
    """The get_secret_value call of boto3's Secrets Manager client."""

    service = SECRETS_MANAGER_SERVICE

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:  # noqa: N803 (boto3's argument name)
        body = json.dumps({"SecretId": SecretId}).encode("utf-8")
        headers = {"content-type": JSON_CONTENT_TYPE, "x-amz-target": "secretsmanager.GetSecretValue"}
        status, _, response_body = self._call(
            "GetSecretValue",
            "POST",
            self.endpoint.netloc,
            self.endpoint.base_path or "/",
            body=body,
            headers=headers,
            parse_error=_json_client_error,
        )
        result: dict[str, Any] = json.loads(response_body)
        result["ResponseMetadata"] = {"HTTPStatusCode": status}
        return result


def _take_open_connection(
    pool: queue.LifoQueue[http.client.HTTPConnection],
) -> http.client.HTTPConnection | None:
    """Return the most recently used idle connection of `pool` that is still open, or None.

    Connections that the server closed while idle are closed and dropped, as
    urllib3 does before it reuses a connection, so that a request does not
    spend an attempt on them. The server may still close a connection after
    this check, and _request retries the ConnectionClosedError that follows.
    """
    while True:
        try:
            connection = pool.get_nowait()
        except queue.Empty:
            return None
        if not _is_dropped(connection):
            return connection
        connection.close()


def _is_dropped(connection: http.client.HTTPConnection) -> bool:
    """Return whether the server closed an idle connection.

    An idle keep-alive socket is readable only when the server closed it or
    sent bytes that no request expected, and either way it is unusable.
    """
    sock = connection.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


def _default_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def _s3_client_error(operation: str, status: int, headers: Mapping[str, str], body: bytes) -> ClientError:
    """Build botocore's ClientError from an S3 error response, as botocore parses it.

    A response without an XML error body (HEAD requests have none) has the
    HTTP status as its code, such as "404".
    """
    code, message = str(status), http.client.responses.get(status, "")
    if body:
        try:
            root = ElementTree.fromstring(body)
            code = root.findtext("Code") or code
            message = root.findtext("Message") or message
        except ElementTree.ParseError:
            pass
    return _client_error(operation, status, headers, code, message, headers.get("x-amz-request-id", ""))


def _json_client_error(operation: str, status: int, headers: Mapping[str, str], body: bytes) -> ClientError:
    """Build botocore's ClientError from a JSON-protocol error response, as botocore parses it.

    The code is the "__type" of the body without its namespace, such as
    "ResourceNotFoundException".
    """
    code, message = str(status), http.client.responses.get(status, "")
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {}
    if isinstance(document, dict):
        code = str(document.get("__type") or headers.get("x-amzn-errortype") or code)
        code = code.rsplit("#", 1)[-1].split(":", 1)[0]
        message = str(document.get("message") or document.get("Message") or message)
    return _client_error(operation, status, headers, code, message, headers.get("x-amzn-requestid", ""))


def _client_error(
    operation: str, status: int, headers: Mapping[str, str], code: str, message: str, request_id: str
) -> ClientError:
    """Build botocore's ClientError with the error and response metadata its parsers fill in."""
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "HTTPStatusCode": status,
            "HTTPHeaders": dict(headers),
            "RequestId": request_id,
        },
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


# -- Signature Version 4 -------------------------------------------------------


def canonical_query_string(query: Mapping[str, str]) -> str:
    """Encode `query` sorted by name, as SigV4 and the request line both use it."""
    return "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in sorted(query.items())
    )


def sign_request(
    method: str,
    host: str,
    path: str,
    query_string: str,
    headers: dict[str, str],
    body: bytes,
    *,
    credentials: Credentials,
    region: str,
    now: datetime,
    service: str = S3_SERVICE,
) -> dict[str, str]:
    """Return `headers` plus host, x-amz-date, the session token and Authorization.

    For S3 it adds x-amz-content-sha256 too, which S3 requires. Every header
    in the result but Authorization is signed. Header names must be lower case.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    payload_hash = hashlib.sha256(body).hexdigest()
    signed_headers = {
        **{name: " ".join(str(value).split()) for name, value in headers.items()},
        "host": host,
        "x-amz-date": amz_date,
    }
    if service == S3_SERVICE:
        signed_headers["x-amz-content-sha256"] = payload_hash
    if credentials.token:
        signed_headers["x-amz-security-token"] = credentials.token
    names = sorted(signed_headers)
    canonical_request = "\n".join(
        [
            method,
            path,
            query_string,
            "".join(f"{name}:{signed_headers[name]}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        **signed_headers,
        "authorization": (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        ),
        "user-agent": USER_AGENT,
    }
