from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.views import section_context


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "scaling/index.html", section_context("scaling"))
