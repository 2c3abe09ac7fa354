from __future__ import annotations

import json

from django import forms

from monitoring.models import DEFAULT_GROUP, GROUP_PATTERN, Target
from monitoring.services.targets import target_input_problems

URL_EXAMPLES = {
    Target.Kind.POSTGRES: "postgresql://user:password@db:5432/app",
    Target.Kind.REDIS: "redis://:password@cache:6379/0",
    Target.Kind.CELERY: "redis://:password@broker:6379/0 or amqp://user:password@rabbitmq:5672/vhost",
    Target.Kind.PROMETHEUS: "http://exporter:9100/metrics",
    Target.Kind.HOST: "none: a host target reads this machine",
    Target.Kind.PERFPILOT: "none: reads this control plane's own database",
}


class TargetForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=Target.Kind.choices)
    url = forms.CharField(
        max_length=2000,
        required=False,
        label="URL / DSN",
        help_text="PostgreSQL: postgresql://user:password@db:5432/app · Redis: redis://:password@cache:6379/0 · "
        "Celery: its broker URL (Redis or RabbitMQ) · Prometheus: http://exporter:9100/metrics · Host: none. "
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
    pinned = forms.BooleanField(required=False, help_text="Show its charts on the Overview.")
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


YES_NO = [("", "Any"), ("yes", "Yes"), ("no", "No")]


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


class TargetFilterForm(forms.Form):
    """The targets list's filters (GET). Each maps to an argument of monitoring.selectors.targets.target_list."""

    q = forms.CharField(
        required=False,
        max_length=100,
        label="Name contains",
        widget=forms.SearchInput(attrs={"placeholder": "Name contains…", "aria-label": "Name contains"}),
    )
    kind = forms.ChoiceField(
        required=False,
        choices=[("", "Any kind"), *Target.Kind.choices],
        widget=forms.Select(attrs={"aria-label": "Kind"}),
    )
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any status"), *Target.Status.choices],
        widget=forms.Select(attrs={"aria-label": "Status"}),
    )
    enabled = forms.TypedChoiceField(required=False, choices=YES_NO, coerce=_yes_no, empty_value=None)
    pinned = forms.TypedChoiceField(required=False, choices=YES_NO, coerce=_yes_no, empty_value=None)

    def filters(self) -> dict:
        """The selector's keyword arguments: the valid filters given."""
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "text": data.get("q") or None,
            "kind": data.get("kind") or None,
            "status": data.get("status") or None,
            "enabled": data.get("enabled"),
            "pinned": data.get("pinned"),
        }


class TargetPickerInput(forms.TextInput):
    """A text input suggesting target names as the user types (HTMX fills its datalist from
    monitoring:target-options), instead of a select of every target: a deployment may have thousands."""

    template_name = "monitoring/_target_picker_input.html"

    def __init__(self, *, kind: str | None = None, attrs: dict | None = None):
        super().__init__(attrs={"autocomplete": "off", "spellcheck": "false", **(attrs or {})})
        self.kind = kind

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["kinds"] = [self.kind] if self.kind else []
        return context


class TargetPickerField(forms.CharField):
    """A target chosen by name; cleans to its id (None when left empty and not required).

    Its initial value may be an id (a saved object's target_id): the input shows the name.
    """

    def __init__(self, *, kind: str | None = None, **kwargs):
        kwargs.setdefault("max_length", 100)
        super().__init__(widget=TargetPickerInput(kind=kind), **kwargs)
        self.kind = kind

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            target = Target.objects.filter(pk=value).only("name").first()
            return target.name if target else ""
        return value

    def clean(self, value) -> int | None:
        name = super().clean(value)
        if not name:
            return None
        targets = Target.objects.filter(name=name)
        if self.kind:
            targets = targets.filter(kind=self.kind)
        found = targets.values_list("id", flat=True).first()
        if found is None:
            raise forms.ValidationError(f"No target named “{name}”: type part of a name and choose from the list.")
        return found


class PromQLSourceForm(forms.Form):
    """An external Prometheus-compatible server for PromQL rules. The token is never rendered back:
    blank on edit keeps it, `remove_token` removes it."""

    name = forms.SlugField(max_length=100, help_text="Letters, digits, - and _ (rules name it).")
    url = forms.CharField(
        max_length=500,
        label="URL",
        help_text="The API's base, e.g. http://prometheus:9090 (queries go to /api/v1/query).",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    token = forms.CharField(
        max_length=4096,
        required=False,
        label="Bearer token",
        help_text="Optional; stored encrypted and never shown back. Leave blank when editing to keep it.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )
    timeout_seconds = forms.FloatField(min_value=0.5, max_value=60, initial=10, label="Timeout (s)")

    def __init__(self, *args, editing: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["remove_token"] = forms.BooleanField(required=False, label="Remove the stored token")

    def changes(self) -> dict:
        """The cleaned data as the service takes it: token None (keep) unless one was typed or removal asked."""
        data = dict(self.cleaned_data)
        remove = data.pop("remove_token", False)
        data["token"] = "" if remove else (data["token"] or None)
        return data
