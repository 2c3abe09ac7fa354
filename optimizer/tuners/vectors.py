"""pgvector advisor: nearest-neighbour queries without a matching HNSW/IVFFlat index, and the search
setting that reaches the wanted recall, measured for real.

- Columns of type vector, halfvec or sparsevec in tables above `min_rows` rows.
- Queried (monitoring's workload, parsed with pglast) with `<->`, `<=>` or `<#>` in ORDER BY ... LIMIT.
- Without an HNSW or IVFFlat index whose operator class matches the operator (l2, cosine, ip), an
  index is advised: HNSW (m, ef_construction), with IVFFlat (lists = rows / 1000, probes = sqrt(lists))
  named as the lighter alternative. HypoPG cannot model these indexes.
- Where the index exists, `sample` stored vectors are used as queries: exact top-10 (index scans off)
  against the index's top-10 for several hnsw.ef_search (or ivfflat.probes) values; recall@10 and mean
  latency are recorded and the smallest value reaching `target_recall` is advised.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind
from psycopg import sql

from optimizer.tuners.base import Analysis, Finding, Tuner, TunerSchedule, register
from optimizer.tuners.indexes import IndexAdvisor

VECTOR_TYPES = ("vector", "halfvec", "sparsevec")
OPERATORS = {"<->": "l2", "<=>": "cosine", "<#>": "ip"}
EF_SEARCH = (10, 20, 40, 80, 160, 320)
PROBES = (1, 2, 4, 8, 16, 32)
K = 10


def _distance_orders(text: str) -> list[tuple[str | None, str, str, str | None]]:
    """(qualifier, column, operator, table alias map entry) of ORDER BY col <op> ... LIMIT in a query."""
    try:
        (raw,) = parse_sql(text)
    except Exception:
        return []
    stmt = raw.stmt
    if not isinstance(stmt, ast.SelectStmt) or stmt.limitCount is None or not stmt.sortClause:
        return []
    tables = {}
    for item in stmt.fromClause or ():
        if isinstance(item, ast.RangeVar):
            tables[item.alias.aliasname if item.alias else item.relname] = item.relname
    found = []
    for sort in stmt.sortClause:
        expr = sort.node
        if not (isinstance(expr, ast.A_Expr) and expr.kind == A_Expr_Kind.AEXPR_OP and expr.name):
            continue
        op = expr.name[-1].sval
        if op not in OPERATORS:
            continue
        for side in (expr.lexpr, expr.rexpr):
            if isinstance(side, ast.ColumnRef):
                names = [f.sval for f in side.fields if isinstance(f, ast.String)]
                qualifier = names[-2] if len(names) > 1 else None
                table = (
                    tables.get(qualifier) if qualifier else (next(iter(tables.values())) if len(tables) == 1 else None)
                )
                found.append((qualifier, names[-1], op, table))
    return found


@register
class VectorAdvisor(Tuner):
    kind = "vectors"
    label = "pgvector advisor"
    description = "HNSW/IVFFlat indexes for nearest-neighbour queries; ef_search/probes measured for recall."
    # Daily at 05:20: pgvector advice (index for nearest-neighbour queries; measured ef_search/probes).
    schedule = TunerSchedule(
        name="Optimizer: pgvector advisor",
        crontab="20 5 * * *",
        description="HNSW/IVFFlat indexes for <->, <=>, <#> queries; recall@10 and latency per ef_search.",
    )
    defaults = {
        "min_rows": 10_000,
        "window_minutes": 1440,
        "max_queries": 50,
        "sample": 20,
        "target_recall": 0.95,
        "m": 16,
        "ef_construction": 64,
    }

    def _columns(self) -> list[dict[str, Any]]:
        return self.session.query_dicts(
            "SELECT n.nspname AS schema, c.relname AS table, a.attname AS column, t.typname AS type, "
            "c.reltuples::float8 AS rows FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND t.typname = ANY(%s)",
            [list(VECTOR_TYPES)],
        )

    def _indexes(self) -> list[dict[str, Any]]:
        return self.session.query_dicts(
            "SELECT n.nspname AS schema, t.relname AS table, ic.relname AS name, am.amname AS method, "
            "a.attname AS column, oc.opcname AS opclass FROM pg_index i "
            "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = ic.relam "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "JOIN pg_opclass oc ON oc.oid = i.indclass[0] WHERE am.amname IN ('hnsw', 'ivfflat') AND i.indisvalid"
        )

    def _queried(self) -> dict[tuple[str, str, str], list]:
        """(table, column, operator) -> workload queries using it in ORDER BY ... LIMIT."""
        advisor = IndexAdvisor(self.session, params={k: self.params[k] for k in ("window_minutes", "max_queries")})
        end_queries: dict[tuple[str, str, str], list] = {}
        for query in advisor.workload_raw():
            for _qualifier, column, op, table in _distance_orders(query.query):
                if table:
                    end_queries.setdefault((table, column, op), []).append(query)
        return end_queries

    def analyze(self) -> Analysis:
        analysis = Analysis()
        columns = self._columns()
        indexes = self._indexes()
        queried = self._queried()
        measured = {}
        for col in columns:
            for (table, column, op), queries in queried.items():
                if (table, column) != (col["table"], col["column"]):
                    continue
                opclass = f"{col['type']}_{OPERATORS[op]}_ops"
                matching = [
                    i
                    for i in indexes
                    if (i["schema"], i["table"], i["column"]) == (col["schema"], col["table"], col["column"])
                    and i["opclass"] == opclass
                ]
                key = f"{col['schema']}.{col['table']}.{col['column']}{op}"
                if not matching and col["rows"] >= self.params["min_rows"]:
                    analysis.findings.append(self._index_finding(col, op, opclass, queries))
                elif matching:
                    result = self._measure(col, op, matching[0])
                    measured[key] = result
                    if result.get("recommended") is not None:
                        analysis.findings.append(self._setting_finding(col, matching[0], result))
        analysis.evidence = {
            "vector_columns": len(columns),
            "queried_columns": len(queried),
            "measurements": measured,
        }
        return analysis

    def _index_finding(self, col: dict, op: str, opclass: str, queries: list) -> Finding:
        rows = max(col["rows"], 1)
        lists = max(10, round(rows / 1000) if rows <= 1_000_000 else round(math.sqrt(rows)))
        name = f"pp_{col['table']}_{col['column']}_hnsw_{OPERATORS[op]}"[:63]
        statement = sql.SQL(
            "CREATE INDEX CONCURRENTLY {name} ON {schema}.{table} USING hnsw ({column} {opclass}) "
            "WITH (m = {m}, ef_construction = {ef})"
        ).format(
            name=sql.Identifier(name),
            schema=sql.Identifier(col["schema"]),
            table=sql.Identifier(col["table"]),
            column=sql.Identifier(col["column"]),
            opclass=sql.Identifier(opclass),
            m=sql.Literal(int(self.params["m"])),
            ef=sql.Literal(int(self.params["ef_construction"])),
        )
        where = f"{col['schema']}.{col['table']}.{col['column']}"
        return Finding(
            key=f"vector-index:{where}:{opclass}",
            category="vector_index",
            title=f"HNSW index on {where} ({opclass})",
            explanation=(
                f"{len(queries)} query(ies) order {where} ({col['type']}, {rows:.0f} rows) by {op} with a LIMIT and "
                f"scan every row. HNSW (m={self.params['m']}, ef_construction={self.params['ef_construction']}) "
                f"answers in milliseconds; a lighter alternative is IVFFlat with lists = {lists} and "
                f"ivfflat.probes = {max(1, round(math.sqrt(lists)))}. After it is built, the next run measures "
                "recall for hnsw.ef_search."
            ),
            statements=[self.session.render(statement)],
            estimated_impact=f"exact scan of {rows:.0f} rows becomes an index search",
            effort="high" if rows > 1_000_000 else "medium",
            priority=75,
            evidence={"index_name": name, "schema": col["schema"], "table": col["table"], "lists": lists},
        )

    def _samples(self, col: dict) -> list[str]:
        table = sql.SQL("{}.{}").format(sql.Identifier(col["schema"]), sql.Identifier(col["table"]))
        column = sql.Identifier(col["column"])
        percent = min(100.0, 100.0 * self.params["sample"] * 20 / max(col["rows"], 1))
        rows = self.session.query(
            sql.SQL("SELECT {c}::text FROM {t} TABLESAMPLE BERNOULLI ({p}) WHERE {c} IS NOT NULL LIMIT {n}").format(
                c=column, t=table, p=sql.Literal(percent), n=sql.Literal(int(self.params["sample"]))
            )
        )
        return [r[0] for r in rows]

    def _top(self, col: dict, op: str, vector: str, *, exact: bool, setting: tuple[str, int] | None) -> list[str]:
        query = sql.SQL("SELECT ctid::text FROM {s}.{t} ORDER BY {c} {op} %s::{type} LIMIT {k}").format(
            s=sql.Identifier(col["schema"]),
            t=sql.Identifier(col["table"]),
            c=sql.Identifier(col["column"]),
            op=sql.SQL(op),
            type=sql.Identifier(col["type"]),
            k=sql.Literal(K),
        )
        with self.session.pg.transaction():
            if exact:
                self.session.query("SET LOCAL enable_indexscan = off")
            if setting:
                self.session.query(
                    sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(*setting[0].split(".")), sql.Literal(setting[1]))
                )
            return [r[0] for r in self.session.query(query, [vector])]

    def _measure(self, col: dict, op: str, index: dict) -> dict[str, Any]:
        vectors = self._samples(col)
        if not vectors:
            return {"note": "no vectors to sample"}
        exact = [set(self._top(col, op, v, exact=True, setting=None)) for v in vectors]
        name, values = ("hnsw.ef_search", EF_SEARCH) if index["method"] == "hnsw" else ("ivfflat.probes", PROBES)
        results = []
        for value in values:
            latencies, recalls = [], []
            for vector, truth in zip(vectors, exact, strict=True):
                started = time.perf_counter()
                found = self._top(col, op, vector, exact=False, setting=(name, value))
                latencies.append((time.perf_counter() - started) * 1000)
                recalls.append(len(truth & set(found)) / max(len(truth), 1))
            results.append(
                {
                    "value": value,
                    "recall": round(statistics.fmean(recalls), 4),
                    "latency_ms": round(statistics.fmean(latencies), 3),
                }
            )
        reaching = [r for r in results if r["recall"] >= self.params["target_recall"]]
        return {
            "setting": name,
            "index": index["name"],
            "samples": len(vectors),
            "results": results,
            "recommended": reaching[0]["value"] if reaching else None,
        }

    def _setting_finding(self, col: dict, index: dict, result: dict) -> Finding:
        database = self.session.query("SELECT current_database()")[0][0]
        setting, value = result["setting"], result["recommended"]
        statement = sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(database), sql.Identifier(*setting.split(".")), sql.Literal(value)
        )
        best = next(r for r in result["results"] if r["value"] == value)
        return Finding(
            key=f"vector-setting:{index['name']}:{setting}",
            category="vector_index",
            title=f"Set {setting} = {value} for {col['table']}.{col['column']}",
            explanation=(
                f"Measured on {result['samples']} stored vectors: {setting} = {value} is the smallest value whose "
                f"recall@10 ({best['recall']:.2f}) reaches {self.params['target_recall']:.2f} against exact search, "
                f"at {best['latency_ms']:.2f} ms per query. New sessions of {database} pick it up."
            ),
            statements=[self.session.render(statement)],
            estimated_impact=f"recall {best['recall']:.2f} at {best['latency_ms']:.2f} ms",
            priority=45,
            verified=True,
            evidence=result,
        )
