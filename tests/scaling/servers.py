"""Local HTTP servers for executor tests: a recording webhook and a fake Kubernetes API server."""

from __future__ import annotations

import json
import re
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingWebhook:
    """Records every request; answers `status` after `delay` seconds; GET answers {"replicas": replicas}."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0
        self.replicas = 3

    @property
    def posts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST"]

    def handler(self):
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                return

            def _record(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hook.requests.append(
                    {
                        "method": method,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(body) if body else None,
                    }
                )
                if hook.delay:
                    time.sleep(hook.delay)

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (timeout test)

            def do_POST(self):
                self._record("POST")
                self._answer(hook.status, {"ok": hook.status < 400})

            def do_GET(self):
                self._record("GET")
                self._answer(200, {"replicas": hook.replicas})

        return Handler


class FakeKubernetes:
    """GET/PATCH of apps/v1 deployments and statefulsets /scale, with a bearer token check."""

    PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets)/([^/]+)/scale$")

    def __init__(self, token: str) -> None:
        self.token = token
        self.objects: dict[tuple[str, str, str], int] = {}
        self.patches: list[dict] = []

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": message,
                        "reason": reason,
                        "code": code,
                    },
                )

            def _resolve(self):
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._status(401, "Unauthorized", "Unauthorized")
                    return None
                match = fake.PATH.match(self.path.split("?")[0])
                if not match:
                    self._status(404, "NotFound", f"the server could not find {self.path}")
                    return None
                key = match.groups()
                if key not in fake.objects:
                    self._status(404, "NotFound", f'{key[1]}.apps "{key[2]}" not found')
                    return None
                return key

            def _scale(self, key) -> dict:
                namespace, _, name = key
                replicas = fake.objects[key]
                return {
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"replicas": replicas},
                    "status": {"replicas": replicas, "selector": f"app={name}"},
                }

            def do_GET(self):
                key = self._resolve()
                if key is not None:
                    self._send(200, self._scale(key))

            def do_PATCH(self):
                key = self._resolve()
                if key is None:
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                fake.patches.append({"content_type": self.headers.get("Content-Type"), "body": body})
                if isinstance(body, list):  # JSON patch
                    replicas = next(op["value"] for op in body if op.get("path") == "/spec/replicas")
                else:  # merge patch
                    replicas = body["spec"]["replicas"]
                fake.objects[key] = int(replicas)
                self._send(200, self._scale(key))

        return Handler


class FakeDockerEngine:
    """GET /services/{name} and POST /services/{id}/update?version=N of the Engine API, with version checks."""

    def __init__(self) -> None:
        self.services: dict[str, dict] = {}
        self.updates: list[dict] = []

    def add(self, name: str, replicas: int | None) -> None:
        mode = {"Replicated": {"Replicas": replicas}} if replicas is not None else {"Global": {}}
        self.services[name] = {
            "ID": f"id-{name}",
            "Version": {"Index": 10},
            "Spec": {"Name": name, "Mode": mode, "TaskTemplate": {"ContainerSpec": {"Image": "busybox:1"}}},
        }

    def _find(self, key: str) -> dict | None:
        return next((s for s in self.services.values() if key in (s["ID"], s["Spec"]["Name"])), None)

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _parts(self) -> list[str]:
                path = self.path.split("?")[0]
                return [p for p in re.sub(r"^/v[0-9.]+", "", path).split("/") if p]

            def do_GET(self):
                parts = self._parts()
                service = fake._find(parts[1]) if len(parts) == 2 and parts[0] == "services" else None
                if service is None:
                    self._send(404, {"message": f"service {parts[-1]} not found"})
                else:
                    self._send(200, service)

            def do_POST(self):
                parts = self._parts()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                service = fake._find(parts[1]) if len(parts) == 3 and parts[2] == "update" else None
                if service is None:
                    self._send(404, {"message": "no such service"})
                    return
                version = re.search(r"version=(\d+)", self.path)
                if not version or int(version.group(1)) != service["Version"]["Index"]:
                    self._send(500, {"message": "update out of sequence"})
                    return
                fake.updates.append(body)
                # Go's JSON decoding matches field names case-insensitively: the SDK sends "replicated".
                body["Mode"] = {key[:1].upper() + key[1:]: value for key, value in (body.get("Mode") or {}).items()}
                service["Spec"] = body
                service["Version"]["Index"] += 1
                self._send(200, {"Warnings": []})

        return Handler


@contextmanager
def serving(app):
    """Serve app.handler() on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), app.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
