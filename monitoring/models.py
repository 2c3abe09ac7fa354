"""Monitoring data: targets, series identity, and (outside the ORM) samples and rollups.

Samples live in `monitoring_sample`, a table partitioned by day and written with COPY; rollups
in `monitoring_rollup_1m` and `monitoring_rollup_1h`. They are created by migration SQL and
read and written through monitoring.storage, not through models: the ORM adds nothing there
but overhead.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from core.conninfo import mask_url
from core.crypto import decrypt, encrypt, encrypted_url_property

# A collector group names the Celery queue its collections go to (monitoring/services/scheduling.py),
# so it must be a valid part of a queue name on Redis and RabbitMQ alike.
GROUP_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
DEFAULT_GROUP = "default"


class Target(models.Model):
    class Kind(models.TextChoices):
        HOST = "host", "Host (this machine)"
        POSTGRES = "postgres", "PostgreSQL"
        REDIS = "redis", "Redis"
        CELERY = "celery", "Celery"
        PROMETHEUS = "prometheus", "Prometheus endpoint"
        PERFPILOT = "perfpilot", "Perfpilot (this control plane)"

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        UP = "up", "Up"
        DOWN = "down", "Down"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    builtin = models.BooleanField(default=False, help_text="Registered automatically for the control plane itself.")
    pinned = models.BooleanField(default=False, help_text="Shown with its charts on the Overview.")
    interval_seconds = models.PositiveIntegerField(default=10)
    timeout_seconds = models.PositiveIntegerField(default=5)
    # The URL/DSN with its password is stored encrypted; url_display has the password masked.
    url_encrypted = models.TextField(blank=True)
    url_display = models.CharField(max_length=500, blank=True)
    options = models.JSONField(default=dict, blank=True)
    group = models.CharField(
        max_length=40,
        default=DEFAULT_GROUP,
        validators=[RegexValidator(GROUP_PATTERN)],
        help_text="Collector group: the workers serving its queue collect this target.",
    )

    # Scheduling (monitoring/services/scheduling.py): the start of the next interval to collect; a
    # scheduler claims the row when it is due and moves it on by whole intervals. collected_slot is
    # the last interval a worker took on, so a re-sent message for the same interval is dropped.
    next_due_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    collected_slot = models.DateTimeField(null=True, blank=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNKNOWN)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_notes = models.TextField(blank=True, help_text="Degraded-but-working conditions of the last collection.")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_duration_ms = models.FloatField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["next_due_at"], name="target_due", condition=models.Q(enabled=True)),
        ]

    def __str__(self) -> str:
        return self.name

    url = encrypted_url_property(mask_url, doc="The full URL, decrypted. Never render it.")

    @property
    def is_down(self) -> bool:
        return self.status == self.Status.DOWN


class Series(models.Model):
    """One time series: a metric of a target with a fixed set of labels."""

    class Kind(models.TextChoices):
        GAUGE = "gauge", "Gauge"
        RATE = "rate", "Rate (per second)"
        # A cumulative count stored as sent (remote write, OTLP): rates are computed when it is read.
        COUNTER = "counter", "Counter (cumulative)"

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="series", null=True, blank=True)
    metric = models.CharField(max_length=200)
    labels = models.JSONField(default=dict, blank=True)
    # Canonical "k=v,k2=v2" (sorted), so identity is one indexed equality.
    labels_key = models.CharField(max_length=1000, blank=True, default="")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GAUGE)
    unit = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["target", "metric", "labels_key"], name="series_identity", nulls_distinct=False
            )
        ]
        indexes = [models.Index(fields=["metric"])]

    def __str__(self) -> str:
        labels = f"{{{self.labels_key}}}" if self.labels_key else ""
        return f"{self.metric}{labels}"


class SeriesTotal(models.Model):
    """The running total of a series fed increments (OTLP delta temporality), stored cumulative.

    Each request adds its increments with one upsert, whose row lock orders concurrent requests to
    the same series: every increment is counted once, whatever the timestamps they carry.
    """

    series = models.OneToOneField(Series, on_delete=models.CASCADE, primary_key=True, related_name="total")
    total = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"total of {self.series_id}"


class CollectorState(models.Model):
    """What a collector needs from its previous run: counter values for rates and deltas."""

    target = models.OneToOneField(Target, on_delete=models.CASCADE, related_name="collector_state")
    collected_at = models.DateTimeField(null=True, blank=True)
    counters = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"state of {self.target_id}"


class QueryText(models.Model):
    """Normalized query text from pg_stat_statements, stored once per target and queryid."""

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="query_texts")
    queryid = models.BigIntegerField()
    database = models.CharField(max_length=200, blank=True)
    query = models.TextField()
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["target", "queryid"], name="query_text_identity")]

    def __str__(self) -> str:
        return self.query[:80]


class QueryStat(models.Model):
    """Per-interval deltas of one normalized query (a pg_stat_statements snapshot)."""

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="query_stats")
    queryid = models.BigIntegerField()
    collected_at = models.DateTimeField()
    interval_seconds = models.FloatField()
    calls = models.BigIntegerField()
    total_time_ms = models.FloatField()
    rows = models.BigIntegerField()
    shared_blks_hit = models.BigIntegerField()
    shared_blks_read = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["target", "collected_at"]),
            models.Index(fields=["target", "queryid", "collected_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.queryid} at {self.collected_at}"

    @property
    def mean_time_ms(self) -> float:
        return self.total_time_ms / self.calls if self.calls else 0.0


class RollupWatermark(models.Model):
    """Raw data up to done_until has been rolled up into this resolution."""

    resolution = models.CharField(max_length=10, primary_key=True)
    done_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.resolution} until {self.done_until}"


class RollupDirtyRange(models.Model):
    """A time range whose raw samples changed after it was rolled up (late pushed samples)."""

    start = models.DateTimeField()
    end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.start} to {self.end}"


class ForwardOutbox(models.Model):
    """Samples stored while remote-write forwarding is on, not yet accepted by the remote end.

    Written by monitoring.storage in the same transaction as the samples' COPY (so a sample is in
    both or neither); `rows` is the COPY's own binary records, LZ4-compressed, at most
    PERFPILOT_FORWARD_BATCH_SAMPLES per row. The forwarder (monitoring.services.forwarding) sends rows in
    id order and deletes them once the remote end answered: a queue, not a watermark, so a row committed
    late with a lower id is sent too.
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now)
    samples = models.PositiveIntegerField()
    rows = models.BinaryField()

    def __str__(self) -> str:
        return f"{self.samples} samples at {self.created_at}"


