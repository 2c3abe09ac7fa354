from __future__ import annotations

from django.urls import path

from alerts import views

app_name = "alerts"
urlpatterns = [
    path("", views.index, name="index"),
    path("banner/", views.banner, name="banner"),
    path("<int:alert_id>/", views.alert_detail, name="alert"),
    path("<int:alert_id>/ack/", views.alert_ack_view, name="ack"),
    path("<int:alert_id>/resolve/", views.alert_resolve_view, name="resolve"),
    path("silences/new/", views.silence_new, name="silence-new"),
    path("silences/<int:silence_id>/expire/", views.silence_expire_view, name="silence-expire"),
    path("rules/", views.rules, name="rules"),
    path("rules/new/", views.rule_edit, name="rule-new"),
    path("rules/preview/", views.rule_preview_view, name="rule-preview"),
    path("rules/<int:rule_id>/", views.rule_edit, name="rule"),
    path("rules/<int:rule_id>/delete/", views.rule_remove, name="rule-delete"),
    path("channels/", views.channels, name="channels"),
    path("channels/<int:channel_id>/", views.channel_detail, name="channel"),
    path("channels/<int:channel_id>/test/", views.channel_test, name="channel-test"),
    path("channels/<int:channel_id>/delete/", views.channel_remove, name="channel-delete"),
]
