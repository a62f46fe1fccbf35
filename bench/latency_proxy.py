"""A TCP proxy on 127.0.0.1 that adds a fixed delay to every request: a model of S3's latency.

The local emulator returns an S3 response in about a millisecond, while S3 in a
region takes about ten milliseconds or more before the first byte of its
response. Requests run in parallel there, so concurrency hides most of that
wait. On the emulator there is nothing to hide. The benchmarks point a client
at this proxy to measure both settings.

The proxy forwards bytes unchanged in both directions. It waits `delay`
seconds before forwarding the first chunk of each request, that is the first
data from the client after the server's last final response, so every HTTP
request on a keep-alive connection waits once, whatever client sends it. Each connection
has its own threads, so concurrent requests wait at the same time, as they
would for S3.

    with LatencyProxy("127.0.0.1", 4566, delay=0.010) as proxy:
        client = make_client(endpoint_url=proxy.url)
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

LOOPBACK = "127.0.0.1"
CHUNK_BYTES = 65536
INTERIM_RESPONSE = b"HTTP/1.1 100 "


class LatencyProxy:
    """Forward 127.0.0.1:<ephemeral port> to target_host:target_port with a delay per request."""

    def __init__(self, target_host: str, target_port: int, *, delay: float) -> None:
        if target_host != LOOPBACK:
            raise ValueError(
                f"Invalid target host {target_host!r}: the proxy forwards only to {LOOPBACK}, "
                "so run the emulator on loopback."
            )
        self.target = (target_host, target_port)
        self.delay = delay
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="latency-proxy", daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close_quietly(sock)
            self._sockets.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _close_quietly(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.extend((client, server))
            final_response_seen = threading.Event()
            final_response_seen.set()
            threading.Thread(
                target=self._pump, args=(client, server, final_response_seen, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, final_response_seen, False), daemon=True
            ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        final_response_seen: threading.Event,
        is_request_side: bool,
    ) -> None:
        try:
            while True:
                data = source.recv(CHUNK_BYTES)
                if not data:
                    break
                if is_request_side and final_response_seen.is_set():
                    # The first chunk of a new request: wait once, as for S3.
                    final_response_seen.clear()
                    time.sleep(self.delay)
                elif not is_request_side and not data.startswith(INTERIM_RESPONSE):
                    # An interim "100 Continue" (boto3 sends Expect: 100-continue
                    # with PutObject) is part of the same request: its body
                    # follows without a second delay.
                    final_response_seen.set()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close_quietly(source)
            _close_quietly(sink)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
