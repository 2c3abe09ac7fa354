"""The Settings page's form, and the one way every page's form hands its input to a service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms

from core.errors import InvalidInput

Saved = TypeVar("Saved")


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        strip=True,
        help_text="What the token is for, e.g. “CI deploy hook”.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. grafana-scraper", "autocomplete": "off"}),
    )


def form_submit(form: forms.Form, service: Callable[[dict[str, Any]], Saved]) -> Saved | None:
    """Calls `service` (the view's one service call) with the form's cleaned data if the form is valid.

    Returns what the service returns, or None when the form is invalid or the service refused the
    input: its InvalidInput is then on the form, so the view renders the form again (status 422).
    The service must return something (the object it wrote), since None means "not saved".
    """
    if not form.is_valid():
        return None
    try:
        return service(form.cleaned_data)
    except InvalidInput as exc:
        form.add_error(_form_field(form, exc.field), str(exc))
        return None


def _form_field(form: forms.Form, name: str | None) -> str | None:
    """The form field an error names; a nested name (executor_config.url) is on the field holding it.

    None (an error above the fields) when the form has no such field, e.g. an API-only input.
    """
    field = (name or "").split(".")[0]
    return field if field in form.fields else None
