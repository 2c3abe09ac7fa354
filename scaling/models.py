"""Scaling data: services, their metric rules, scheduled overrides, and the decision log.

A service's executor config is split in two: the public part (`executor_config`, shown back) and
the secret fields the executor declares (`executor_secrets_encrypted`, Fernet via core.crypto,
never shown back; the API and pages show which secret fields are set, not their values).
"""

from __future__ import annotations

import json

from django.db import models

from core.crypto import decrypt, encrypt

SCALE_UP_POLICIES_DEFAULT = [
    {"type": "Percent", "value": 100, "period_seconds": 15},
    {"type": "Pods", "value": 4, "period_seconds": 15},
]
SCALE_DOWN_POLICIES_DEFAULT = [{"type": "Percent", "value": 100, "period_seconds": 15}]


def _up_policies() -> list[dict]:
    return [dict(p) for p in SCALE_UP_POLICIES_DEFAULT]


def _down_policies() -> list[dict]:
    return [dict(p) for p in SCALE_DOWN_POLICIES_DEFAULT]


class SelectPolicy(models.TextChoices):
    MAX = "Max", "Max (the biggest change allowed)"
    MIN = "Min", "Min (the smallest change allowed)"
    DISABLED = "Disabled", "Disabled (never scale this way)"


class ScaledService(models.Model):
    class Tier(models.TextChoices):
        CRITICAL = "critical", "Critical"
        IMPORTANT = "important", "Important"
        BACKGROUND = "background", "Background"

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    tier = models.CharField(max_length=20, choices=Tier.choices, default=Tier.IMPORTANT)
    executor_kind = models.CharField(max_length=20)
    executor_config = models.JSONField(default=dict, blank=True)
    executor_secrets_encrypted = models.TextField(blank=True)
    min_replicas = models.PositiveIntegerField(default=1)
    max_replicas = models.PositiveIntegerField(default=10)
    enabled = models.BooleanField(default=False, help_text="Evaluated by beat every scaling interval.")
    dry_run = models.BooleanField(default=True, help_text="Decide and record, but never call the executor's scale.")
    paused = models.BooleanField(default=False, help_text="Evaluation skipped until resumed.")

    scale_up_stabilization_seconds = models.PositiveIntegerField(default=0)
    scale_up_policies = models.JSONField(default=_up_policies, blank=True)
    scale_up_select = models.CharField(max_length=10, choices=SelectPolicy.choices, default=SelectPolicy.MAX)
    scale_down_stabilization_seconds = models.PositiveIntegerField(default=300)
    scale_down_policies = models.JSONField(default=_down_policies, blank=True)
    scale_down_select = models.CharField(max_length=10, choices=SelectPolicy.choices, default=SelectPolicy.MAX)

    # The replica count Perfpilot last set (HPA's spec.replicas): the evaluator's "current", so a
    # process that drifted (e.g. gunicorn reset by a HUP) is brought back on the next tick.
    applied_replicas = models.PositiveIntegerField(null=True, blank=True)
    observed_replicas = models.PositiveIntegerField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def secrets(self) -> dict:
        """The executor's secret fields, decrypted. Never render them."""
        if not self.executor_secrets_encrypted:
            return {}
        return json.loads(decrypt(self.executor_secrets_encrypted))

    @secrets.setter
    def secrets(self, value: dict) -> None:
        cleaned = {k: v for k, v in value.items() if v not in (None, "", {})}
        self.executor_secrets_encrypted = encrypt(json.dumps(cleaned, sort_keys=True)) if cleaned else ""

    @property
    def full_config(self) -> dict:
        """Public and secret config merged, for the executor."""
        return {**self.executor_config, **self.secrets}

    @property
    def secret_fields_set(self) -> list[str]:
        return sorted(self.secrets)


