"""Send one HTTP request exactly as written, for requests that requests/urllib3 would change.

requests removes dot segments from a path ("/events/.." becomes "/"), and it
cannot send a header value that is not valid text. http.client sends the
request target and the header bytes unchanged.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class RawResponse:
    """Status, headers and body bytes of one response."""

    status: int
    headers: Message
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def send(
    base_url: str,
    method: str,
    target: str,
    *,
    headers: dict[str, str | bytes] | None = None,
    body: bytes | None = None,
) -> RawResponse:
    """Send `method` to base_url's path followed by `target` (path and query, as is)."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=TIMEOUT_SECONDS
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS)

    try:
        connection.putrequest(method, parts.path + target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        reply = connection.getresponse()
        return RawResponse(status=reply.status, headers=reply.msg, body=reply.read())
    finally:
        connection.close()