class ForwardingState(models.Model):
    """The forwarder's one row: what it sent, what the remote end refused, and when it tries again."""

    endpoint = models.CharField(max_length=500, blank=True, help_text="The URL, its password masked.")
    sent_samples = models.BigIntegerField(default=0)
    sent_requests = models.BigIntegerField(default=0)
    failed_requests = models.BigIntegerField(default=0, help_text="Answers retried: 5xx, 429, no connection.")
    rejected_requests = models.BigIntegerField(default=0, help_text="4xx answers: the batch is dropped.")
    rejected_samples = models.BigIntegerField(default=0)
    dropped_samples = models.BigIntegerField(default=0, help_text="Left out past PERFPILOT_FORWARD_MAX_QUEUE.")
    attempt = models.PositiveIntegerField(default=0, help_text="Failed attempts in a row; 0 after a success.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"forwarding to {self.endpoint or 'nowhere'}"


class PromQLSource(models.Model):
    """An external Prometheus-compatible query API (Prometheus, Thanos, Mimir, VictoriaMetrics) that
    PromQL alert and scaling rules may read instead of Perfpilot's own store, as KEDA's Prometheus
    scaler does. Requests go through core.outbound's policy; the bearer token is stored encrypted."""

    name = models.SlugField(max_length=100, unique=True)
    # The base the API paths hang off, e.g. http://prometheus:9090 (queries go to <url>/api/v1/query).
    url = models.URLField(max_length=500)
    token_encrypted = models.TextField(blank=True)
    timeout_seconds = models.FloatField(default=10.0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def token(self) -> str:
        """The bearer token, decrypted. Never render it."""
        return decrypt(self.token_encrypted) if self.token_encrypted else ""

    @token.setter
    def token(self, value: str) -> None:
        self.token_encrypted = encrypt(value) if value else ""
