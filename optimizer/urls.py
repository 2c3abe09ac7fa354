from __future__ import annotations

from django.urls import path

from optimizer import views

app_name = "optimizer"
urlpatterns = [path("", views.index, name="index")]
