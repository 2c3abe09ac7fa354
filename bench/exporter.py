"""The benchmarks' local exporter: `python -m bench.exporter PORT LOG`.

A threaded HTTP server in the Prometheus text format, in its own process so its CPU is measured
apart from the control plane's (and it needs no Django). It appends a line to LOG for every scrape,
so a benchmark can count the scrapes from outside:

- GET /t/<n> (the scale benchmark): 100 series (50 counters and 50 gauges whose values move with
  the clock), one path per target; logs "<n> <unix time>".
- GET /e2e (the remote_write_e2e benchmark): E2E_SERIES series (counters, gauges, a histogram)
  whose values encode the scrape's sequence number k (1, 2, ...) so every stored sample can be
  accounted for, and two marker gauges (the body's first and last series) holding the exporter's
  wall-clock time at the scrape; logs "e2e <k> <unix time>".
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


E2E_COUNTERS = 2_000
E2E_GAUGES = 2_000
E2E_ROUTES = 80
E2E_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
# Both hold the exporter's wall-clock time at the scrape; the first and the last series of the body.
E2E_MARKERS = ("bench_e2e_first_series_time_seconds", "bench_e2e_last_series_time_seconds")
E2E_SEQUENCE = "bench_e2e_scrape_sequence"
# Counters, gauges, the histogram's buckets, _sum and _count per route, two markers and the sequence.
E2E_SERIES = E2E_COUNTERS + E2E_GAUGES + E2E_ROUTES * (len(E2E_BUCKETS) + 2) + 3


def e2e_body(k: int, now: float) -> bytes:
    """Scrape number k at wall-clock time now: every value is a function of k (the markers' is now),
    and changes at every scrape. Values are exact in binary floating point."""
    first, last = E2E_MARKERS
    lines = [
        f"# HELP {first} Wall-clock time of this scrape at the exporter (the body's first series).",
        f"# TYPE {first} gauge",
        f"{first} {now:.3f}",
        f"# HELP {E2E_SEQUENCE} Number of this scrape (1, 2, ...).",
        f"# TYPE {E2E_SEQUENCE} gauge",
        f"{E2E_SEQUENCE} {k}",
        "# HELP bench_e2e_requests_total Requests served.",
        "# TYPE bench_e2e_requests_total counter",
    ]
    lines += [f'bench_e2e_requests_total{{path="/p{i:04d}"}} {k * (i + 1)}' for i in range(E2E_COUNTERS)]
    lines += ["# HELP bench_e2e_queue_depth Items queued.", "# TYPE bench_e2e_queue_depth gauge"]
    lines += [f'bench_e2e_queue_depth{{queue="q{i:04d}"}} {k + i / 4}' for i in range(E2E_GAUGES)]
    lines += [
        "# HELP bench_e2e_request_duration_seconds Request duration.",
        "# TYPE bench_e2e_request_duration_seconds histogram",
    ]
    for route in range(E2E_ROUTES):
        per_bucket = k * (route + 1)  # observations added to each bucket per scrape
        observed = per_bucket * len(E2E_BUCKETS)
        lines += [
            f'bench_e2e_request_duration_seconds_bucket{{route="r{route:02d}",le="{le}"}} {per_bucket * (j + 1)}'
            for j, le in enumerate(E2E_BUCKETS)
        ]
        lines.append(f'bench_e2e_request_duration_seconds_sum{{route="r{route:02d}"}} {per_bucket / 2}')
        lines.append(f'bench_e2e_request_duration_seconds_count{{route="r{route:02d}"}} {observed}')
    lines += [
        f"# HELP {last} Wall-clock time of this scrape at the exporter (the body's last series).",
        f"# TYPE {last} gauge",
        f"{last} {now:.3f}",
    ]
    return ("\n".join(lines) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    log: object  # the open scrape log, set on the class by main()
    lock = threading.Lock()
    e2e_scrapes = 0

    def do_GET(self) -> None:
        now = time.time()
        if self.path == "/e2e":
            with self.lock:
                _Handler.e2e_scrapes += 1
                k = _Handler.e2e_scrapes
            number = f"e2e {k}"
            payload = e2e_body(k, now)
        else:
            prefix, _, number = self.path.partition("/t/")
            if prefix or not number.isdigit():
                self.send_error(404)
                return
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
