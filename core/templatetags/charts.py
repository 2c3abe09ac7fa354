"""`{% figure_template %}`: the figure template every chart on a page shares, sent once in the page head.

static/js/perfpilot.js reads it from the `figure-template` script element and sets it as each figure's
layout.template, so figure JSON (and the HTMX fragments that refresh it) carries only its own data.
"""

from __future__ import annotations

from django import template
from django.utils.html import json_script

from core.charts import FIGURE_TEMPLATE

register = template.Library()


@register.simple_tag
def figure_template() -> str:
    return json_script(FIGURE_TEMPLATE, "figure-template")
