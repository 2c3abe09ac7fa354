"""Forms of the scaling pages. Field checks here; domain checks (InvalidInput) land on the same fields."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django import forms

from monitoring.forms import TargetPickerField
from scaling.models import ScaledService, ScalingRule, SelectPolicy


def _json_object(text: str, what: str) -> dict:
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
    if not isinstance(value, dict):
        raise forms.ValidationError(f"{what} must be a JSON object.")
    return value


def _json_list(text: str) -> list:
    try:
        value = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc.msg}.") from exc
    if not isinstance(value, list):
        raise forms.ValidationError(
            'Policies are a JSON list, e.g. [{"type": "Pods", "value": 4, "period_seconds": 15}].'
        )
    return value


class ServiceForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="lower-case letters, digits, - and _")
    description = forms.CharField(max_length=300, required=False)
    tier = forms.ChoiceField(choices=ScaledService.Tier.choices, initial=ScaledService.Tier.IMPORTANT)
    executor_kind = forms.ChoiceField(label="Executor")
    executor_config = forms.CharField(
        required=False,
        label="Executor settings (JSON)",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text='e.g. {"url": "https://ops.example/scale"} for a webhook, {"pidfile": "/run/gunicorn.pid"} for '
        'gunicorn, {"broker_url": "redis://…", "worker": "celery@host"} for Celery. Secret settings (URLs, '
        "tokens) are stored encrypted and never shown back; leave them out when editing to keep them.",
    )
    min_replicas = forms.IntegerField(min_value=0, max_value=10_000, initial=1)
    max_replicas = forms.IntegerField(min_value=1, max_value=10_000, initial=10)
    enabled = forms.BooleanField(required=False, initial=False, help_text="Evaluated by beat.")
    dry_run = forms.BooleanField(required=False, initial=True, help_text="Decide, never call the executor.")

    def __init__(self, *args, kinds: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["executor_kind"].choices = kinds

    def clean_executor_config(self) -> dict:
        return _json_object(self.cleaned_data.get("executor_config"), "Executor settings")

    def clean(self):
        data = super().clean()
        low, high = data.get("min_replicas"), data.get("max_replicas")
        if low is not None and high is not None and high < low:
            self.add_error("max_replicas", "The maximum cannot be below the minimum.")
        return data


class BehaviourForm(forms.Form):
    min_replicas = forms.IntegerField(min_value=0, max_value=10_000)
    max_replicas = forms.IntegerField(min_value=1, max_value=10_000)
    tier = forms.ChoiceField(choices=ScaledService.Tier.choices)
    executor_config = forms.CharField(
        required=False,
        label="Executor settings (JSON)",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="Public settings are shown; secret ones left out keep their stored values.",
    )
    scale_up_stabilization_seconds = forms.IntegerField(min_value=0, max_value=3600, label="Scale-up window (s)")
    scale_up_select = forms.ChoiceField(choices=SelectPolicy.choices, label="Scale-up select")
    scale_up_policies = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Scale-up policies (JSON)")
    scale_down_stabilization_seconds = forms.IntegerField(min_value=0, max_value=3600, label="Scale-down window (s)")
    scale_down_select = forms.ChoiceField(choices=SelectPolicy.choices, label="Scale-down select")
    scale_down_policies = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Scale-down policies (JSON)")

    def clean_executor_config(self) -> dict:
        return _json_object(self.cleaned_data.get("executor_config"), "Executor settings")

    def clean_scale_up_policies(self) -> list:
        return _json_list(self.cleaned_data.get("scale_up_policies"))

    def clean_scale_down_policies(self) -> list:
        return _json_list(self.cleaned_data.get("scale_down_policies"))


def _id_picker(label: str, help_text: str) -> forms.TypedChoiceField:
    """A select of things by name that posts their id (choices are set per form, from the selectors)."""
    return forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label=label,
        help_text=help_text,
        error_messages={"invalid_choice": f"No {label.lower()} with id %(value)s: choose one from the list."},
    )


class RuleForm(forms.Form):
    name = forms.SlugField(max_length=100)
    source = forms.ChoiceField(choices=ScalingRule.Source.choices)
    series_id = _id_picker("Series", "For “collected series”: the target and metric it reads.")
    target_id = TargetPickerField(
        required=False,
        label="Target",
        help_text="Built-ins: which monitored target (type part of its name); empty: any.",
    )
    metric_name = forms.CharField(
        required=False,
        max_length=200,
        label="Metric name",
        help_text="Built-ins: read another metric than the built-in one.",
        widget=forms.TextInput(attrs={"list": "rule-metric-names", "autocomplete": "off"}),
    )
    labels = forms.CharField(required=False, help_text='Built-ins: e.g. {"queue": "default"}')
    expression = forms.CharField(
        required=False,
        max_length=4000,
        label="PromQL expression",
        help_text="For “A PromQL expression”: it must give one number, e.g. sum(rate(http_requests_total[2m])).",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
    )
    promql_source = forms.ChoiceField(
        required=False,
        label="Evaluated on",
        help_text="For “A PromQL expression”: Perfpilot's own store, or an external Prometheus-compatible server.",
    )
    target_value = forms.FloatField(label="Target value")
    target_type = forms.ChoiceField(choices=ScalingRule.TargetType.choices, initial=ScalingRule.TargetType.VALUE)
    tolerance = forms.FloatField(min_value=0, max_value=0.99, initial=0.1, help_text="0.1 = ±10 %")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(
        self,
        *args,
        series_choices: Sequence[tuple[int, str]] = (),
        promql_sources: Sequence[str] = (),
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.fields["series_id"].choices = [("", "Choose a series"), *series_choices]
        self.fields["promql_source"].choices = [("", "Perfpilot's own store"), *((n, n) for n in promql_sources)]

    def clean_labels(self) -> dict:
        labels = _json_object(self.cleaned_data.get("labels"), "Labels")
        if not all(isinstance(v, str) for v in labels.values()):
            raise forms.ValidationError("Label values must be strings.")
        return labels

    def clean_target_value(self) -> float:
        value = self.cleaned_data["target_value"]
        if value <= 0:
            raise forms.ValidationError("The target value must be above 0.")
        return value

    def clean(self):
        data = super().clean()
        if data.get("source") == ScalingRule.Source.SERIES and not data.get("series_id"):
            self.add_error("series_id", "Choose the series a rule on a collected series reads.")
        if data.get("source") == ScalingRule.Source.PROMQL and not data.get("expression", "").strip():
            self.add_error("expression", "Write the PromQL expression the rule reads.")
        if data.get("source") != ScalingRule.Source.PROMQL:
            # The PromQL fields stay on the form for every source; they mean nothing for the others.
            data["expression"], data["promql_source"] = "", None
        return data


class ScaleForm(forms.Form):
    replicas = forms.IntegerField(min_value=0, max_value=10_000)
    dry_run = forms.BooleanField(required=False, label="Dry run only")


class ScheduleForm(forms.Form):
    """On the service page beside the behaviour form: its ids get a prefix (see SCHEDULE_AUTO_ID)."""

    name = forms.CharField(max_length=100)
    cron = forms.CharField(max_length=100, help_text="minute hour day-of-month month day-of-week, e.g. * 9-17 * * 1-5")
    min_replicas = forms.IntegerField(min_value=0, max_value=10_000)
    max_replicas = forms.IntegerField(min_value=0, max_value=10_000)


# The schedule and behaviour forms share the page and field names (min_replicas, max_replicas), and the
# new-rule form has a "name" too: element ids must stay unique, so these forms prefix their ids (not names).
SCHEDULE_AUTO_ID = "id_schedule_%s"
NEW_RULE_AUTO_ID = "id_new_rule_%s"

WHATIF_RANGES = {"1h": "Last hour", "6h": "Last 6 hours", "24h": "Last 24 hours", "7d": "Last 7 days"}
