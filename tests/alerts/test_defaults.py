"""The default rule set: installed once on first start, editable, on metrics the collectors store."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.models import EVENT_KINDS, AlertRule
from alerts.services.defaults import DEFAULT_RULES, FIRST_VERSION_KEYS, INSTALLED_ACTION, rules_install_defaults
from alerts.services.manage import rule_delete, rule_input_from, rule_update

pytestmark = pytest.mark.django_db
COLLECTORS = Path(__file__).resolve().parents[2] / "monitoring" / "collectors"


def test_every_default_rule_watches_a_metric_a_collector_stores():
    sources = "".join(path.read_text() for path in COLLECTORS.glob("*.py"))
    for key, rule in DEFAULT_RULES.items():
        if rule.kind not in EVENT_KINDS:
            assert f'"{rule.metric}"' in sources, f"{key}: {rule.metric} is not stored by any collector"


def test_the_defaults_cover_what_the_issue_asks_for():
    metrics = {rule.metric for rule in DEFAULT_RULES.values()}
    for needed in ("host_cpu_percent", "host_memory_used_percent", "host_disk_used_percent",
                   "postgres_connections_used_percent", "postgres_cache_hit_ratio_percent",
                   "postgres_replication_lag_seconds", "postgres_oldest_transaction_age_seconds",
                   "postgres_xid_wraparound_percent", "redis_used_memory_bytes", "redis_allocator_frag_bytes",
                   "redis_evicted_keys_per_second", "celery_queue_length"):  # fmt: skip
        assert needed in metrics
    assert {rule.kind for rule in DEFAULT_RULES.values()} >= {
        "target_down",
        "tuner_failure",
        "scaling_failure",
        "plan_regression",
    }


def test_defaults_are_installed_once_and_stay_edited_or_deleted():
    installed = rules_install_defaults()
    assert len(installed) == len(DEFAULT_RULES) == AlertRule.objects.count()
    cpu = AlertRule.objects.get(builtin_key="cpu")
    data = rule_input_from(cpu)
    data.warning_threshold = 70.0
    rule_update(rule=cpu, data=data, actor=None, via="system")
    rule_delete(rule=AlertRule.objects.get(builtin_key="redis_memory"), actor=None, via="system")
    assert rules_install_defaults() == []
    assert AlertRule.objects.get(builtin_key="cpu").warning_threshold == 70.0
    assert not AlertRule.objects.filter(builtin_key="redis_memory").exists()


def test_an_existing_installation_gets_only_the_rules_added_since_and_never_a_deleted_one():
    from core.services import audit_record

    # An installation of the first version: its install record names rules, not keys.
    audit_record(actor=None, via="system", action=INSTALLED_ACTION, detail={"rules": ["CPU busy"]})
    installed = rules_install_defaults()
    new_keys = set(DEFAULT_RULES) - FIRST_VERSION_KEYS
    assert new_keys == {"tuner_failure", "scaling_failure", "pg_sequence_end", "plan_regression"}
    assert sorted(installed) == sorted(DEFAULT_RULES[key].name for key in new_keys)
    assert not AlertRule.objects.filter(builtin_key="cpu").exists()  # installed (and deleted) long ago
    rule_delete(rule=AlertRule.objects.get(builtin_key="tuner_failure"), actor=None, via="system")
    assert rules_install_defaults() == []
    assert not AlertRule.objects.filter(builtin_key="tuner_failure").exists()


def test_first_start_bootstrap_installs_the_default_rules(monkeypatch):
    from core import bootstrap

    monkeypatch.setattr(bootstrap, "call_command", lambda *args, **kwargs: None)  # migrations are already applied
    lines = []
    bootstrap.bootstrap(write=lines.append, collect_static=False)
    assert f"installed the default alert rules: {len(DEFAULT_RULES)} rules" in lines
    assert AlertRule.objects.filter(builtin_key__isnull=False).count() == len(DEFAULT_RULES)
