"""A local alert sink: an HTTP receiver on 127.0.0.1 that appends each POSTed notification to a JSONL file.

Apprise's ``json://127.0.0.1:PORT/`` URL posts here, so the demo proves delivery end to end without
any outside service.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class AlertReceiver:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> AlertReceiver:
        receiver = self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size).decode("utf-8", "replace")
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"raw": body}
                with lock:
                    with receiver.path.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"path": self.path, "payload": payload}) + "\n")
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        port = self._httpd.server_address[1]
        self.url = f"json://127.0.0.1:{port}/alerts"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
