from __future__ import annotations

import json

from django import forms

from monitoring.models import DEFAULT_GROUP, GROUP_PATTERN, Target
from monitoring.services.targets import target_input_problems

URL_EXAMPLES = {
    Target.Kind.POSTGRES: "postgresql://user:password@db:5432/app",
    Target.Kind.REDIS: "redis://:password@cache:6379/0",
    Target.Kind.CELERY: "redis://:password@broker:6379/0 (the app's broker)",
    Target.Kind.PROMETHEUS: "http://exporter:9100/metrics",
    Target.Kind.HOST: "none: a host target reads this machine",
}


class TargetForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=Target.Kind.choices)
    url = forms.CharField(
        max_length=2000,
        required=False,
        label="URL / DSN",
        help_text="PostgreSQL: postgresql://user:password@db:5432/app · Redis: redis://:password@cache:6379/0 · "
        "Celery: its Redis broker URL · Prometheus: http://exporter:9100/metrics · Host: none. "
        "Stored encrypted and never shown back; leave blank when editing to keep the stored one.",
        # shell.js shows the chosen kind's example as the placeholder.
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "data-url-examples": json.dumps(URL_EXAMPLES)}
        ),
    )
    interval_seconds = forms.IntegerField(min_value=1, max_value=86_400, initial=10, label="Interval (s)")
    timeout_seconds = forms.IntegerField(min_value=1, max_value=300, initial=5, label="Timeout (s)")
    enabled = forms.BooleanField(required=False, initial=True)
    group = forms.RegexField(
        regex=GROUP_PATTERN,
        max_length=40,
        required=False,
        initial=DEFAULT_GROUP,
        label="Collector group",
        help_text="The workers serving this group's queue collect it (lowercase letters, digits, hyphens); "
        "blank is the default group.",
        error_messages={"invalid": "Use lowercase letters, digits and inner hyphens (at most 40)."},
    )
    options = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text='JSON, e.g. {"allowlist": ["http_*"]} for Prometheus or {"queues": ["celery"]} for Celery.',
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = editing
        if editing:
            self.fields["kind"].disabled = True

    def clean(self) -> dict:
        """Also run the service's URL and timing checks now, so one submit reports every problem
        (before, a bad URL showed only after the other fields were fixed and the form sent again)."""
        cleaned = super().clean()
        url = cleaned.get("url")
        if self.editing and not url:
            url = None  # blank keeps the stored URL: nothing to check
        problems = target_input_problems(
            kind=cleaned.get("kind"),
            url=url,
            interval_seconds=cleaned.get("interval_seconds"),
            timeout_seconds=cleaned.get("timeout_seconds"),
        )
        for problem in problems:
            field = problem.field if problem.field in self.fields else None
            if field is None or field in cleaned:  # a field that failed its own checks keeps that message
                self.add_error(field, str(problem))
        return cleaned

    def clean_group(self) -> str:
        return self.cleaned_data.get("group") or DEFAULT_GROUP

    def clean_options(self) -> dict:
        text = (self.cleaned_data.get("options") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("Options must be a JSON object.")
        return value
