"""The pgvector advisor on the embedded PostgreSQL 18 (pgvector): index advice, then a real recall
measurement over hnsw.ef_search once the index exists."""

from __future__ import annotations

from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from tests.optimizer.conftest import make_target, plant_workload

QUERY = 'SELECT id FROM "Doc Vectors" ORDER BY "Embedding" <=> $1 LIMIT $2'


def _run(target):
    run = run_create(
        tuner="vectors", target=target, trigger="operator", actor=None, dry_run=False, params={"min_rows": 1000}
    )
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    return run


def test_a_cosine_knn_query_gets_an_hnsw_index_then_a_measured_ef_search(db, pg18):
    with pg18.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute('DROP TABLE IF EXISTS "Doc Vectors"')
        conn.execute('CREATE TABLE "Doc Vectors" (id int PRIMARY KEY, "Embedding" vector(8))')
        conn.execute(
            'INSERT INTO "Doc Vectors" SELECT g, ARRAY(SELECT random() FROM generate_series(1, 8) WHERE g > 0)::vector '
            "FROM generate_series(1, 3000) g"
        )
        conn.execute('ANALYZE "Doc Vectors"')
    target = make_target(pg18)
    plant_workload(target, [(QUERY, 500, 4000.0)], database=pg18.name)
    _run(target)
    advice = Recommendation.objects.get(target=target, category="vector_index")
    assert advice.statement == (
        'CREATE INDEX CONCURRENTLY "pp_Doc Vectors_Embedding_hnsw_cosine" ON "public"."Doc Vectors" '
        'USING hnsw ("Embedding" "vector_cosine_ops") WITH (m = 16, ef_construction = 64)'
    )
    assert "lists = 10" in advice.explanation

    applied = run_execute(run_id=recommendation_apply_start(recommendation=advice, actor=None, trigger="api").id)
    assert applied.status == "succeeded", applied.error

    run = _run(target)
    measurement = next(iter(run.evidence_before["measurements"].values()))
    assert measurement["setting"] == "hnsw.ef_search"
    assert [r["value"] for r in measurement["results"]] == [10, 20, 40, 80, 160, 320]
    assert all(0.0 <= r["recall"] <= 1.0 and r["latency_ms"] > 0 for r in measurement["results"])
    assert measurement["results"][-1]["recall"] >= measurement["results"][0]["recall"]
    setting = Recommendation.objects.get(target=target, title__startswith="Set hnsw.ef_search")
    value = measurement["recommended"]
    chosen = next(r for r in measurement["results"] if r["value"] == value)
    assert chosen["recall"] >= 0.95
    assert all(r["recall"] < 0.95 for r in measurement["results"] if r["value"] < value)
    assert setting.statement == f'ALTER DATABASE "{pg18.name}" SET "hnsw"."ef_search" = {value}'
    assert setting.verified
