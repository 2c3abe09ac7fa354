"""A local stand-in for Slack's incoming webhooks: records every request and fails on demand.

Queue responses with `fail(...)`; when the queue is empty it answers 200 "ok". Each recorded
request keeps the JSON payload and the status it was answered with, so tests can tell delivered
messages (answered 2xx) from refused ones. `hang` holds the response for a while (a timeout for a
short client timeout, or a window to kill a worker in the middle of a delivery).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _peer_closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict = field(default_factory=dict)
    hang: float = 0.0


@dataclass
class Received:
    path: str
    payload: dict
    status: int | None  # None: the connection went away before we answered
    at: float


class FakeSlack:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: list[Reply] = []
        self.default = Reply()
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    reply = fake.replies.pop(0) if fake.replies else fake.default
                    record = Received(self.path, payload, None, time.monotonic())
                    fake.requests.append(record)
                fake.arrived.set()
                if reply.hang:
                    time.sleep(reply.hang)
                    if _peer_closed(self.connection):
                        return  # the client gave up or died: nothing was delivered
                try:
                    body = reply.body.encode()
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    # Recorded before the client can read the reply: a test that checks right after its
                    # sender returned must find it (set after the write, it raced the client).
                    record.status = reply.status
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:
                    record.status = None  # the client is gone (timed out or killed): not delivered

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"

    def fail(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    def wait_for(self, count: int, *, timeout: float = 30.0, delivered: bool = True) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.delivered() if delivered else list(self.requests)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}: {self.requests}")

    def start(self) -> FakeSlack:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
