from __future__ import annotations

from django.urls import path

from monitoring import views

app_name = "monitoring"
urlpatterns = [
    path("", views.index, name="index"),
    path("targets/options/", views.target_options, name="target-options"),
    path("targets/<int:target_id>/", views.target_detail, name="target"),
    path("targets/<int:target_id>/edit/", views.target_edit, name="target-edit"),
    path("targets/<int:target_id>/delete/", views.target_remove, name="target-delete"),
    path("targets/<int:target_id>/test/", views.target_test, name="target-test"),
    path("targets/<int:target_id>/queries/", views.slow_queries, name="queries"),
    path("explore/", views.explore, name="explore"),
    path("promql-sources/", views.promql_sources, name="promql-sources"),
    path("promql-sources/<int:source_id>/", views.promql_source_detail, name="promql-source"),
    path("promql-sources/<int:source_id>/test/", views.promql_source_test_view, name="promql-source-test"),
    path("promql-sources/<int:source_id>/delete/", views.promql_source_remove, name="promql-source-delete"),
]
