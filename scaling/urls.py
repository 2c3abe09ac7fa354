from __future__ import annotations

from django.urls import path

from scaling import views

app_name = "scaling"
urlpatterns = [
    path("", views.index, name="index"),
    path("services/<slug:name>/", views.service_detail, name="service"),
    path("services/<slug:name>/edit/", views.service_edit, name="service-edit"),
    path("services/<slug:name>/state/", views.service_state, name="service-state"),
    path("services/<slug:name>/delete/", views.service_remove, name="service-delete"),
    path("services/<slug:name>/rules/", views.rule_save, name="rule-save"),
    path("services/<slug:name>/rules/<slug:rule>/delete/", views.rule_remove, name="rule-delete"),
    path("services/<slug:name>/rules/<slug:rule>/toggle/", views.rule_toggle, name="rule-toggle"),
    path("services/<slug:name>/whatif/", views.rule_whatif, name="whatif"),
    path("services/<slug:name>/evaluate/", views.evaluate_now, name="evaluate"),
    path("services/<slug:name>/scale/", views.scale, name="scale"),
    path("services/<slug:name>/schedules/", views.schedule_add, name="schedule-add"),
    path("services/<slug:name>/schedules/<int:schedule_id>/delete/", views.schedule_remove, name="schedule-delete"),
]
