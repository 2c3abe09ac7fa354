"""Space: table and index sizes, read daily, and bloat, with REINDEX CONCURRENTLY or VACUUM when it pays.

Each run reads the size of the largest `max_relations` tables and indexes of the user schemas
(pg_total_relation_size for a table with its indexes and TOAST, pg_relation_size for an index and
for a table's own heap, pg_indexes_size, reltuples); the run stores them as one row per relation and
day (optimizer.models.RelationSize), from which the selectors draw growth per day and forecasts.

Bloat is what a relation occupies beyond what its rows need:
- estimated from the catalog for every table and btree index whose columns all have statistics (the
  well-known estimate of check_postgres, PgHero and ioguide, written again here): rows (reltuples)
  times the width of a row from pg_stats (avg_width weighted by 1 - null_frac, plus the tuple header
  and null bitmap, aligned to 8 bytes, plus its line pointer), packed into pages at the fillfactor,
  against the pages the relation has (relpages). It needs fresh statistics (ANALYZE), and is an
  estimate: wide variable-length columns make it rough;
- measured where the pgstattuple extension is installed, for the `pgstattuple_relations` largest
  relations only (each under the session's statement_timeout): `pgstattuple_approx` for a table (dead
  tuples plus free space, beyond what its fillfactor keeps free) and `pgstatindex` for a btree index
  (its pages beyond its leaf pages packed at the fillfactor, plus the meta and internal pages). A
  relation it cannot measure (a permission, a timeout) keeps its estimate.

Advice (category "bloat") when bloat is at least `bloat_percent` of the relation's own size AND at
least `min_bloat_mb`:
- a btree index: `REINDEX INDEX CONCURRENTLY`, which builds a new copy beside the old one without
  blocking writes, then swaps them (PostgreSQL 12+; before that, advice only). One that fails leaves an
  invalid copy (`..._ccnew`), which the indexes tuner finds and advises dropping;
- a table with dead tuples (at least 10 % of its rows): `VACUUM (ANALYZE)`, which makes their space
  reusable without blocking anything. Only VACUUM FULL (which rewrites the table under an ACCESS
  EXCLUSIVE lock, blocking reads and writes) or pg_repack (online, an extension) give disk back to the
  operating system: shown to run by hand, never run. A table whose bloat is free space only gets that
  advice alone, since VACUUM would not change it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from django.conf import settings
from psycopg import sql

from optimizer.tuners.base import Analysis, Finding, Tuner, TunerError, TunerSchedule, human_size, register

if TYPE_CHECKING:
    from optimizer.models import Recommendation

MB = 1024 * 1024
REINDEX_CONCURRENTLY_SINCE = 120000  # PostgreSQL 12
DEAD_SHARE_FOR_VACUUM = 0.10  # dead tuples, as a share of all tuples, that make a VACUUM worth running

# The largest tables and indexes of the user schemas, with what the estimates and advice need.
_SIZES_SQL = """
SELECT c.oid::bigint AS oid, n.nspname::text AS schema, c.relname::text AS name,
       CASE WHEN c.relkind = 'i' THEN 'index' ELSE 'table' END AS kind,
       coalesce(t.relname::text, '') AS parent,
       CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid) ELSE pg_total_relation_size(c.oid) END AS bytes,
       pg_relation_size(c.oid) AS relation_bytes,
       CASE WHEN c.relkind = 'i' THEN 0 ELSE pg_indexes_size(c.oid) END AS index_bytes,
       greatest(c.reltuples, 0)::bigint AS rows,
       coalesce(am.amname::text, '') AS access_method,
       coalesce(s.n_dead_tup, 0) AS dead_tuples,
       coalesce(
           (SELECT substring(o FROM 'fillfactor=([0-9]+)')::float8 FROM unnest(c.reloptions) o
            WHERE o LIKE 'fillfactor=%%'),
           CASE WHEN c.relkind = 'i' THEN 90 ELSE 100 END
       ) AS fillfactor
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'm', 'i')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY bytes DESC NULLS LAST, 2, 3
LIMIT %s
"""

# Table bloat from the catalog: the pages its rows need at their pg_stats width against relpages.
# A row: 23-byte header plus null bitmap, aligned to 8; its data, aligned to 8; a 4-byte line pointer.
# A page: the block minus its 24-byte header, filled to the fillfactor. Tables with a column without
# statistics (never analyzed, or added since) are left out: their estimate would be wrong.
_TABLE_ESTIMATE_SQL = """
WITH t AS (
    SELECT c.oid, n.nspname, c.relname, c.reltuples::float8 AS reltuples, c.relpages::float8 AS relpages,
           current_setting('block_size')::float8 AS bs, %(fillfactor)s AS fillfactor,
           (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
               AS columns
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = ANY(%(oids)s::oid[]) AND c.relkind IN ('r', 'm') AND c.reltuples >= 0
), s AS (
    SELECT t.oid, count(*) AS with_stats, sum((1 - st.null_frac) * st.avg_width) AS data_width,
           bool_or(st.null_frac > 0) AS nullable
    FROM t JOIN pg_stats st ON st.schemaname = t.nspname AND st.tablename = t.relname AND NOT st.inherited
    GROUP BY t.oid
)
SELECT t.oid::bigint AS oid, t.relpages * t.bs AS actual_bytes,
       ceil(t.reltuples * (
           ceil((23 + CASE WHEN s.nullable THEN ceil(t.columns / 8.0) ELSE 0 END) / 8.0) * 8
           + ceil(s.data_width / 8.0) * 8 + 4
       ) / ((t.bs - 24) * t.fillfactor / 100)) * t.bs AS expected_bytes
FROM t JOIN s ON s.oid = t.oid
WHERE s.with_stats >= t.columns
"""

# Btree index bloat from the catalog: an entry is an 8-byte IndexTupleData plus a null bitmap when a
# key column has nulls, plus its keys' width, aligned to 8, plus a line pointer; a page is the block
# minus its header (24) and btree's special space (16), filled to the fillfactor (90 by default);
# one meta page. Indexes on expressions (no pg_stats row for the key) are left out.
_INDEX_ESTIMATE_SQL = """
WITH x AS (
    SELECT ci.oid, n.nspname, ct.relname AS table_name, ci.reltuples::float8 AS reltuples,
           ci.relpages::float8 AS relpages, current_setting('block_size')::float8 AS bs,
           %(fillfactor)s AS fillfactor, i.indrelid, i.indkey
    FROM pg_index i
    JOIN pg_class ci ON ci.oid = i.indexrelid
    JOIN pg_class ct ON ct.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = ci.relnamespace
    JOIN pg_am am ON am.oid = ci.relam
    WHERE ci.oid = ANY(%(oids)s::oid[]) AND am.amname = 'btree' AND ci.reltuples >= 0 AND ci.relpages > 0
), k AS (
    SELECT x.oid, count(*) AS columns, count(st.avg_width) AS with_stats,
           sum((1 - st.null_frac) * st.avg_width) AS data_width, bool_or(st.null_frac > 0) AS nullable
    FROM x
    CROSS JOIN LATERAL unnest(x.indkey::int2[]) AS key(attnum)
    LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = key.attnum
    LEFT JOIN pg_stats st ON st.schemaname = x.nspname AND st.tablename = x.table_name
                          AND st.attname = a.attname AND NOT st.inherited
    GROUP BY x.oid
)
SELECT x.oid::bigint AS oid, x.relpages * x.bs AS actual_bytes,
       (ceil(x.reltuples * (ceil((8 + CASE WHEN k.nullable THEN 8 ELSE 0 END + k.data_width) / 8.0) * 8 + 4)
             / ((x.bs - 24 - 16) * x.fillfactor / 100)) + 1) * x.bs AS expected_bytes
FROM x JOIN k ON k.oid = x.oid
WHERE k.with_stats = k.columns
"""

_FILLFACTOR_SQL = (
    "coalesce((SELECT substring(o FROM 'fillfactor=([0-9]+)')::float8 FROM unnest({alias}.reloptions) o "
    "WHERE o LIKE 'fillfactor=%%'), {default})"
)


def _estimate_sql(template: str, alias: str, default: int) -> str:
    return template.replace("%(fillfactor)s", _FILLFACTOR_SQL.format(alias=alias, default=default))


@register
class SpaceTuner(Tuner):
    kind = "space"
    label = "Space and bloat"
    description = (
        "Reads table and index sizes daily (growth, forecasts); estimates bloat (pgstattuple where installed) "
        "and advises REINDEX CONCURRENTLY or VACUUM when it pays."
    )
    # Daily at 04:10: sizes change slowly and one point a day is the history growth and forecasts need;
    # after the nightly VACUUM (02:30), so the bloat read is what vacuum could not reclaim.
    schedule = TunerSchedule(
        name="Optimizer: space and bloat",
        crontab="10 4 * * *",
        description="Reads table and index sizes and bloat; advises REINDEX CONCURRENTLY or VACUUM.",
    )
    defaults = {
        "bloat_percent": settings.SPACE_BLOAT_PERCENT,
        "min_bloat_mb": settings.SPACE_BLOAT_MIN_MB,
        "pgstattuple_relations": settings.SPACE_PGSTATTUPLE_RELATIONS,
        "max_relations": 500,
    }

    def analyze(self) -> Analysis:
        rows = self.session.query_dicts(_SIZES_SQL, [self.params["max_relations"]])
        analysis = Analysis()
        self._estimate(rows)
        measured = self._measure_exactly(rows, analysis.notes)
        for row in rows:
            finding = self._finding(row)
            if finding is not None:
                analysis.findings.append(finding)
        analysis.relation_sizes = [
            {
                key: row[key]
                for key in ("schema", "name", "kind", "parent", "bytes", "relation_bytes", "rows", "bloat_bytes")
            }
            | {"bloat_source": row["bloat_source"]}
            for row in rows
        ]
        analysis.evidence = {
            "relations": len(rows),
            "total_bytes": sum(r["bytes"] for r in rows if r["kind"] == "table"),
            "bloat_bytes": sum(r["bloat_bytes"] or 0 for r in rows),
            "measured_by_pgstattuple": measured,
            "bloated": len(analysis.findings),
        }
        return analysis

    # --- bloat ----------------------------------------------------------------------------------

    def _estimate(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            row["bloat_bytes"], row["bloat_source"] = None, ""
        by_oid = {row["oid"]: row for row in rows}
        oids = list(by_oid)
        for template, alias, default in ((_TABLE_ESTIMATE_SQL, "c", 100), (_INDEX_ESTIMATE_SQL, "ci", 90)):
            for estimate in self.session.query_dicts(_estimate_sql(template, alias, default), {"oids": oids}):
                row = by_oid[estimate["oid"]]
                row["bloat_bytes"] = max(0, round(estimate["actual_bytes"] - estimate["expected_bytes"]))
                row["bloat_source"] = "estimate"

    def _pgstattuple_schema(self) -> str | None:
        rows = self.session.query(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pgstattuple'"
        )
        return rows[0][0] if rows else None

    def _measure_exactly(self, rows: list[dict[str, Any]], notes: list[str]) -> int:
        """pgstattuple's numbers for the largest relations it can read; returns how many it measured."""
        limit = self.params["pgstattuple_relations"]
        schema = self._pgstattuple_schema() if limit else None
        if schema is None:
            return 0
        measurable = [r for r in rows if r["kind"] == "table" or r["access_method"] == "btree"]
        measured = 0
        for row in measurable[:limit]:
            try:
                row["bloat_bytes"] = self._pgstattuple_bloat(schema, row)
            except TunerError as exc:  # permission (pg_stat_scan_tables) or timeout: keep the estimate
                notes.append(f"pgstattuple could not read {row['schema']}.{row['name']}: {exc}")
                continue
            row["bloat_source"] = "pgstattuple"
            measured += 1
        return measured

    def _pgstattuple_bloat(self, schema: str, row: dict[str, Any]) -> int:
        fillfactor = row["fillfactor"] / 100
        if row["kind"] == "table":
            function = sql.Identifier(schema, "pgstattuple_approx")
            (length, free, dead), *_ = self.session.query(
                sql.SQL("SELECT table_len, approx_free_space, dead_tuple_len FROM {}(%s::oid::regclass)").format(
                    function
                ),
                [row["oid"]],
            )
            return max(0, round(dead + free - length * (1 - fillfactor)))
        function = sql.Identifier(schema, "pgstatindex")
        (size, internal, leaf, density, block), *_ = self.session.query(
            sql.SQL(
                "SELECT index_size, internal_pages, leaf_pages, avg_leaf_density, current_setting('block_size')::int "
                "FROM {}(%s::oid::regclass)"
            ).format(function),
            [row["oid"]],
        )
        density = 0.0 if density is None or math.isnan(density) else density / 100
        needed_pages = 1 + internal + math.ceil(leaf * density / fillfactor)
        return max(0, round(size - needed_pages * block))

    # --- advice ---------------------------------------------------------------------------------

    def _finding(self, row: dict[str, Any]) -> Finding | None:
        bloat, own = row["bloat_bytes"], row["relation_bytes"]
        if bloat is None or own <= 0:
            return None
        percent = 100.0 * bloat / own
        if percent < self.params["bloat_percent"] or bloat < self.params["min_bloat_mb"] * MB:
            return None
        if row["kind"] == "index":
            return self._index_finding(row, percent)
        return self._table_finding(row, percent)

    def _how(self, row: dict[str, Any]) -> str:
        if row["bloat_source"] == "pgstattuple":
            return "measured by pgstattuple"
        return "estimated from the catalog statistics (run ANALYZE first if they are old)"

    def _evidence(self, row: dict[str, Any], percent: float) -> dict[str, Any]:
        return {
            "relation": f"{row['schema']}.{row['name']}",
            "kind": row["kind"],
            "bytes": row["relation_bytes"],
            "bloat_bytes": row["bloat_bytes"],
            "bloat_percent": round(percent, 1),
            "bloat_source": row["bloat_source"],
        }

    def _index_finding(self, row: dict[str, Any], percent: float) -> Finding:
        name = f"{row['schema']}.{row['name']}"
        index = sql.Identifier(row["schema"], row["name"])
        statement = self.session.render(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(index))
        concurrent = self.session.server_version >= REINDEX_CONCURRENTLY_SINCE
        explanation = (
            f"Index {name} on {row['parent']} takes {human_size(row['relation_bytes'])}, of which about "
            f"{human_size(row['bloat_bytes'])} ({percent:.0f} %) is empty or dead space ({self._how(row)}). "
            "A bloated index costs reads and cache for nothing. REINDEX INDEX CONCURRENTLY builds a fresh copy "
            "beside it without blocking writes and swaps them; it needs room for the copy while it runs. If it "
            "fails midway it leaves an invalid copy (named ..._ccnew), which the indexes tuner then advises dropping."
        )
        if not concurrent:
            explanation += " This server is older than PostgreSQL 12: REINDEX blocks writes there, so run it by hand."
        return Finding(
            key=f"index:{name}",
            category="bloat",
            title=f"Rebuild bloated index {name} ({percent:.0f} % bloat)",
            explanation=explanation,
            statements=[statement] if concurrent else [],
            estimated_impact=f"about {human_size(row['bloat_bytes'])} back",
            effort="medium",
            priority=min(80, 30 + round(percent / 2)),
            verified=row["bloat_source"] == "pgstattuple",
            evidence=self._evidence(row, percent)
            | {"manual_statements": [] if concurrent else [statement.replace(" CONCURRENTLY", "")]},
        )

    def _table_finding(self, row: dict[str, Any], percent: float) -> Finding:
        name = f"{row['schema']}.{row['name']}"
        table = sql.Identifier(row["schema"], row["name"])
        dead_share = row["dead_tuples"] / max(1, row["dead_tuples"] + row["rows"])
        vacuum_pays = dead_share >= DEAD_SHARE_FOR_VACUUM
        explanation = (
            f"Table {name} takes {human_size(row['relation_bytes'])} (without indexes), of which about "
            f"{human_size(row['bloat_bytes'])} ({percent:.0f} %) is dead or free space ({self._how(row)}); "
            f"{row['dead_tuples']:,} dead tuples. "
        )
        if vacuum_pays:
            explanation += "VACUUM makes their space reusable by new rows without blocking reads or writes. "
        else:
            explanation += "VACUUM has little left to reclaim: the space is already free, for new rows to reuse. "
        explanation += (
            "Neither gives disk back to the operating system: VACUUM FULL does, rewriting the table under an "
            "ACCESS EXCLUSIVE lock (no reads or writes until it ends), and pg_repack does it online. "
            "Perfpilot does not run those for you."
        )
        return Finding(
            key=f"table:{name}",
            category="bloat",
            title=f"Table {name} is {percent:.0f} % bloated" + (": VACUUM it" if vacuum_pays else ""),
            explanation=explanation,
            statements=[self.session.render(sql.SQL("VACUUM (ANALYZE) {}").format(table))] if vacuum_pays else [],
            estimated_impact=f"about {human_size(row['bloat_bytes'])} reusable",
            effort="low" if vacuum_pays else "high",
            priority=min(70, 20 + round(percent / 2)),
            verified=row["bloat_source"] == "pgstattuple",
            evidence=self._evidence(row, percent)
            | {
                "dead_tuples": row["dead_tuples"],
                "manual_statements": [self.session.render(sql.SQL("VACUUM FULL {}").format(table))],
            },
        )

    def evidence_for(self, recommendation: Recommendation) -> dict[str, Any]:
        """The relation's own size before and after (an index's is what the run page charts)."""
        relation = recommendation.evidence.get("relation")
        if not relation:
            return {}
        schema, _, name = relation.partition(".")
        rows = self.session.query(
            "SELECT pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            [schema, name],
        )
        if not rows:
            return {}
        key = "index_bytes" if recommendation.evidence.get("kind") == "index" else "table_bytes"
        return {key: rows[0][0]}
