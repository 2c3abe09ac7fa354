"""Samples and rollups live outside the ORM (see monitoring/models.py and monitoring/storage.py).

monitoring_sample is partitioned by day so retention drops whole partitions; partitions are
created on demand by the writer. BRIN on time suits range scans over append-only data (rollups,
retention); the (series_id, ts) btree serves chart queries.
"""

from __future__ import annotations

from django.db import migrations

SQL = """
CREATE TABLE monitoring_sample (
    series_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX monitoring_sample_series_ts ON monitoring_sample (series_id, ts);
CREATE INDEX monitoring_sample_ts_brin ON monitoring_sample USING brin (ts);

CREATE TABLE monitoring_rollup_1m (
    series_id bigint NOT NULL,
    bucket timestamptz NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    sum double precision NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
CREATE INDEX monitoring_rollup_1m_bucket_brin ON monitoring_rollup_1m USING brin (bucket);

CREATE TABLE monitoring_rollup_1h (
    series_id bigint NOT NULL,
    bucket timestamptz NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    sum double precision NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
CREATE INDEX monitoring_rollup_1h_bucket_brin ON monitoring_rollup_1h USING brin (bucket);
"""

REVERSE_SQL = """
DROP TABLE IF EXISTS monitoring_rollup_1h;
DROP TABLE IF EXISTS monitoring_rollup_1m;
DROP TABLE IF EXISTS monitoring_sample;
"""


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0002_rollup_state")]
    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
