"""A local alert sink: an HTTP receiver on 127.0.0.1 that appends each POSTed notification to a JSONL file.

Apprise's ``json://127.0.0.1:PORT/`` URL posts here, so the demo (and the tests) prove delivery end to end
without any outside service. Each line holds the request path, the idempotency-key header smmdn sends
and the JSON payload (apprise puts attachments base64-encoded under ``attachments``). ``down = True``
answers 503 (a receiver that is up but failing); ``stop()`` closes the port (connection refused); a new
receiver can start on the same ``port`` again.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KEY_HEADER = "X-Smmdn-Idempotency-Key"


class AlertReceiver:
    def __init__(self, path: Path, port: int = 0) -> None:
        self.path = path
        self.port = port
        self.count = 0
        self.refused = 0
        self.down = False
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
                if receiver.down:
                    with lock:
                        receiver.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"raw": body}
                line = {"path": self.path, "key": self.headers.get(KEY_HEADER), "payload": payload}
                with lock:
                    with receiver.path.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(line) + "\n")
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/alerts"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def url_for(self, path: str) -> str:
        """``json://`` URL of this receiver under another path (one path per team in the demo and tests)."""
        return f"json://127.0.0.1:{self.port}/{path.strip('/')}"

    def messages(self) -> list[dict[str, Any]]:
        """Everything received so far, in arrival order."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
