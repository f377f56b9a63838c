"""A vendor's receiver under load from other processes: fails a share of requests at random.

A threaded ``http.server`` on a loopback port, in a background thread, so it keeps
answering whatever the test's own event loop is doing. It answers 500 to a random
``failure_rate`` of requests and 200 to the rest, and records every 200 it gave: which
path (endpoint), which ``X-Event-ID`` and the ``data`` of the body.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Receipt:
    path: str
    event_id: str
    data: Any  # the body's "data"


class FlakyReceiver:
    def __init__(self, failure_rate: float, seed: int) -> None:
        self.failure_rate = failure_rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._receipts: list[Receipt] = []
        self.failed = 0
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> FlakyReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, path: str, event_id: str, body: bytes) -> int:
        """The status for one request; a 200 is recorded before it is sent."""
        with self._lock:
            if self._rng.random() < self.failure_rate:
                self.failed += 1
                return 500
            self._receipts.append(Receipt(path, event_id, json.loads(body).get("data")))
            return 200

    def receipts(self) -> list[Receipt]:
        with self._lock:
            return list(self._receipts)

    def pairs(self) -> Counter[tuple[str, str]]:
        """How many times each (event id, path) was answered 200."""
        return Counter((r.event_id, r.path) for r in self.receipts())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: FlakyReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver

    def handle_error(self, request: object, client_address: object) -> None:
        """A client killed mid-request is what these tests do; anything else is shown."""
        if not isinstance(sys.exception(), ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the daemon's pools expect

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        assert isinstance(self.server, _Server)
        receiver = self.server.receiver
        status = receiver.answer(self.path, self.headers.get("X-Event-ID", ""), body)
        reply = b"ok" if status == 200 else b"injected failure"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: hundreds of requests a second would drown the test's output."""
