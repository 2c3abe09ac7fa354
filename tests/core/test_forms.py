from __future__ import annotations

import pytest
from django import forms

from core.errors import InvalidInput
from core.forms import form_submit


class ExampleForm(forms.Form):
    name = forms.CharField()
    executor_config = forms.CharField(required=False)


def _refuse(field: str | None):
    def service(data: dict) -> None:
        raise InvalidInput("Refused.", field=field)

    return service


def test_a_valid_form_hands_its_cleaned_data_to_the_service_and_returns_what_it_wrote():
    form = ExampleForm({"name": "  web  "})
    assert form_submit(form, lambda data: f"saved {data['name']}") == "saved web"
    assert form.errors == {}


def test_an_invalid_form_never_reaches_the_service():
    calls = []
    form = ExampleForm({"name": ""})
    assert form_submit(form, calls.append) is None
    assert calls == []
    assert "name" in form.errors


@pytest.mark.parametrize(
    "field,shown_on",
    [("name", "name"), ("executor_config.url", "executor_config"), ("tier", "__all__"), (None, "__all__")],
    ids=["its field", "the field holding a nested name", "a field the form lacks", "no field"],
)
def test_a_refused_input_is_shown_on_the_form(field, shown_on):
    form = ExampleForm({"name": "web"})
    assert form_submit(form, _refuse(field)) is None
    assert form.errors == {shown_on: ["Refused."]}
