"""The Prometheus collector: scrape one text exposition endpoint and map its families to our series.

Options: {"allowlist": ["http_*", "process_cpu_seconds_total", ...]} - fnmatch patterns on the
family name (a counter also matches with its `_total` suffix); empty or missing keeps every family.
At most MAX_SERIES series are kept per scrape (a note says how many were dropped).

Mapping (every name lower-cased, characters outside [a-z0-9_] become "_", then prefixed "prom_"):
    counter   foo_total        -> prom_foo_per_second            COUNTER (stored as its rate)
    gauge     foo              -> prom_foo                       GAUGE
    untyped   foo              -> prom_foo                       GAUGE
    stateset  foo              -> prom_foo{foo=state}            GAUGE (0/1)
    histogram foo_bucket       -> prom_foo{quantile="0.5"|"0.95"|"0.99"}   GAUGE, estimated from the
                                  bucket deltas since the previous scrape (kept in self.state), like
                                  PromQL's histogram_quantile(); nothing on the first scrape, after a
                                  reset, or when nothing was observed in the interval
              foo_count        -> prom_foo_count_per_second      COUNTER (observations per second)
    summary   foo{quantile}    -> prom_foo{quantile}             GAUGE (the quantiles as exposed)
              foo_count        -> prom_foo_count_per_second      COUNTER
Not stored: `_sum` samples, `_created` timestamps (the text format exposes them as gauge families),
OpenMetrics info and gaugehistogram families, and NaN/infinite values. (In the text format an
info metric such as build_info is an ordinary gauge of value 1 and is kept as one.)
"""

from __future__ import annotations

import base64
import fnmatch
import http.client
import math
import re
import urllib.error
import urllib.request
from collections import defaultdict
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from core import outbound
from monitoring.collectors.base import COUNTER, GAUGE, Collector, CollectorError, CollectResult, Measurement, register
from monitoring.storage import labels_key

MAX_SERIES = 2000
MAX_BODY_BYTES = 32 * 2**20  # a scrape bigger than this is a misconfigured target, not metrics
QUANTILES = (0.5, 0.95, 0.99)
ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"
# Column sizes of monitoring.models.Series: longer names or label sets cannot be stored.
MAX_METRIC_CHARS, MAX_LABELS_KEY_CHARS = 200, 1000
_UNSAFE = re.compile(r"[^a-z0-9_]")


def metric_name(name: str, suffix: str = "") -> str:
    return "prom_" + _UNSAFE.sub("_", name.lower()) + suffix


