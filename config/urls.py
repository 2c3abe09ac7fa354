from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.generic import RedirectView

from alerts import alertmanager_views
from config.api import api
from core import views
from monitoring import promql_views
from monitoring import views as monitoring_views
from monitoring.protocol_views import receiver_view

admin.site.site_header = "Perfpilot administration"
admin.site.site_title = "Perfpilot admin"

urlpatterns = [
    path("", monitoring_views.overview, name="overview"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/tokens/", views.token_create, name="token-create"),
    path("settings/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("schedules/<int:schedule_id>/run/", views.schedule_run, name="schedule-run"),
    path("schedules/<int:schedule_id>/toggle/", views.schedule_toggle, name="schedule-toggle"),
    path("monitoring/", include("monitoring.urls")),
    path("optimizer/", include("optimizer.urls")),
    path("scaling/", include("scaling.urls")),
    path("alerts/", include("alerts.urls")),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("api/v1/", api.urls),
    # Receivers of the ecosystem's push protocols (monitoring/protocols/), at the paths their clients expect.
    path("prometheus/api/v1/write", receiver_view("remote_write"), name="prometheus-remote-write"),
    path("otlp/v1/metrics", receiver_view("otlp"), name="otlp-metrics"),
    # Prometheus's query API (monitoring/promql/), for Grafana's stock Prometheus datasource.
    path("prometheus/api/v1/query", promql_views.query, name="prometheus-query"),
    path("prometheus/api/v1/query_range", promql_views.query_range, name="prometheus-query-range"),
    path("prometheus/api/v1/series", promql_views.series, name="prometheus-series"),
    path("prometheus/api/v1/labels", promql_views.labels, name="prometheus-labels"),
    path("prometheus/api/v1/label/<str:name>/values", promql_views.label_values, name="prometheus-label-values"),
    path("prometheus/api/v1/metadata", promql_views.metadata, name="prometheus-metadata"),
    path("prometheus/api/v1/status/buildinfo", promql_views.buildinfo, name="prometheus-buildinfo"),
    # Alertmanager API v2 (alerts/alertmanager_views.py): Prometheus's `alerting` sends its alerts here.
    path("alertmanager/api/v2/alerts", alertmanager_views.alerts_post, name="alertmanager-alerts"),
    path("alertmanager/api/v2/status", alertmanager_views.status, name="alertmanager-status"),
    path("alertmanager/-/healthy", alertmanager_views.probe, name="alertmanager-healthy"),
    path("alertmanager/-/ready", alertmanager_views.probe, name="alertmanager-ready"),
    # The docs themselves check for a session or a token, so a token-only client is not sent to login.
    path(
        "api/docs",
        login_not_required(RedirectView.as_view(url="/api/v1/docs", permanent=False)),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
]

handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
