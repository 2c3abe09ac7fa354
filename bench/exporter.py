"""The scale benchmark's local exporter: `python -m bench.exporter PORT LOG`.

A threaded HTTP server that answers GET /t/<n> with 100 series in the Prometheus text format
(50 counters and 50 gauges whose values move with the clock), one path per target, and appends
"<n> <unix time>" to LOG for every scrape, so the benchmark can count each target's collections
from outside: missed ones, doubled ones and the gaps between them. It runs as its own process so
its CPU is measured apart from the control plane's (and it needs no Django).
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERIES = 100
_COUNTERS = [f'bench_requests_total{{path="/p{i:02d}"}}' for i in range(SERIES // 2)]
_GAUGES = [f'bench_temperature{{sensor="s{i:02d}"}}' for i in range(SERIES - SERIES // 2)]


def body(now: float) -> bytes:
    lines = ["# HELP bench_requests_total Requests served.", "# TYPE bench_requests_total counter"]
    lines += [f"{name} {int(now * (i + 1))}" for i, name in enumerate(_COUNTERS)]
    lines += ["# HELP bench_temperature A gauge that moves.", "# TYPE bench_temperature gauge"]
    lines += [f"{name} {(now % 60) + i:.3f}" for i, name in enumerate(_GAUGES)]
    return ("\n".join(lines) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    log: object  # the open scrape log, set on the class by main()
    lock = threading.Lock()

    def do_GET(self) -> None:
        prefix, _, number = self.path.partition("/t/")
        if prefix or not number.isdigit():
            self.send_error(404)
            return
        now = time.time()
        payload = body(now)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        with self.lock:
            self.log.write(f"{number} {now:.3f}\n")

    def log_message(self, format: str, *args) -> None:
        pass  # one line per scrape goes to the scrape log instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # every target of a large run may connect in the same second


def main(argv: list[str]) -> None:
    port, log_path = int(argv[0]), argv[1]
    with open(log_path, "a", buffering=1) as log:  # line-buffered: the benchmark reads it while we run
        _Handler.log = log
        _Server(("127.0.0.1", port), _Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