def bucket_quantile(q: float, bounds: list[float], counts: list[float]) -> float | None:
    """Estimate quantile q from cumulative bucket counts, as PromQL's histogram_quantile() does.

    bounds are the ascending upper bounds ending with +Inf; counts the cumulative observations.
    """
    if len(bounds) < 2 or not math.isinf(bounds[-1]) or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]  # in the +Inf bucket: the highest finite bound is all we know
    upper, upper_count = bounds[index], counts[index]
    if index == 0:
        if upper <= 0:
            return upper
        lower, lower_count = 0.0, 0.0
    else:
        lower, lower_count = bounds[index - 1], counts[index - 1]
    if upper_count == lower_count:
        return upper
    return lower + (upper - lower) * (rank - lower_count) / (upper_count - lower_count)


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """urllib ignores user:password@ in a URL: send it as HTTP basic auth instead."""
    split = urlsplit(url)
    if split.username is None:
        return url, {}
    host = split.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{split.port}" if split.port else host
    user, password = unquote(split.username), unquote(split.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urlunsplit((split.scheme, netloc, split.path, split.query, split.fragment)), {
        "Authorization": f"Basic {token}"
    }


class _Series:
    """The measurements of one scrape, capped, with the reasons series were left out."""

    def __init__(self) -> None:
        self.measurements: list[Measurement] = []
        self.capped = 0
        self.too_long = 0

    @property
    def full(self) -> bool:
        return len(self.measurements) >= MAX_SERIES

    def add(self, metric: str, value: float, labels: dict[str, str], kind: str = GAUGE) -> None:
        if not math.isfinite(value):
            return
        if len(metric) > MAX_METRIC_CHARS or len(labels_key(labels)) > MAX_LABELS_KEY_CHARS:
            self.too_long += 1
        elif self.full:
            self.capped += 1
        else:
            self.measurements.append(Measurement(metric, float(value), labels, kind))


@register
class PrometheusCollector(Collector):
    kind = "prometheus"
    label = "Prometheus endpoint"

    def collect(self) -> CollectResult:
        families = self._scrape()
        allowlist = self._allowlist()
        timestamp_families = {
            f"{family.name}_created" for family in families if family.type in ("counter", "histogram", "summary")
        }
        series = _Series()
        histograms: dict[str, dict] = {}
        for family in families:
            if family.name in timestamp_families or not _allowed(family, allowlist):
                continue
            if family.type == "counter":
                self._counter(family, series)
            elif family.type in ("gauge", "unknown", "untyped", "stateset"):
                for sample in family.samples:
                    series.add(metric_name(sample.name), sample.value, dict(sample.labels))
            elif family.type == "histogram":
                self._histogram(family, series, histograms)
            elif family.type == "summary":
                self._summary(family, series)
        self.state["histograms"] = histograms  # only what this scrape saw: vanished series are forgotten
        result = CollectResult(measurements=series.measurements)
        if series.capped:
            result.notes.append(
                f"Kept the first {MAX_SERIES} series of this scrape and dropped {series.capped}; "
                'narrow the "allowlist" option to choose which ones.'
            )
        if series.too_long:
            result.notes.append(f"Dropped {series.too_long} series whose name or labels are too long to store.")
        if not families:
            result.notes.append("The endpoint exposed no metrics.")
        return result

    def test_connection(self) -> str:
        families = self._scrape()
        samples = sum(len(family.samples) for family in families)
        return f"Prometheus endpoint: {len(families)} metric families, {samples} samples"

    # --- scraping --------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"The endpoint {self.target.url_display or 'at the configured URL'}"

    def _scrape(self) -> list:
        url = self.target.url
        if not url.startswith(("http://", "https://")):
            raise CollectorError("The scrape URL must start with http:// or https://.")
        plain_url, headers = _split_credentials(url)
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
            plain_url, headers={"Accept": ACCEPT, "User-Agent": "perfpilot-collector", **headers}
        )
        where = self._where()
        try:
            # Redirects are followed, each hop checked by the outbound policy like the first.
            with outbound.http_open(request, timeout=self.timeout, follow_redirects=True) as response:
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                body = response.read(MAX_BODY_BYTES + 1)
        except outbound.OutboundRefused as exc:
            raise CollectorError(f"{where} is refused: {exc}") from exc
        except urllib.error.HTTPError as exc:
            exc.close()
            raise CollectorError(f"{where} answered HTTP {outbound.http_status_text(exc.code)}.") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise CollectorError(f"{where} did not answer within {self.timeout:g} s.") from exc
            raise CollectorError(f"{where} could not be reached ({exc.reason}).") from exc
        except TimeoutError as exc:
            raise CollectorError(f"{where} did not send its metrics within {self.timeout:g} s.") from exc
        except (http.client.HTTPException, OSError, ValueError) as exc:
            raise CollectorError(f"{where} could not be read ({type(exc).__name__}: {exc}).") from exc
        if not 200 <= status < 300:
            raise CollectorError(f"{where} answered HTTP {outbound.http_status_text(status)}.")
        if len(body) > MAX_BODY_BYTES:
            raise CollectorError(f"{where} sent more than {MAX_BODY_BYTES // 2**20} MiB; that is not a scrape.")
        return self._parse(body, content_type)

    def _parse(self, body: bytes, content_type: str) -> list:
        where = self._where()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CollectorError(f"{where} did not send UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
        parser = (
            openmetrics_families
            if content_type.startswith("application/openmetrics-text")
            else text_string_to_metric_families
        )
        try:
            # The parser is lazy: errors surface while iterating, so iterate here.
            return list(parser(text))
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            # The parser's message quotes the offending line: the server's text, never shown back.
            raise CollectorError(
                f"{where} did not send Prometheus metrics (its text format could not be parsed)."
            ) from exc

    def _allowlist(self) -> list[str]:
        options = self.target.options or {}
        patterns = options.get("allowlist") if isinstance(options, dict) else None
        if patterns is None:
            return []
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise CollectorError('The option "allowlist" must be a list of name patterns such as "http_*".')
        return [p for p in patterns if p]

    # --- families --------------------------------------------------------------------------------

    def _counter(self, family, series: _Series) -> None:
        metric = metric_name(family.name, "_per_second")
        for sample in family.samples:
            if sample.name in (family.name, f"{family.name}_total"):
                series.add(metric, sample.value, dict(sample.labels), COUNTER)

    def _summary(self, family, series: _Series) -> None:
        for sample in family.samples:
            if sample.name == family.name:
                series.add(metric_name(family.name), sample.value, dict(sample.labels))
            elif sample.name == f"{family.name}_count":
                series.add(metric_name(family.name, "_count_per_second"), sample.value, dict(sample.labels), COUNTER)

    def _histogram(self, family, series: _Series, histograms: dict[str, dict]) -> None:
        metric = metric_name(family.name)
        buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
        own_labels: dict[str, dict[str, str]] = {}
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            if sample.name == f"{family.name}_bucket" and "le" in sample.labels:
                key = labels_key(labels)
                buckets[key].append((float(sample.labels["le"]), sample.value))
                own_labels[key] = labels
            elif sample.name == f"{family.name}_count":
                series.add(metric_name(family.name, "_count_per_second"), sample.value, labels, COUNTER)
        for key, pairs in buckets.items():
            if series.full:
                series.capped += len(QUANTILES)
                continue
            pairs.sort()
            bounds = [bound for bound, _ in pairs]
            counts = [count for _, count in pairs]
            state_key = f"{metric}|{key}"
            histograms[state_key] = {"bounds": [str(b) for b in bounds], "counts": counts}
            for q, value in self._quantiles(state_key, bounds, counts).items():
                series.add(metric, value, {**own_labels[key], "quantile": str(q)})

    def _quantiles(self, state_key: str, bounds: list[float], counts: list[float]) -> dict[float, float]:
        """p50/p95/p99 of what was observed since the previous scrape; {} when that is unknowable."""
        previous = (self.state.get("histograms") or {}).get(state_key)
        if not previous or [float(b) for b in previous["bounds"]] != bounds:
            return {}  # first sight, or the buckets were redefined
        deltas = [now - before for now, before in zip(counts, previous["counts"], strict=True)]
        if any(delta < 0 for delta in deltas):
            return {}  # the process restarted: its counters began again at zero
        # Cumulative counts must not decrease; a scrape racing an observation can make them.
        for i in range(1, len(deltas)):
            deltas[i] = max(deltas[i], deltas[i - 1])
        quantiles = {}
        for q in QUANTILES:
            value = bucket_quantile(q, bounds, deltas)
            if value is not None:
                quantiles[q] = value
        return quantiles


def _allowed(family, patterns: list[str]) -> bool:
    if not patterns:
        return True
    names = [family.name, f"{family.name}_total"] if family.type == "counter" else [family.name]
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)
