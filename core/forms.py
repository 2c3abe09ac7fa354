from __future__ import annotations

from django import forms


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        strip=True,
        help_text="What the token is for, e.g. “CI deploy hook”.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. grafana-scraper", "autocomplete": "off"}),
    )
