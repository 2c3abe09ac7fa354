"""Index advisor: missing indexes from the workload, and unused, duplicate, invalid and FK indexes.

Workload: monitoring's pg_stat_statements deltas over a window (monitoring.selectors.statements),
heaviest total time first. Each query is parsed (querytree) into candidates per table: equality
columns first, then one range column, or the ORDER BY columns with their direction; up to 3
columns; with a partial-index predicate for constant tests (IS NULL, = true).

With HypoPG in the target database every candidate is verified Dexter-style on generic plans
(EXPLAIN (GENERIC_PLAN) on PostgreSQL 16+, PREPARE + plan_cache_mode=force_generic_plan before):
pass 1 with all single-column candidates, pass 2 adding the multi-column ones; an index is advised
only when the planner uses it in a plan that costs at most half the query's current plan, for a
query that matters (a share of the window's total time). A final pass with only the advised
indexes checks that no query plans worse. Without HypoPG the advice comes from pg_stats
selectivity and is labelled "unverified".

With HypoPG, each query is also planned with the constants learned for its parameters written in
(index_values: pg_stat_activity samples, pg_stats' rare most-common values), so a partial index on a
value can win where the generic plan hides it; and the advised indexes are kept as one set for the
workload (index_sets): an index whose writes cost more than the workload loses without it is left out.
Each advice names the queries it serves (mean time, plan cost before and after) and its estimated
size; the reasons to drop one index (invalid, duplicate, unused) make one finding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone
from psycopg import sql

from monitoring.models import QueryStat
from monitoring.selectors.statements import SlowQuery, slow_queries
from optimizer.services.sessions import ActionFailed
from optimizer.tuners import index_sets, index_values
from optimizer.tuners.base import Analysis, Finding, Tuner, TunerSchedule, human_size, register
from optimizer.tuners.index_values import LearnedValue
from optimizer.tuners.querytree import QueryShape, Unparseable, query_shape

logger = logging.getLogger(__name__)
MAX_COLUMNS = 3
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass(frozen=True)
class Candidate:
    schema: str
    table: str
    columns: tuple[tuple[str, bool], ...]  # (column, descending)
    predicate: tuple[str, str] | None = None  # (column, "IS NULL" / "IS NOT NULL" / "IS TRUE" / "IS FALSE" / "=")
    value: str | None = None  # the constant of an "=" predicate, learned from the target (index_values)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def describe(self) -> str:
        cols = ", ".join(f"{c}{' DESC' if d else ''}" for c, d in self.columns)
        where = f" WHERE {self.predicate[0]} {self.predicate[1]}" if self.predicate else ""
        if self.value is not None:
            where += " '" + self.value.replace("'", "''") + "'"
        return f"{self.qualified} ({cols}){where}"

    def name(self) -> str:
        # Names are plain ASCII words (quoting still applies); any other character becomes "_".
        raw = f"pp_{self.table}_{'_'.join(c for c, _ in self.columns)}_idx".lower()
        base = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", raw))
        if len(base.encode()) > 63 or self.predicate:
            digest = hashlib.sha256(self.describe().encode()).hexdigest()[:8]
            base = f"{base.encode()[:50].decode(errors='ignore').rstrip('_')}_{digest}"
        return base

    def ddl(self, *, concurrently: bool, name: str | None = None) -> sql.Composed:
        columns = sql.SQL(", ").join(
            sql.SQL("{}{}").format(sql.Identifier(c), sql.SQL(" DESC" if d else "")) for c, d in self.columns
        )
        where = sql.SQL("")
        if self.predicate:
            column, test = sql.Identifier(self.predicate[0]), self.predicate[1]
            # Written the way queries test booleans, so the planner proves the predicate at once.
            if test == "IS TRUE":
                where = sql.SQL(" WHERE {}").format(column)
            elif test == "IS FALSE":
                where = sql.SQL(" WHERE NOT {}").format(column)
            elif test == "=":
                where = sql.SQL(" WHERE {} = {}").format(column, sql.Literal(self.value))
            else:
                where = sql.SQL(" WHERE {} {}").format(column, sql.SQL(test))
        return sql.SQL("CREATE INDEX {conc}{name} ON {schema}.{table} ({columns}){where}").format(
            conc=sql.SQL("CONCURRENTLY " if concurrently else ""),
            name=sql.Identifier(name or self.name()),
            schema=sql.Identifier(self.schema),
            table=sql.Identifier(self.table),
            columns=columns,
            where=where,
        )


@dataclass
class WorkloadQuery:
    queryid: int
    text: str
    total_time_ms: float
    calls: int
    mean_time_ms: float
    shape: QueryShape
    base_cost: float | None = None
    best_cost: float | None = None
    winners: set[Candidate] = field(default_factory=set)
    variant: str = ""  # "status = 'lost'": the query with a learned constant written in (index_values)
    learned: LearnedValue | None = None

    @property
    def key(self) -> tuple[int, str]:
        return (self.queryid, self.variant)


@dataclass
class ExistingIndex:
    oid: int
    schema: str
    table: str
    name: str
    columns: tuple[str | None, ...]
    unique: bool
    primary: bool
    valid: bool
    has_predicate: bool
    method: str
    bytes: int
    scans: int
    last_scan_age_s: float | None
    definition: str
    opclasses: tuple[str, ...] = ()  # "opclass:collation" per column
    partitioned: bool = False  # on a partitioned table, or a partition's attached index

    def leads(self, other: ExistingIndex) -> bool:
        """This index's columns, operator classes and collations start `other`'s."""
        n = len(self.columns)
        return self.columns == other.columns[:n] and self.opclasses == other.opclasses[:n]


_INDEXES_SQL = """
SELECT i.indexrelid, n.nspname, t.relname, ic.relname, i.indisunique, i.indisprimary, i.indisvalid,
       i.indpred IS NOT NULL, am.amname, pg_relation_size(i.indexrelid),
       coalesce(s.idx_scan, 0), pg_get_indexdef(i.indexrelid),
       ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       {last_scan},
       ARRAY(SELECT opc.opcname || ':' || coalesce(k.coll::text, '0')
             FROM unnest(i.indclass::oid[], i.indcollation::oid[]) WITH ORDINALITY k(opc, coll, ord)
             JOIN pg_opclass opc ON opc.oid = k.opc ORDER BY k.ord) AS opclasses,
       ic.relkind = 'I' OR ic.relispartition AS partitioned
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""


