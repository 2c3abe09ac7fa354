"""Forms of the alerts pages. They parse text into the services' input; services validate the rest."""

from __future__ import annotations

from django import forms

from alerts.models import AlertRule, Channel, Severity
from alerts.services.matching import matchers_parse, matchers_text
from core.errors import InvalidInput
from monitoring.forms import TargetPickerField

DURATIONS = [("1", "1 hour"), ("4", "4 hours"), ("24", "1 day"), ("168", "1 week")]


def _pairs(text: str, *, field: str) -> dict[str, str]:
    """`name=value, other=value` as a dict (label sets)."""
    pairs = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise forms.ValidationError(f"“{part}” is not name=value.")
        pairs[name.strip()] = value.strip()
    return pairs


def pairs_text(pairs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in (pairs or {}).items())


class RuleForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=AlertRule.Kind.choices)
    metric = forms.CharField(
        max_length=200,
        required=False,
        help_text="e.g. host_cpu_percent (not for events).",
        # Suggestions from the metric names collected so far (the page renders the datalist).
        widget=forms.TextInput(attrs={"list": "metric-names", "autocomplete": "off", "spellcheck": "false"}),
    )
    target_id = TargetPickerField(required=False, label="Target", help_text="Type part of a name; empty: all targets.")
    series_labels = forms.CharField(required=False, help_text="Only series with these labels: mount=/, db=app")
    expression = forms.CharField(
        required=False,
        max_length=10_000,
        label="PromQL expression",
        help_text="PromQL rules: each element of the result is one alert, e.g. rate(http_errors_total[5m]) > 1.",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "autocomplete": "off"}),
    )
    promql_source_id = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label="Read from",
        help_text="PromQL rules: Perfpilot's own store, or a PromQL source (added on the Monitoring page).",
    )
    warning_threshold = forms.FloatField(
        required=False, help_text="PromQL rules: optional; each element's value at or above it."
    )
    critical_threshold = forms.FloatField(required=False)
    forecast_limit = forms.FloatField(required=False, help_text="Forecast rules: the limit (thresholds are days).")
    severity = forms.ChoiceField(
        choices=Severity.choices, help_text="For absence, event and PromQL rules without thresholds."
    )
    window_seconds = forms.IntegerField(min_value=1, initial=300, label="Window (s)")
    for_seconds = forms.IntegerField(min_value=0, initial=0, label="For (s)", help_text="Pending this long first.")
    keep_firing_for_seconds = forms.IntegerField(min_value=0, initial=0, label="Keep firing for (s)")
    eval_interval_seconds = forms.IntegerField(min_value=1, initial=30, label="Evaluate every (s)")
    labels = forms.CharField(required=False, help_text="Added to the alert: team=db, service=api")
    summary = forms.CharField(max_length=300, required=False)
    runbook = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, **kwargs) -> None:
        from monitoring.selectors.promql_sources import promql_source_list

        super().__init__(*args, **kwargs)
        sources = [(source.id, source.name) for source in promql_source_list()]
        self.fields["promql_source_id"].choices = [("", "Perfpilot's store"), *sources]

    def clean_series_labels(self) -> dict:
        return _pairs(self.cleaned_data.get("series_labels", ""), field="series_labels")

    def clean_labels(self) -> dict:
        return _pairs(self.cleaned_data.get("labels", ""), field="labels")


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=Channel.Kind.choices)
    url = forms.CharField(
        max_length=2000,
        required=False,
        label="Webhook URL",
        help_text="Stored encrypted and never shown back; leave blank when editing to keep it.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    severities = forms.MultipleChoiceField(
        choices=Severity.choices, initial=[Severity.WARNING, Severity.CRITICAL], widget=forms.CheckboxSelectMultiple
    )
    matchers = forms.CharField(required=False, help_text="Only alerts matching: target=db1, alertname=~Disk.*")
    group_by = forms.CharField(initial="alertname", required=False, help_text="Labels that group alerts in a message.")
    group_wait_seconds = forms.IntegerField(min_value=0, initial=30, label="Group wait (s)", help_text="0 = at once.")
    group_interval_seconds = forms.IntegerField(min_value=0, initial=300, label="Group interval (s)")
    repeat_interval_seconds = forms.IntegerField(min_value=60, initial=14400, label="Repeat interval (s)")
    send_resolved = forms.BooleanField(required=False, initial=True)
    enabled = forms.BooleanField(required=False, initial=True)

    def clean_matchers(self) -> list[dict]:
        try:
            return matchers_parse(self.cleaned_data.get("matchers", ""))
        except InvalidInput as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_group_by(self) -> list[str]:
        return [x.strip() for x in (self.cleaned_data.get("group_by") or "").split(",") if x.strip()]


class SilenceForm(forms.Form):
    matchers = forms.CharField(help_text="e.g. alertname=CPU busy, target=db1 (or =~ for a regular expression)")
    hours = forms.ChoiceField(choices=DURATIONS, initial="4", label="For")
    comment = forms.CharField(max_length=2000)

    def clean_matchers(self) -> list[dict]:
        try:
            matchers = matchers_parse(self.cleaned_data.get("matchers", ""))
        except InvalidInput as exc:
            raise forms.ValidationError(str(exc)) from exc
        if not matchers:
            raise forms.ValidationError("At least one matcher is needed.")
        return matchers


class AckForm(forms.Form):
    comment = forms.CharField(max_length=2000, required=False)


def silence_initial(alert) -> dict:
    labels = {k: alert.labels[k] for k in ("alertname", "target") if alert.labels.get(k)}
    return {"matchers": matchers_text([{"name": k, "op": "=", "value": v} for k, v in labels.items()])}
