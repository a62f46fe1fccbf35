"""bench/load_client.py: a request that fails in transport counts as a failure."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import load_client


class DroppingPostsHandler(BaseHTTPRequestHandler):
    """Close the connection on every POST without a response, and return 200 for every GET."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's method name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass


@pytest.fixture
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DroppingPostsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stage"
    finally:
        server.shutdown()
        server.server_close()


def test_dropped_posts_count_as_failures(base_url, capsys):
    exit_code = load_client.main(
        ["--base-url", base_url, "--token", "test", "--requests", "6", "--workers", "1"]
    )
    result = json.loads(capsys.readouterr().out)

    assert exit_code == 0
    post_failures = [failure for failure in result["failures"] if failure.startswith("POST")]
    assert len(post_failures) == 3
    assert "RemoteDisconnected" in post_failures[0]
    assert result["POST"] == []
    # The worker reconnects after each dropped POST, so every GET still gets through.
    assert len(result["GET"]) == 3
