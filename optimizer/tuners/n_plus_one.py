"""N+1 queries: a lookup by key run once per row another query returned, found in the statement windows.

Input: monitoring's pg_stat_statements deltas of the last `windows` collections (one window each,
monitoring.selectors.statements.statement_windows), not the target's lifetime totals.

- A child is a lookup by key: a SELECT on one table with an equality on a parameter
  (`WHERE order_id = $1`), called in at least `min_windows` windows, on average at least
  `min_child_calls` times in each. Windows without the child (before a deployment added it, say) are
  left out of what follows.
- A parent is another query of the same windows whose rows per window follow the child's calls per
  window: Pearson r >= `min_correlation` over the windows, and a child-calls-to-parent-rows ratio k
  that stays about constant (its spread over the windows at most `max_ratio_spread`) and is at least
  `min_ratio` (a child run once for every hundred rows is not an N+1). A constant series has no
  correlation, so steady traffic proves nothing and is not reported.
- Among the parents found, one that reads the table the key relates to through a foreign key in the
  catalog (the key references it, or it references the key) is preferred, then the highest r.

The advice names both queries, k, r and the round trips one batched query (`= ANY($1)`) or a JOIN
per parent execution would save, per window and per day. It needs a change in the application's
code, so it has no statement and no Apply.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from monitoring.selectors.statements import StatementWindows, statement_windows
from optimizer.tuners.base import Analysis, Finding, Tuner, TunerSchedule, register
from optimizer.tuners.querytree import Unparseable, query_shape

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_RETURNING = re.compile(r"\breturning\b")
# PostgreSQL's own foreign-key check (ri_triggers.c), run per row a write inserts or updates: it looks like
# a lookup by key but costs the application no round trip. pg_stat_statements shows it with track = all.
_FOREIGN_KEY_CHECK = re.compile(
    r"\bFROM\s+ONLY\b.*\bOPERATOR\(pg_catalog\.=\).*\bFOR\s+(?:KEY\s+)?SHARE\s+OF\b", re.IGNORECASE | re.DOTALL
)
_BATCHED = re.compile(r"=\s*ANY\s*\(|\bIN\s*\(", re.IGNORECASE)

# The tables a single-column foreign key joins to a column, whichever side the column is on.
_RELATED_SQL = """
SELECT n.nspname::text, c.relname::text
FROM pg_constraint k
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND cardinality(k.conkey) = 1 AND k.conrelid = to_regclass(%(table)s) AND a.attname = %(column)s
UNION
SELECT n.nspname::text, c.relname::text
FROM pg_constraint k
JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = k.confkey[1]
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND cardinality(k.conkey) = 1 AND k.confrelid = to_regclass(%(table)s) AND a.attname = %(column)s
"""

# schema and name of a table as the target's search_path resolves it; nothing when it is not there.
_RESOLVE_SQL = """
SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""


@dataclass(frozen=True)
class Child:
    queryid: int
    query: str
    table: str  # as written in the query
    column: str


@dataclass(frozen=True)
class Match:
    parent: int
    r: float
    k: float
    spread: float
    related: bool


