"""Constants that normalization hid: the values a query's parameters take on the target.

pg_stat_statements keeps `status = $2`, and on the generic plan a partial index `WHERE status = 'lost'`
cannot show what it saves. The index advisor learns, per `column = $n` of a workload query:

- from pg_stat_activity samples: the constants of the same statement (same pglast fingerprint) that
  sessions are running or ran last, the most frequent first;
- else from pg_stats: the rare most-common values of a low-cardinality column (a queue's `'lost'`,
  `'failed'`), the values a selective query on such a column asks for.

Each learned value gives a variant of the query with the constant written in (`specialize`), which
the advisor plans with HypoPG like any query: a partial index on the value is advised only when the
planner uses it there and it saves enough.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pglast.parser import fingerprint

from optimizer.services.sessions import ActionFailed
from optimizer.tuners.querytree import Unparseable, query_shape

if TYPE_CHECKING:
    from optimizer.services.sessions import Session
    from optimizer.tuners.indexes import WorkloadQuery

MAX_VALUES = 2  # learned values tried per parameter
MAX_DISTINCT = 100  # a column with more distinct values is not a "status" column


@dataclass(frozen=True)
class LearnedValue:
    table: tuple[str, str]
    column: str
    number: int  # the $n it replaces
    value: str
    source: str  # "pg_stat_activity" or "pg_stats"
    frequency: float | None = None  # share of the table's rows (pg_stats), when known

    def describe(self) -> str:
        return f"{self.column} = {quote(self.value)}"


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _fingerprint(text: str) -> str | None:
    try:
        return fingerprint(text)
    except Exception:  # pglast raises its own ParseError
        return None


def activity_samples(session: Session, *, samples: int, interval_s: float) -> list[str]:
    """Statement texts of the other client sessions of this database, read `samples` times."""
    texts: list[str] = []
    for number in range(samples):
        rows = session.query(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND query <> ''"
        )
        texts.extend(row[0] for row in rows)
        if number + 1 < samples:
            time.sleep(interval_s)
    return texts


def sampled_values(texts: list[str], queries: list[WorkloadQuery]) -> dict[int, dict[tuple, Counter]]:
    """queryid -> (qualifier, column) -> how often each constant was seen in the samples."""
    by_fingerprint = {_fingerprint(q.text): q for q in queries}
    found: dict[int, dict[tuple, Counter]] = {}
    for text in texts:
        query = by_fingerprint.get(_fingerprint(text))
        if query is None:
            continue
        try:
            shape = query_shape(text)
        except Unparseable:
            continue
        for qualifier, column, value in shape.literals:
            found.setdefault(query.queryid, {}).setdefault((qualifier, column), Counter())[value] += 1
    return found


def rare_values(session: Session, columns: set[tuple[str, str, str]], *, rare_fraction: float) -> dict:
    """(schema, table, column) -> [(value, frequency)], rarest first: pg_stats' most-common values under
    `rare_fraction` of the rows, on columns with few distinct values."""
    if not columns:
        return {}
    schemas, tables, names = (list(part) for part in zip(*sorted(columns), strict=True))
    try:
        rows = session.query(
            "SELECT schemaname, tablename, attname, most_common_vals::text::text[], most_common_freqs "
            "FROM pg_stats WHERE most_common_vals IS NOT NULL AND n_distinct > 0 AND n_distinct <= %s "
            "AND (schemaname::text, tablename::text, attname::text) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
            [MAX_DISTINCT, schemas, tables, names],
        )
    except ActionFailed:  # a type whose values do not read back as text[]: nothing learned
        return {}
    found = {}
    for schema, table, column, values, freqs in rows:
        rare = sorted((f, v) for v, f in zip(values, freqs, strict=False) if v is not None and f <= rare_fraction)
        if rare:
            found[(schema, table, column)] = [(v, f) for f, v in rare[:MAX_VALUES]]
    return found


def learn(
    queries: list[WorkloadQuery], owners: dict[int, dict[tuple, tuple[str, str]]], samples: list[str], rare: dict
) -> dict[int, list[LearnedValue]]:
    """queryid -> the values learned for its `column = $n` parameters (samples first, else pg_stats)."""
    sampled = sampled_values(samples, queries)
    learned: dict[int, list[LearnedValue]] = {}
    for query in queries:
        for qualifier, column, number in query.shape.parameters:
            table = owners.get(query.queryid, {}).get((qualifier, column))
            if table is None:
                continue
            seen = sampled.get(query.queryid, {}).get((qualifier, column))
            if seen:
                values = [LearnedValue(table, column, number, v, "pg_stat_activity") for v, _ in seen.most_common()]
            else:
                values = [
                    LearnedValue(table, column, number, v, "pg_stats", f) for v, f in rare.get((*table, column), ())
                ]
            learned.setdefault(query.queryid, []).extend(values[:MAX_VALUES])
    return learned


def specialize(query: WorkloadQuery, learned: LearnedValue) -> WorkloadQuery:
    """The query with the learned constant in place of its parameter (later parameters renumbered)."""

    def replace(match: re.Match) -> str:
        number = int(match.group(1))
        if number == learned.number:
            return quote(learned.value)
        return f"${number - 1}" if number > learned.number else match.group(0)

    text = re.sub(r"\$(\d+)", replace, query.text)
    return dataclasses.replace(
        query, text=text, shape=query_shape(text), variant=learned.describe(), learned=learned, winners=set()
    )
