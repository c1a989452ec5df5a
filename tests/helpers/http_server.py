"""A scripted HTTP server on 127.0.0.1 (port 0) for adapter tests: real sockets, real retries.

Each route (path without query) holds a list of replies served in order; the last one repeats.
Every request is logged (path, query, headers) so tests can assert what the client sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    body: bytes | str = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0  # wait this long before answering (read-timeout tests; released at shutdown)
    truncate_to: int | None = None  # send only this many bytes of body but the full Content-Length
    trickle_s: float = 0.0  # send the body one byte every this many seconds (deadline tests; stops at shutdown)


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.log: list[Request] = []
        self.release = threading.Event()
        self.url = ""

    def route(self, path: str, *replies: Reply | str | bytes) -> None:
        self.routes[path] = [r if isinstance(r, Reply) else Reply(r) for r in replies]

    def hits(self, path: str) -> int:
        return sum(1 for r in self.log if r.path == path)

    def _next(self, path: str) -> Reply:
        replies = self.routes.get(path)
        if not replies:
            return Reply(b"not found", status=404)
        return replies.pop(0) if len(replies) > 1 else replies[0]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            server.log.append(Request(parts.path, parse_qs(parts.query), dict(self.headers)))
            reply = server._next(parts.path)
            if reply.hang_s:
                server.release.wait(reply.hang_s)
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            try:
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                if reply.truncate_to is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if reply.trickle_s:
                    self.wfile.flush()
                    for i in range(len(body)):
                        if server.release.wait(reply.trickle_s):
                            return
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                    return
                self.wfile.write(body if reply.truncate_to is None else body[: reply.truncate_to])
                self.wfile.flush()
                if reply.truncate_to is not None:
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    return Handler


@contextmanager
def serve() -> Iterator[Server]:
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
