from __future__ import annotations

from django.urls import path, register_converter

from optimizer import views
from optimizer.converters import QueryIdConverter

register_converter(QueryIdConverter, "queryid")

app_name = "optimizer"
urlpatterns = [
    path("", views.index, name="index"),
    path("recommendations/<int:recommendation_id>/apply/", views.recommendation_apply, name="apply"),
    path("recommendations/<int:recommendation_id>/dismiss/", views.recommendation_dismiss_view, name="dismiss"),
    path("tuners/<str:kind>/run/", views.tuner_run, name="tuner-run"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("schedules/<int:schedule_id>/", views.schedule_edit, name="schedule"),
    path("log/", views.log, name="log"),
    path("database/", views.database, name="database"),
    path("database/<int:target_id>/", views.database, name="database-target"),
    path("database/<int:target_id>/activity/", views.activity, name="activity"),
    path(
        "database/<int:target_id>/activity/cancel/", views.activity_signal, {"action": "cancel"}, name="activity-cancel"
    ),
    path(
        "database/<int:target_id>/activity/terminate/",
        views.activity_signal,
        {"action": "terminate"},
        name="activity-terminate",
    ),
    path("database/<int:target_id>/explain/", views.explain_view, name="explain"),
    path("database/<int:target_id>/queries/<queryid:queryid>/", views.query_history_view, name="query-history"),
    path("plan-regressions/<int:regression_id>/", views.plan_regression_view, name="plan-regression"),
    path("explain/runs/<int:run_id>/", views.explain_run_view, name="explain-run"),
    path("explain/runs/<int:run_id>/cancel/", views.explain_run_cancel_view, name="explain-cancel"),
    path("cache/", views.cache, name="cache"),
    path("cache/<int:target_id>/", views.cache, name="cache-target"),
]