def _quoted(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def batched_rewrite(query: str, column: str) -> str:
    """The child query with its key equality on a parameter turned into `= ANY(...)`; "" if not found."""
    pattern = rf'(?<![\w".])((?:[\w"]+\.)?(?:{re.escape(column)}|"{re.escape(column)}")\s*=\s*)\$(\d+)'
    rewritten, count = re.subn(pattern, r"\1ANY($\2)", query, count=1, flags=re.IGNORECASE)
    return rewritten if count else ""


def returns_rows(query: str) -> bool:
    """Whether the statement's rows reach the client. pg_stat_statements counts the rows an UPDATE or
    DELETE touched too, but the application can only loop over rows it was sent: a SELECT, or a write
    with RETURNING."""
    head = query.lstrip().lower()
    return head.startswith(("select", "with", "values", "table")) or _RETURNING.search(head) is not None


def _correlation(xs: list[int], ys: list[int]) -> float | None:
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:  # fewer than two points, or a constant series
        return None


@register
class NPlusOneTuner(Tuner):
    kind = "n_plus_one"
    label = "N+1 queries"
    description = "Finds a lookup by key run once per row of another query; advises one batched query or a JOIN."
    # Hourly at :40: N+1 patterns come and go with deployments, and the check reads only monitoring's
    # snapshots plus one catalog query per finding, so it is cheap; an hour also leaves new windows to judge.
    schedule = TunerSchedule(
        name="Optimizer: N+1 queries",
        crontab="40 * * * *",
        description="Finds lookups by key run once per row of another query (N+1); advises a batched query.",
    )
    defaults = {
        "windows": 12,  # the last collections compared
        "lookback_hours": 6,  # windows older than this are not used
        "min_windows": 4,  # windows the child must be called in
        "min_correlation": 0.9,  # Pearson r of child calls against parent rows per window
        "min_child_calls": 10.0,  # mean calls a window, over the windows it ran in
        "min_ratio": 0.5,  # child calls per parent row
        "max_ratio_spread": 0.25,  # standard deviation of the per-window ratio over its mean
        "max_children": 50,
    }

    def analyze(self) -> Analysis:
        data = statement_windows(
            target_id=self.session.target.id,
            windows=self.params["windows"],
            since=timezone.now() - timedelta(hours=self.params["lookback_hours"]),
        )
        analysis = Analysis()
        analysis.evidence = {"windows": len(data.windows), "children_checked": 0, "n_plus_one": 0}
        if len(data.windows) < self.params["min_windows"]:
            analysis.notes.append(
                f"Only {len(data.windows)} windows of statement snapshots; N+1 detection needs "
                f"{self.params['min_windows']}."
            )
            return analysis
        database = self.session.query("SELECT current_database()")[0][0]
        children = self._children(data, database)
        # Parents return rows in enough windows; read once, compared with every child.
        parents = [
            queryid
            for queryid, rows in data.rows.items()
            if sum(1 for n in rows if n) >= self.params["min_windows"]
            and returns_rows(self._of_database(data, queryid, database))
        ]
        analysis.evidence["children_checked"] = len(children)
        for child in children:
            match = self._best_parent(child, data, parents)
            if match is not None:
                analysis.findings.append(self._finding(child, match, data))
        analysis.evidence["n_plus_one"] = len(analysis.findings)
        return analysis

    # --- candidates ---------------------------------------------------------------------------
    def _of_database(self, data: StatementWindows, queryid: int, database: str) -> str:
        text = data.texts.get(queryid)
        if text is None or not text.query or (text.database and text.database != database):
            return ""
        return text.query

    def _children(self, data: StatementWindows, database: str) -> list[Child]:
        found = []
        for queryid, calls in data.calls.items():
            ran = sum(1 for c in calls if c)
            if ran < self.params["min_windows"] or sum(calls) / ran < self.params["min_child_calls"]:
                continue
            query = self._of_database(data, queryid, database)
            if not query or not query.lstrip().lower().startswith("select") or _BATCHED.search(query):
                continue  # not a read, or already batched (= ANY / IN)
            if _FOREIGN_KEY_CHECK.search(query):
                continue  # the server's own check of a foreign key, not a query the application sends
            try:
                shape = query_shape(query)
            except Unparseable:
                continue
            if len(shape.tables) != 1 or shape.joins or len({c for _, c in shape.equality}) != 1:
                continue
            table = next(iter(shape.tables.values()))
            if table.schema in SYSTEM_SCHEMAS or table.name.startswith("pg_"):
                continue
            name = f"{_quoted(table.schema)}.{_quoted(table.name)}" if table.schema else _quoted(table.name)
            found.append(Child(queryid=queryid, query=query, table=name, column=shape.equality[0][1]))
        found.sort(key=lambda c: -sum(data.calls[c.queryid]))
        return found[: self.params["max_children"]]

    def _match(self, calls: list[int], rows: list[int]) -> tuple[float, float, float] | None:
        """(r, k, spread) when the child's calls follow these rows over the windows it ran in, else None."""
        # A window without the child (before a deployment added it, say) says nothing about the pattern.
        pairs = [(c, n) for c, n in zip(calls, rows, strict=True) if c]
        calls, rows = [c for c, _ in pairs], [n for _, n in pairs]
        r = _correlation(calls, rows)
        if r is None or r < self.params["min_correlation"]:
            return None
        ratios = [c / n for c, n in zip(calls, rows, strict=True) if n]
        if len(ratios) < self.params["min_windows"]:
            return None
        k = sum(calls) / sum(rows)  # sum(rows) > 0: there are ratios
        spread = statistics.pstdev(ratios) / statistics.fmean(ratios)
        if k < self.params["min_ratio"] or spread > self.params["max_ratio_spread"]:
            return None
        return r, k, spread

    def _best_parent(self, child: Child, data: StatementWindows, parents: list[int]) -> Match | None:
        calls = data.calls[child.queryid]
        matches = []
        for queryid in parents:
            if queryid == child.queryid or sum(data.calls[queryid]) >= sum(calls):
                continue  # a parent run as often as the child saves no round trip
            found = self._match(calls, data.rows[queryid])
            if found is not None:
                matches.append((queryid, *found))
        if not matches:
            return None
        related = self._related_tables(child)
        best = max(
            (
                Match(parent=q, r=r, k=k, spread=spread, related=bool(related & self._tables(data.texts[q].query)))
                for q, r, k, spread in matches
            ),
            key=lambda m: (m.related, round(m.r, 3), -m.spread),
        )
        return best

    def _related_tables(self, child: Child) -> set[tuple[str, str]]:
        rows = self.session.query(_RELATED_SQL, {"table": child.table, "column": child.column})
        return {(schema, name) for schema, name in rows}

    def _tables(self, query: str) -> set[tuple[str, str]]:
        try:
            shape = query_shape(query)
        except Unparseable:
            return set()
        resolved = set()
        for ref in shape.tables.values():
            name = f"{_quoted(ref.schema)}.{_quoted(ref.name)}" if ref.schema else _quoted(ref.name)
            resolved.update((schema, table) for schema, table in self.session.query(_RESOLVE_SQL, [name]))
        return resolved

    # --- advice -------------------------------------------------------------------------------
    def _finding(self, child: Child, match: Match, data: StatementWindows) -> Finding:
        windows = len(data.windows)
        child_calls = sum(data.calls[child.queryid])
        parent_calls = sum(data.calls[match.parent])
        parent_query = data.texts[match.parent].query
        # One batched query (or a JOIN) per parent execution replaces the child's calls.
        saved_per_window = (child_calls - parent_calls) / windows
        per_day = saved_per_window * 86400 / data.interval_seconds if data.interval_seconds else 0.0
        rewrite = batched_rewrite(child.query, child.column)
        parent_tables = sorted(f"{s}.{t}" for s, t in self._tables(parent_query))
        parent_name = f"a query on {', '.join(parent_tables)}" if parent_tables else f"query {match.parent}"
        explanation = (
            f"Over the last {windows} windows (about {data.interval_seconds:.0f} s each) the lookup "
            f"“{child.query}” ran {match.k:.2f} times per row returned by “{parent_query}”: its calls "
            f"follow that query's rows window by window (Pearson r = {match.r:.3f}, ratio spread "
            f"{100 * match.spread:.0f} %). That is an N+1: one query for the parents, then one round trip per "
            f"row. Fetch the rows of {child.table} for all of a parent's keys at once, with "
            f"“{rewrite or f'{child.column} = ANY($1)'}” and the keys as an array, or JOIN {child.table} on "
            f"{child.column} into the parent query. This needs a change in the application's code; "
            "Perfpilot has nothing to apply."
        )
        if match.related:
            explanation += f" The catalog's foreign key on {child.table}.{child.column} joins the two tables."
        return Finding(
            key=f"n_plus_one:{child.queryid}",
            category="n_plus_one",
            title=f"N+1: a lookup of {child.table} by {child.column} runs per row of {parent_name}"[:300],
            explanation=explanation,
            statements=[],
            estimated_impact=f"{per_day:,.0f} round trips a day saved ({saved_per_window:,.0f} a window)",
            effort="medium",
            priority=min(90, 40 + round(8 * math.log10(max(per_day, 1.0)))),
            verified=False,
            evidence={
                "child": {"queryid": child.queryid, "query": child.query, "table": child.table, "column": child.column},
                "parent": {"queryid": match.parent, "query": parent_query, "tables": parent_tables},
                "k": round(match.k, 3),
                "r": round(match.r, 4),
                "ratio_spread": round(match.spread, 4),
                "windows": windows,
                "window_seconds": round(data.interval_seconds, 1),
                "child_calls": data.calls[child.queryid],
                "parent_rows": data.rows[match.parent],
                "round_trips_per_window": round(saved_per_window, 1),
                "round_trips_per_day": round(per_day),
                "foreign_key": match.related,
                "rewrite": rewrite,
                "needs_application_change": True,
            },
        )