@register
class IndexAdvisor(Tuner):
    kind = "indexes"
    label = "Index advisor"
    description = "Advises missing indexes from the workload (verified with HypoPG) and flags useless ones."
    # Hourly at :23: index advice from the last day's workload (read-only; applying is an operator's click).
    schedule = TunerSchedule(
        name="Optimizer: index advisor",
        crontab="23 * * * *",
        description="Advises missing indexes (HypoPG-verified where installed) and flags useless ones.",
    )
    defaults = {
        "window_minutes": 1440,
        "max_queries": 50,
        "min_saving_percent": 50.0,
        "min_share_percent": 1.0,  # of the window's total time: "queries that matter"
        "min_table_rows": 10_000,
        "unused_window_days": 7.0,
        # What one written row costs each index on its table (index_sets weighs it against read savings).
        "index_write_us_per_row": 10.0,
        # pg_stats most-common values rarer than this share of rows are tried as partial-index constants.
        "rare_value_fraction": 0.05,
        "activity_samples": 3,  # reads of pg_stat_activity for the constants queries run with
    }

    # --- catalog ------------------------------------------------------------------------
    def _columns(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows = self.session.query(
            "SELECT n.nspname, c.relname, c.reltuples::float8, array_agg(a.attname::text ORDER BY a.attnum) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> ALL(%s) GROUP BY 1, 2, 3",
            [list(SYSTEM_SCHEMAS)],
        )
        return {(s, t): {"rows": max(r, 0.0), "columns": set(cols)} for s, t, r, cols in rows}

    def _search_path(self) -> list[str]:
        return [r[0] for r in self.session.query("SELECT unnest(current_schemas(false))")]

    def existing_indexes(self) -> list[ExistingIndex]:
        last_scan = (
            "extract(epoch FROM now() - s.last_idx_scan)" if self.session.server_version >= 160000 else "NULL::float8"
        )
        rows = self.session.query(sql.SQL(_INDEXES_SQL.replace("{last_scan}", last_scan)))
        return [
            ExistingIndex(
                oid=r[0],
                schema=r[1],
                table=r[2],
                name=r[3],
                unique=r[4],
                primary=r[5],
                valid=r[6],
                has_predicate=r[7],
                method=r[8],
                bytes=r[9],
                scans=r[10],
                definition=r[11],
                columns=tuple(r[12]),
                last_scan_age_s=r[13],
                opclasses=tuple(r[14]),
                partitioned=r[15],
            )
            for r in rows
        ]

    # --- workload -----------------------------------------------------------------------
    def workload_raw(self) -> list[SlowQuery]:
        """Monitoring's heaviest queries of this database over the window, by total time."""
        end = timezone.now()
        start = end - timedelta(minutes=self.params["window_minutes"])
        database = self.session.query("SELECT current_database()")[0][0]
        queries = slow_queries(
            target_id=self.session.target.id,
            start=start,
            end=end,
            order_by="total_time",
            limit=self.params["max_queries"],
        )
        return [q for q in queries if q.query and (not q.database or q.database == database)]

    def workload(self) -> list[WorkloadQuery]:
        queries = []
        for q in self.workload_raw():
            try:
                shape = query_shape(q.query)
            except Unparseable:
                continue
            queries.append(
                WorkloadQuery(
                    queryid=q.queryid,
                    text=q.query,
                    total_time_ms=q.total_time_ms,
                    calls=q.calls,
                    mean_time_ms=q.mean_time_ms,
                    shape=shape,
                )
            )
        return queries

    def _resolve(self, shape: QueryShape, catalog: dict, search_path: list[str]) -> dict[str, tuple[str, str]]:
        """alias -> (schema, table) for the tables of a query that exist here."""
        resolved = {}
        for alias, ref in shape.tables.items():
            schemas = [ref.schema] if ref.schema else search_path
            for schema in schemas:
                if (schema, ref.name) in catalog:
                    resolved[alias] = (schema, ref.name)
                    break
        return resolved

    def _owner(self, qualifier, column, resolved, catalog) -> tuple[str, str] | None:
        if qualifier is not None:
            table = resolved.get(qualifier)
            return table if table and column in catalog[table]["columns"] else None
        owners = [t for t in resolved.values() if column in catalog[t]["columns"]]
        return owners[0] if len(set(owners)) == 1 else None

    def candidates(self, query: WorkloadQuery, catalog: dict, search_path: list[str]) -> set[Candidate]:
        resolved = self._resolve(query.shape, catalog, search_path)
        per_table: dict[tuple[str, str], dict[str, list]] = {}

        def bucket(table):
            return per_table.setdefault(table, {"eq": [], "range": [], "order": [], "pred": []})

        shape = query.shape
        for kind, items in (("eq", shape.equality), ("eq", shape.joins), ("range", shape.ranges)):
            for qualifier, column in items:
                table = self._owner(qualifier, column, resolved, catalog)
                if table and column not in bucket(table)[kind]:
                    bucket(table)[kind].append(column)
        for qualifier, column, value in shape.literals:  # a learned constant: a partial index on its value
            table = self._owner(qualifier, column, resolved, catalog)
            if table:
                bucket(table)["pred"].append((column, "=", value))
        for qualifier, column, predicate in shape.constants:
            table = self._owner(qualifier, column, resolved, catalog)
            if table:
                bucket(table)["pred"].append((column, predicate, None))
        order_tables = {self._owner(q, c, resolved, catalog) for q, c, _ in shape.order_by}
        if len(order_tables) == 1 and None not in order_tables:
            table = order_tables.pop()
            bucket(table)["order"] = [(c, d) for _, c, d in shape.order_by]
        found: set[Candidate] = set()
        for (schema, table), parts in per_table.items():
            if catalog[(schema, table)]["rows"] < self.params["min_table_rows"]:
                continue
            eq = [(c, False) for c in parts["eq"]]
            rng = [(c, False) for c in parts["range"] if c not in parts["eq"]]
            order = [(c, d) for c, d in parts["order"] if c not in parts["eq"]]
            shapes = [[col] for col in eq + rng]
            if order and shape.has_limit:
                shapes.append(order)
            if len(eq) > 1:
                shapes.append(eq)
            if eq and rng:
                shapes.append(eq + rng[:1])
            if eq and order:
                shapes.append(eq + order)
            predicates = [None, *parts["pred"][:1]]
            for columns in shapes:
                for predicate in predicates:
                    cols = tuple(c for c in columns if predicate is None or c[0] != predicate[0])[:MAX_COLUMNS]
                    if cols and predicate:
                        found.add(Candidate(schema, table, cols, predicate[:2], predicate[2]))
                    elif cols:
                        found.add(Candidate(schema, table, cols))
        return found

    # --- costing ------------------------------------------------------------------------
    def has_hypopg(self) -> bool:
        return bool(self.session.query("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'"))

    def plan(self, query: WorkloadQuery) -> dict | None:
        """The generic plan of a normalized query, or None when it cannot be planned here."""
        try:
            if self.session.server_version >= 160000:
                rows = self.session.query(f"EXPLAIN (FORMAT JSON, GENERIC_PLAN) {query.text}")
            else:
                if self.session.query("SELECT 1 FROM pg_prepared_statements WHERE name = 'pp_advisor'"):
                    self.session.query("DEALLOCATE pp_advisor")
                self.session.query(f"PREPARE pp_advisor AS {query.text}")
                self.session.query("SET plan_cache_mode = force_generic_plan")
                args = ", ".join(["NULL"] * query.shape.params)
                rows = self.session.query(f"EXPLAIN (FORMAT JSON) EXECUTE pp_advisor{f'({args})' if args else ''}")
                self.session.query("DEALLOCATE pp_advisor")
                self.session.query("RESET plan_cache_mode")
        except ActionFailed as exc:
            logger.info("cannot plan query %s: %s", query.queryid, exc)
            return None
        document = rows[0][0]
        return (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]

    @staticmethod
    def _index_names(plan: dict) -> set[str]:
        names = {plan["Index Name"]} if "Index Name" in plan else set()
        for child in plan.get("Plans", ()):
            names |= IndexAdvisor._index_names(child)
        return names

    def _hypothetical_pass(self, queries: list[WorkloadQuery], candidates: set[Candidate]) -> dict:
        """Create candidates as hypothetical indexes; per query key: (cost, candidates its plan uses)."""
        self.session.query("SELECT hypopg_reset()")
        by_name: dict[str, Candidate] = {}
        for candidate in candidates:
            ddl = self.session.render(candidate.ddl(concurrently=False))
            rows = self.session.query(
                "SELECT indexname, hypopg_relation_size(indexrelid) FROM hypopg_create_index(%s)", [ddl]
            )
            by_name[rows[0][0]] = candidate
            self.sizes[candidate] = rows[0][1]
        results = {}
        for query in queries:
            plan = self.plan(query)
            if plan is not None:
                used = {by_name[n] for n in self._index_names(plan) if n in by_name}
                results[query.key] = (plan["Total Cost"], used)
        self.session.query("SELECT hypopg_reset()")
        return results

    def _verify(self, queries: list[WorkloadQuery], candidates: set[Candidate]) -> tuple[dict, list[str]]:
        notes = []
        for query in queries:
            plan = self.plan(query)
            query.base_cost = plan["Total Cost"] if plan else None
        plannable = [q for q in queries if q.base_cost]
        singles = {c for c in candidates if len(c.columns) == 1 and c.predicate is None}
        passes = [self._hypothetical_pass(plannable, singles), self._hypothetical_pass(plannable, candidates)]
        for query in plannable:
            for result in passes:
                cost, used = result.get(query.key, (None, set()))
                if cost is None or not used:
                    continue
                if query.best_cost is None or cost < query.best_cost:
                    query.best_cost, query.winners = cost, used
            saving = self._saving(query)
            if saving < self.params["min_saving_percent"]:
                query.winners = set()
        winners = self._consolidate({c for q in plannable for c in q.winners})
        for query in plannable:
            query.winners = {self._covering(c, winners) for c in query.winners}
        # Final pass: only the advised indexes; nothing may plan worse than today.
        final = self._hypothetical_pass(plannable, winners) if winners else {}
        for query in plannable:
            cost, used = final.get(query.key, (query.base_cost, set()))
            if cost > query.base_cost * 1.001:
                notes.append(f"query {query.queryid} would plan worse ({query.base_cost:.0f} → {cost:.0f})")
                winners -= used
        # The set for the whole workload: an index whose writes cost more than its reads save leaves it.
        winners, self.economics, dropped = index_sets.choose(
            self._hypothetical_pass, plannable, winners, self._write_ms
        )
        for candidate, economics in dropped.items():
            notes.append(
                f"{candidate.describe()} left out of the set: without it the workload loses "
                f"{economics.read_saving_ms:.0f} ms over the window, its writes cost {economics.write_cost_ms:.0f} ms"
            )
        final = self._hypothetical_pass(plannable, winners) if winners else {}
        for query in plannable:
            cost, used = final.get(query.key, (query.base_cost, set()))
            query.best_cost = min(cost, query.base_cost)
            query.winners = used & winners if query.winners else set()
        return {c: [q for q in plannable if c in q.winners] for c in winners}, notes

    def _write_ms(self, candidate: Candidate) -> float:
        """What maintaining the index costs the table's writes over the window (index_sets)."""
        writes = self.writes.get((candidate.schema, candidate.table), 0.0)
        share = 1.0
        if candidate.value is not None:
            share = self.value_shares.get((candidate.schema, candidate.table, candidate.predicate[0], candidate.value))
            share = 1.0 if share is None else share
        return writes * share * self.params["index_write_us_per_row"] / 1000.0

    @staticmethod
    def _saving(query: WorkloadQuery) -> float:
        if not query.base_cost or query.best_cost is None:
            return 0.0
        return 100.0 * (query.base_cost - query.best_cost) / query.base_cost

    @staticmethod
    def _consolidate(candidates: set[Candidate]) -> set[Candidate]:
        """Drop a candidate whose columns lead a longer advised one on the same table and predicate."""
        kept = set(candidates)
        for short in candidates:
            for long in candidates:
                if (
                    short != long
                    and (short.schema, short.table, short.predicate) == (long.schema, long.table, long.predicate)
                    and long.columns[: len(short.columns)] == short.columns
                ):
                    kept.discard(short)
                    break
        return kept

    @staticmethod
    def _covering(candidate: Candidate, kept: set[Candidate]) -> Candidate:
        if candidate in kept:
            return candidate
        for other in kept:
            same_slot = (other.schema, other.table, other.predicate) == (
                candidate.schema,
                candidate.table,
                candidate.predicate,
            )
            if same_slot and other.columns[: len(candidate.columns)] == candidate.columns:
                return other
        return candidate

    def _estimate(self, queries: list[WorkloadQuery], by_query: dict[int, set[Candidate]]) -> dict:
        """No HypoPG: per query and table, the widest candidate whose pg_stats selectivity is small."""
        stats = {
            (s, t, c): (nd, rows)
            for s, t, c, nd, rows in self.session.query(
                "SELECT s.schemaname, s.tablename, s.attname, s.n_distinct, c.reltuples::float8 FROM pg_stats s "
                "JOIN pg_namespace n ON n.nspname = s.schemaname "
                "JOIN pg_class c ON c.relname = s.tablename AND c.relnamespace = n.oid "
                "WHERE s.schemaname <> ALL(%s)",
                [list(SYSTEM_SCHEMAS)],
            )
        }
        advised: dict[Candidate, list[WorkloadQuery]] = {}
        for query in queries:
            best: dict[tuple[str, str], tuple[float, Candidate]] = {}
            eq_columns = {c for _, c in query.shape.equality + query.shape.joins}
            for candidate in by_query.get(query.key, ()):
                selectivity = 1.0
                for column, _ in candidate.columns:
                    n_distinct, rows = stats.get((candidate.schema, candidate.table, column), (None, 0.0))
                    if column in eq_columns and n_distinct:
                        distinct = -n_distinct * rows if n_distinct < 0 else n_distinct
                        selectivity *= 1.0 / max(distinct, 1.0)
                    else:
                        selectivity *= 0.3  # PostgreSQL's default guess for an open range
                if candidate.predicate:
                    selectivity *= 0.5
                key = (candidate.schema, candidate.table)
                rank = (selectivity, -len(candidate.columns))
                if selectivity <= 0.05 and (key not in best or rank < best[key][0]):
                    best[key] = (rank, candidate)
            for _rank, candidate in best.values():
                advised.setdefault(candidate, []).append(query)
        return self._merge_prefixes(advised)

    def _merge_prefixes(self, advised: dict[Candidate, list[WorkloadQuery]]) -> dict:
        kept = self._consolidate(set(advised))
        merged: dict[Candidate, list[WorkloadQuery]] = {c: [] for c in kept}
        for candidate, queries in advised.items():
            merged[self._covering(candidate, kept)].extend(queries)
        return merged

    # --- analysis -----------------------------------------------------------------------
    def analyze(self) -> Analysis:
        analysis = Analysis()
        self.sizes: dict[Candidate, int] = {}
        self.economics: dict[Candidate, index_sets.Economics] = {}
        self.value_shares: dict[tuple, float] = {}
        self.writes = index_sets.table_writes(self.session, window_s=self.params["window_minutes"] * 60)
        catalog = self._columns()
        search_path = self._search_path()
        existing = self.existing_indexes()
        queries = self.workload()
        total = sum(q.total_time_ms for q in queries) or 1.0
        matter = [q for q in queries if 100.0 * q.total_time_ms / total >= self.params["min_share_percent"]]
        verified = self.has_hypopg()
        # Only HypoPG can show what a partial index on a learned constant saves.
        planned = matter + (self._variants(matter, catalog, search_path) if verified else [])
        by_query = {q.key: self._uncovered(self.candidates(q, catalog, search_path), existing) for q in planned}
        all_candidates = set().union(*by_query.values()) if by_query else set()
        if verified and all_candidates:
            advised, notes = self._verify(planned, all_candidates)
            analysis.notes.extend(notes)
        elif all_candidates:
            advised = self._estimate(matter, by_query)
            analysis.notes.append("HypoPG is not installed in this database: index advice is unverified")
        else:
            advised = {}
        set_bytes = sum(self.sizes.get(c, 0) for c in advised)
        for candidate, served in advised.items():
            analysis.findings.append(self._missing_finding(candidate, served, total, verified, set_bytes))
        drops = self._invalid(existing) + self._duplicates(existing) + self._unused(existing)
        analysis.findings.extend(merge_drops(drops))
        analysis.findings.extend(self._foreign_keys(existing, set(advised)))
        if advised and verified:
            analysis.notes.append(f"advised set: {len(advised)} index(es), {human_size(set_bytes)} in all")
        analysis.evidence = {
            "queries": len(queries),
            "queries_that_matter": len(matter),
            "learned_variants": len(planned) - len(matter),
            "candidates": len(all_candidates),
            "advised": len(advised),
            "advised_set_bytes": set_bytes,
            "left_out_for_writes": sum(1 for note in analysis.notes if "left out of the set" in note),
            "hypopg": int(verified),
            # Queries the final HypoPG pass costs higher with the advised indexes (their indexes are dropped).
            "plans_worse": sum(1 for note in analysis.notes if "would plan worse" in note),
            "workload_time_ms": round(total, 1),
        }
        return analysis

    def _variants(self, queries: list[WorkloadQuery], catalog: dict, search_path: list[str]) -> list[WorkloadQuery]:
        """The queries again with each constant learned for their parameters written in (index_values)."""
        owners: dict[int, dict[tuple, tuple[str, str]]] = {}
        for query in queries:
            resolved = self._resolve(query.shape, catalog, search_path)
            for qualifier, column, _ in query.shape.parameters:
                table = self._owner(qualifier, column, resolved, catalog)
                if table and catalog[table]["rows"] >= self.params["min_table_rows"]:
                    owners.setdefault(query.queryid, {})[(qualifier, column)] = table
        columns = {(*table, column) for per in owners.values() for (_, column), table in per.items()}
        rare = index_values.rare_values(self.session, columns, rare_fraction=self.params["rare_value_fraction"])
        samples = index_values.activity_samples(self.session, samples=self.params["activity_samples"], interval_s=0.1)
        learned_values = index_values.learn(queries, owners, samples, rare)
        variants = []
        for query in queries:
            for learned in learned_values.get(query.queryid, ()):
                try:
                    variants.append(index_values.specialize(query, learned))
                except Unparseable:
                    continue
                if learned.frequency is not None:
                    self.value_shares[(*learned.table, learned.column, learned.value)] = learned.frequency
        return variants

    def _uncovered(self, candidates: set[Candidate], existing: list[ExistingIndex]) -> set[Candidate]:
        def covered(c: Candidate) -> bool:
            names = tuple(col for col, _ in c.columns)
            return any(
                e.valid
                and e.method == "btree"
                and not e.has_predicate
                and (e.schema, e.table) == (c.schema, c.table)
                and e.columns[: len(names)] == names
                and not any(d for _, d in c.columns[1:])
                for e in existing
            )

        return {c for c in candidates if not covered(c)}

    def _missing_finding(
        self, candidate: Candidate, served: list[WorkloadQuery], total: float, verified: bool, set_bytes: int = 0
    ) -> Finding:
        share = 100.0 * sum(q.total_time_ms for q in {q.queryid: q for q in served}.values()) / total
        size = self.sizes.get(candidate)
        economics = self.economics.get(candidate)
        if verified:
            savings = [self._saving(q) for q in served]
            impact = f"plan cost -{max(savings, default=0):.0f} % on {len(served)} query(ies), {share:.0f} % of load"
            if size is not None:
                impact += f", ~{human_size(size)}"
            how = "verified with HypoPG on generic plans"
        else:
            impact = f"unverified: {len(served)} query(ies), {share:.0f} % of load"
            how = "unverified: estimated from pg_stats selectivity (install HypoPG to verify)"
        learned = sorted({f"{q.variant} (learned from {q.learned.source})" for q in served if q.learned})
        if learned:
            how += "; with the constant " + ", ".join(learned)
        explanation = (
            f"{len(served)} frequent query(ies) filter, join or sort on these columns without a matching index "
            f"({how}). Built CONCURRENTLY, so writes continue while it builds."
        )
        if size is not None and verified:
            explanation += f" Estimated size {human_size(size)}; the advised set is {human_size(set_bytes)} in all."
        if economics is not None and economics.write_cost_ms > 0:
            explanation += (
                f" Over the window its reads save ~{economics.read_saving_ms:.0f} ms and its writes cost "
                f"~{economics.write_cost_ms:.0f} ms."
            )
        statement = self.session.render(candidate.ddl(concurrently=True))
        evidence: dict[str, Any] = {
            "index_name": candidate.name(),
            "schema": candidate.schema,
            "table": candidate.table,
            "columns": [c for c, _ in candidate.columns],
            "queries": [
                {
                    "queryid": q.queryid,
                    "query": q.text[:500],
                    "mean_time_ms": round(q.mean_time_ms, 3),
                    "total_time_ms": round(q.total_time_ms, 1),
                    "calls": q.calls,
                    "cost_before": q.base_cost,
                    "cost_after": q.best_cost,
                    **({"constant": q.variant, "constant_source": q.learned.source} if q.learned else {}),
                }
                for q in served
            ],
        }
        if candidate.value is not None:
            evidence["predicate"] = f"{candidate.predicate[0]} = {index_values.quote(candidate.value)}"
        if size is not None:
            evidence.update(size_bytes=size, size=human_size(size), set_bytes=set_bytes, set_size=human_size(set_bytes))
        if economics is not None:
            evidence.update(read_saving_ms=economics.read_saving_ms, write_cost_ms=economics.write_cost_ms)
        return Finding(
            key=f"missing:{candidate.describe()}",
            category="missing_index",
            title=f"Create index on {candidate.describe()}",
            explanation=explanation,
            statements=[statement],
            estimated_impact=impact,
            effort="medium",
            priority=min(95, 50 + round(share / 2)),
            verified=verified,
            evidence=evidence,
        )

    def _drop(self, index: ExistingIndex) -> str:
        return self.session.render(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                sql.Identifier(index.schema), sql.Identifier(index.name)
            )
        )

    def _drop_finding(
        self, index: ExistingIndex, *, category: str, title: str, explanation: str, priority: int, **evidence
    ) -> Finding:
        return Finding(
            key=f"{category}:{index.schema}.{index.name}",
            category=category,
            title=title,
            explanation=explanation,
            statements=[self._drop(index)],
            estimated_impact=f"frees {human_size(index.bytes)}, faster writes",
            effort="low",
            priority=priority,
            evidence={"bytes": index.bytes, "definition": index.definition, **evidence},
        )

    def _unused(self, existing: list[ExistingIndex]) -> list[Finding]:
        window_s = self.params["unused_window_days"] * 86400
        # Scans count only since the statistics were reset (or the server started): a younger history
        # cannot prove an index unused over the window.
        reset = self.session.query(
            "SELECT extract(epoch FROM now() - greatest(stats_reset, pg_postmaster_start_time())) "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        observed_s = float(reset[0][0]) if reset and reset[0][0] is not None else 0.0
        fk_columns = {(schema, table, columns) for schema, table, _, columns, _ in self._foreign_key_rows()}
        findings = []
        for index in existing:
            if index.unique or index.primary or not index.valid or index.partitioned:
                continue
            if index.last_scan_age_s is not None:  # PostgreSQL 16+: when it was last scanned
                unused = index.last_scan_age_s >= window_s
            else:
                unused = index.scans == 0 and observed_s >= window_s
            if not unused or self._sole_fk_cover(index, existing, fk_columns):
                continue
            findings.append(
                self._drop_finding(
                    index,
                    category="unused_index",
                    title=f"Drop unused index {index.schema}.{index.name}",
                    explanation=(
                        f"No scans over {self.params['unused_window_days']:g} days; it still costs "
                        f"{human_size(index.bytes)} and slows every write to {index.table}. "
                        f"Definition: {index.definition}"
                    ),
                    priority=40,
                    scans=index.scans,
                )
            )
        return findings

    @staticmethod
    def _sole_fk_cover(index: ExistingIndex, existing: list[ExistingIndex], fk_columns: set) -> bool:
        """The only index serving a foreign key's lookups (deletes on the referenced table need it)."""
        for schema, table, columns in fk_columns:
            if (schema, table) != (index.schema, index.table) or index.columns[: len(columns)] != columns:
                continue
            others = [
                e
                for e in existing
                if e.oid != index.oid
                and e.valid
                and (e.schema, e.table) == (schema, table)
                and e.columns[: len(columns)] == columns
            ]
            if not others:
                return True
        return False

    def _duplicates(self, existing: list[ExistingIndex]) -> list[Finding]:
        findings = []
        for short in existing:
            if short.unique or short.primary or short.has_predicate or short.partitioned or None in short.columns:
                continue
            for long in existing:
                if (
                    long.oid != short.oid
                    and long.valid
                    and (long.schema, long.table, long.method) == (short.schema, short.table, short.method)
                    and not long.has_predicate
                    and short.leads(long)
                    and (len(long.columns) > len(short.columns) or long.oid < short.oid or long.unique)
                ):
                    findings.append(
                        self._drop_finding(
                            short,
                            category="duplicate_index",
                            title=f"Drop {short.schema}.{short.name}, covered by {long.name}",
                            explanation=(
                                f"{long.name} ({', '.join(map(str, long.columns))}) starts with all the columns of "
                                f"{short.name} ({', '.join(map(str, short.columns))}), so it serves the same scans."
                            ),
                            priority=45,
                            covered_by=long.name,
                        )
                    )
                    break
        return findings

    def _invalid(self, existing: list[ExistingIndex]) -> list[Finding]:
        return [
            self._drop_finding(
                index,
                category="invalid_index",
                title=f"Drop invalid index {index.schema}.{index.name}",
                explanation=(
                    "A failed CREATE INDEX CONCURRENTLY left it invalid: it is maintained on writes but never used. "
                    f"Drop it (and re-create it if still wanted): {index.definition}"
                ),
                priority=70,
            )
            for index in existing
            if not index.valid
        ]

    def _foreign_key_rows(self) -> list[tuple]:
        rows = self.session.query(
            "SELECT n.nspname, c.relname, con.conname, "
            "ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) "
            "      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord), "
            "c.reltuples::float8 "
            "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE con.contype = 'f' AND n.nspname <> ALL(%s)",
            [list(SYSTEM_SCHEMAS)],
        )
        return [(schema, table, constraint, tuple(columns), rows) for schema, table, constraint, columns, rows in rows]

    def _foreign_keys(self, existing: list[ExistingIndex], advised: set[Candidate] = frozenset()) -> list[Finding]:
        findings = []
        for schema, table, constraint, columns, reltuples in self._foreign_key_rows():
            if any(
                e.valid and (e.schema, e.table) == (schema, table) and e.columns[: len(columns)] == columns
                for e in existing
            ):
                continue
            if any(  # an index advised in this run leads with the key's columns: it serves the key too
                a.predicate is None
                and (a.schema, a.table) == (schema, table)
                and tuple(c for c, _ in a.columns[: len(columns)]) == columns
                for a in advised
            ):
                continue
            candidate = Candidate(schema, table, tuple((c, False) for c in columns[:MAX_COLUMNS]))
            findings.append(
                Finding(
                    key=f"fk:{schema}.{table}.{constraint}",
                    category="fk_index",
                    title=f"Index foreign key {constraint} on {schema}.{table} ({', '.join(columns)})",
                    explanation=(
                        "Deleting or updating a referenced row scans this table for the key; joins on it scan too."
                    ),
                    statements=[self.session.render(candidate.ddl(concurrently=True))],
                    estimated_impact="faster deletes on the referenced table and joins",
                    effort="medium",
                    priority=55 if reltuples >= self.params["min_table_rows"] else 35,
                    evidence={"index_name": candidate.name(), "schema": schema, "table": table, "rows": reltuples},
                )
            )
        return findings

    # --- applying -----------------------------------------------------------------------
    def apply(self, recommendation) -> None:
        try:
            super().apply(recommendation)
        except ActionFailed:
            name = recommendation.evidence.get("index_name")
            if recommendation.category in ("missing_index", "fk_index") and name and not self.session.dry_run:
                # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind: remove it.
                drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                    sql.Identifier(recommendation.evidence["schema"]), sql.Identifier(name)
                )
                try:
                    self.session.execute_action(self.session.render(drop))
                except ActionFailed:
                    logger.warning("could not drop the invalid index %s left by a failed build", name)
            raise

    def evidence_for(self, recommendation) -> dict[str, Any]:
        evidence: dict[str, Any] = {}
        name = recommendation.evidence.get("index_name") or recommendation.evidence.get("definition")
        schema = recommendation.evidence.get("schema")
        if recommendation.category in ("missing_index", "fk_index") and name and schema:
            rows = self.session.query(
                "SELECT pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                [schema, name],
            )
            evidence["index_bytes"] = rows[0][0] if rows else 0
        else:
            evidence["index_bytes"] = recommendation.evidence.get("bytes", 0)
        queryids = [q["queryid"] for q in recommendation.evidence.get("queries", [])]
        if queryids:
            evidence["queries_mean_ms"] = query_means(
                target_id=recommendation.target_id, queryids=queryids, since=timezone.now() - timedelta(hours=1)
            )
        return evidence


def merge_drops(findings: list[Finding]) -> list[Finding]:
    """One finding per index: the reasons to drop the same index (invalid, duplicate, unused) in one."""
    merged: dict[str, Finding] = {}
    for finding in findings:
        first = merged.setdefault(finding.statements[0], finding)
        if first is not finding:
            first.explanation += f" It is also {finding.category.removesuffix('_index')}: {finding.explanation}"
            first.evidence.setdefault("also", []).append(finding.category)
            first.priority = max(first.priority, finding.priority)
    return list(merged.values())


def query_means(*, target_id: int, queryids: list[int], since, until=None) -> dict[str, float]:
    """Mean time per query (ms) from monitoring's snapshots collected in [since, until]."""
    rows = QueryStat.objects.filter(target_id=target_id, queryid__in=queryids, collected_at__gte=since)
    if until is not None:
        rows = rows.filter(collected_at__lte=until)
    totals: dict[int, list[float]] = {}
    for stat in rows.only("queryid", "calls", "total_time_ms"):
        entry = totals.setdefault(stat.queryid, [0.0, 0.0])
        entry[0] += stat.total_time_ms
        entry[1] += stat.calls
    return {str(qid): round(t / c, 4) for qid, (t, c) in totals.items() if c}
