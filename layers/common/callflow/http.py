"""API Gateway REST proxy requests and responses, and a router for them.

The handlers need a small part of an event handler framework: the route,
path parameters, query strings, headers and body of a request, and a proxy
response. This module does that with the standard library only. A general
framework costs tens of milliseconds of import on every cold start, and the
client waits for them.

Routes match on the event's `resource`, the route template API Gateway
matched, such as "/events/{eventId}". The values of the path parameters come
from `pathParameters`. Only an event without `resource`, such as a hand-made
test event, is matched on its `path`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_CONTENT_TYPE = "application/json"
PATH_PARAMETER = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")


@dataclass(frozen=True)
class Request:
    """The fields of an API Gateway REST proxy event that the handlers read."""

    method: str
    path: str
    resource: str | None
    path_parameters: dict[str, str]
    query: dict[str, str]
    multi_query: dict[str, list[str]]
    headers: dict[str, str]
    body: str | None
    is_base64_encoded: bool
    request_id: str | None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        request_context = event.get("requestContext") or {}
        # Header names are case-insensitive: keep them in lower case.
        raw_headers = event.get("headers") or {}
        headers = {str(name).lower(): str(value) for name, value in raw_headers.items()}
        return cls(
            method=str(event.get("httpMethod") or "").upper(),
            path=str(event.get("path") or ""),
            resource=event.get("resource"),
            path_parameters=dict(event.get("pathParameters") or {}),
            query=dict(event.get("queryStringParameters") or {}),
            multi_query={
                name: list(values)
                for name, values in (event.get("multiValueQueryStringParameters") or {}).items()
            },
            headers=headers,
            body=event.get("body"),
            is_base64_encoded=bool(event.get("isBase64Encoded")),
            request_id=request_context.get("requestId"),
        )

    def header(self, name: str) -> str | None:
        """Return the value of header `name`, whatever its case, or None."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    """An API Gateway REST proxy response with a text body."""

    status: int
    body: str
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    def to_proxy(self) -> dict[str, Any]:
        """Return the dictionary Lambda hands back to API Gateway."""
        headers = {"Content-Type": self.content_type, **self.headers}
        return {
            "statusCode": self.status,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "body": self.body,
            "isBase64Encoded": False,
        }


Handler = Callable[..., Response]
NotFoundHandler = Callable[[Request], Response]
# Called inside the except block, so it can log the traceback.
ErrorHandler = Callable[[Request, Any, Exception], Response]


@dataclass(frozen=True)
class Route:
    """A registered route: its method, template, handler, path pattern and parameter names."""

    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str]
    parameter_names: tuple[str, ...]


def _template_pattern(template: str) -> re.Pattern[str]:
    """Turn "/calls/{callId}/events" into a pattern with a named group per parameter."""
    parts = PATH_PARAMETER.split(template)
    # split alternates literal text and parameter names.
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(f"^{pattern}$")


class Router:
    """Dispatch a request to the handler registered for its method and route template.

    A handler takes the Request, the Lambda context and the path parameters,
    as keyword arguments named as in the template, and returns a Response.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            route = Route(
                method.upper(),
                template,
                handler,
                _template_pattern(template),
                tuple(PATH_PARAMETER.findall(template)),
            )
            self._routes.append(route)
            return handler

        return register

    def get(self, template: str) -> Callable[[Handler], Handler]:
        return self.route("GET", template)

    def post(self, template: str) -> Callable[[Handler], Handler]:
        return self.route("POST", template)

    def match(self, request: Request) -> tuple[Handler, dict[str, str]] | None:
        """Return the handler and path parameters for `request`, or None when no route matches."""
        for route in self._routes:
            if route.method != request.method:
                continue
            if request.resource is None:
                found = route.pattern.match(request.path)
                if found:
                    return route.handler, found.groupdict()
            elif route.template == request.resource:
                given = request.path_parameters
                return route.handler, {name: given.get(name, "") for name in route.parameter_names}
        return None

    def resolve(
        self,
        event: Mapping[str, Any],
        context: Any,
        *,
        not_found: NotFoundHandler,
        on_error: ErrorHandler,
    ) -> dict[str, Any]:
        """Handle the proxy event `event` and return the proxy response.

        A request that no route matches goes to `not_found`. An exception that
        a handler or `not_found` raises goes to `on_error`.
        """
        request = Request.from_event(event)
        try:
            matched = self.match(request)
            if matched is None:
                response = not_found(request)
            else:
                handler, parameters = matched
                response = handler(request, context, **parameters)
        except Exception as error:  # noqa: BLE001 (on_error turns every error into a response)
            response = on_error(request, context, error)
        return response.to_proxy()