class ScalingRule(models.Model):
    class Source(models.TextChoices):
        SERIES = "series", "A collected series"
        CPU = "cpu", "CPU %"
        MEMORY = "memory", "Memory %"
        REQUEST_RATE = "request_rate", "Request rate"
        QUEUE_LENGTH = "queue_length", "Queue length"
        P95_LATENCY = "p95_latency", "p95 latency"
        PROMQL = "promql", "A PromQL expression"

    class TargetType(models.TextChoices):
        VALUE = "value", "Value (desired = ceil(current x metric / target))"
        AVERAGE = "average", "Average per replica (desired = ceil(metric / target))"

    service = models.ForeignKey(ScaledService, on_delete=models.CASCADE, related_name="rules")
    name = models.SlugField(max_length=100)
    source = models.CharField(max_length=20, choices=Source.choices)
    series_id = models.BigIntegerField(null=True, blank=True, help_text="For source 'series': the series id.")
    target_id = models.BigIntegerField(null=True, blank=True, help_text="Built-ins: the monitoring target read.")
    metric_name = models.CharField(max_length=200, blank=True, help_text="Built-ins: overrides the default metric.")
    labels = models.JSONField(default=dict, blank=True, help_text="Built-ins: label values a series must have.")
    expression = models.TextField(blank=True, help_text="For source 'promql': an expression giving one number.")
    # Where a PromQL rule is evaluated: an external Prometheus-compatible server, or (null) Perfpilot's own
    # store. PROTECT: deleting a source some rule reads must not silently move the rule to another store.
    promql_source = models.ForeignKey(
        "monitoring.PromQLSource",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="scaling_rules",
        help_text="For source 'promql': the server evaluating it; empty: Perfpilot's own store.",
    )
    target_value = models.FloatField()
    target_type = models.CharField(max_length=10, choices=TargetType.choices, default=TargetType.VALUE)
    tolerance = models.FloatField(default=0.1)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "name"]
        constraints = [models.UniqueConstraint(fields=["service", "name"], name="scaling_rule_name_per_service")]

    def __str__(self) -> str:
        return f"{self.service.name}/{self.name}"


class ScheduleOverride(models.Model):
    """While the cron expression matches the current minute, min and max replicas are these."""

    service = models.ForeignKey(ScaledService, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=100)
    cron = models.CharField(max_length=100, help_text="minute hour day-of-month month day-of-week")
    min_replicas = models.PositiveIntegerField()
    max_replicas = models.PositiveIntegerField()
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["service", "name"]

    def __str__(self) -> str:
        return f"{self.service.name}: {self.name} ({self.cron})"


class ScalingDecision(models.Model):
    class Trigger(models.TextChoices):
        BEAT = "beat", "Beat"
        MANUAL = "manual", "Evaluate now"
        SCALE = "scale", "Manual scale"

    class Result(models.TextChoices):
        UNCHANGED = "unchanged", "No change"
        SCALED = "scaled", "Scaled"
        DRY_RUN = "dry_run", "Dry run"
        FAILED = "failed", "Failed"

    service = models.ForeignKey(ScaledService, on_delete=models.CASCADE, related_name="decisions")
    created_at = models.DateTimeField(db_index=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.BEAT)
    inputs = models.JSONField(default=dict, blank=True)  # metric values per rule, min/max, history sizes
    proposals = models.JSONField(default=list, blank=True)  # per rule: ratio, desired, notes
    current_replicas = models.IntegerField(null=True, blank=True)
    observed_replicas = models.IntegerField(null=True, blank=True)
    recommended_replicas = models.IntegerField(null=True, blank=True)  # before stabilization (its history)
    desired_replicas = models.IntegerField(null=True, blank=True)  # the choice
    executed = models.BooleanField(default=False)
    dry_run = models.BooleanField(default=False)
    result = models.CharField(max_length=10, choices=Result.choices)
    error = models.TextField(blank=True)
    explanation = models.JSONField(default=list, blank=True)  # plain-language steps
    confidence = models.FloatField(null=True, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["service", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.service_id} at {self.created_at}: {self.result}"

    @property
    def summary(self) -> str:
        return self.explanation[-1] if self.explanation else self.error
