"""Sequences and integer keys near their maximum (PgHero's check: more than 90 % used).

A sequence runs out at the lower of its own maximum and the maximum of the columns it feeds, so an
integer key fails at 2^31 - 1 whatever its sequence's type. The rows come from the same query as
the PostgreSQL collector's `postgres_sequence_used_percent` series, which alert rules watch.

The fix widens what limits the sequence to bigint:
- the sequence alone (an integer sequence behind bigint columns): `ALTER SEQUENCE ... AS bigint`
  changes the catalog only, so it is a recommendation Apply runs (and a dry run records);
- the columns (and the foreign keys referencing them): `ALTER TABLE ... ALTER COLUMN ... TYPE bigint`
  rewrites the table and its indexes under an ACCESS EXCLUSIVE lock, blocking every read and write
  for as long as that takes. That is for the operator to schedule, so the recommendation shows the
  statements and has no Apply.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from monitoring.collectors.postgres import SEQUENCES_SQL
from optimizer.tuners.base import Analysis, Finding, Tuner, TunerSchedule, register

BIGINT = "bigint"
BIGINT_MAX = 2**63 - 1

# Columns of foreign keys referencing a column: widening a key means widening them too.
_REFERENCING_SQL = """
SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, NULL)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(k.conkey, k.confkey) AS cols(attnum, refnum) ON true
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = cols.attnum
JOIN pg_attribute r ON r.attrelid = k.confrelid AND r.attnum = cols.refnum
WHERE k.contype = 'f' AND k.confrelid = to_regclass(%s) AND r.attname = %s
ORDER BY 1, 2, 3
"""


@register
class SequencesTuner(Tuner):
    kind = "sequences"
    label = "Sequences and integer keys"
    description = "Finds sequences and integer keys near their maximum; drafts the move to bigint."
    # Daily at 03:15: a sequence takes weeks to go from 90 % to its end, and the check reads catalogs only.
    schedule = TunerSchedule(
        name="Optimizer: sequences near their end",
        crontab="15 3 * * *",
        description="Finds sequences and integer keys more than 90 % used; drafts the move to bigint.",
    )
    defaults = {
        "threshold_percent": 90.0,  # PgHero's
        "max_sequences": 50,
    }

    def analyze(self) -> Analysis:
        rows = self.session.query_dicts(SEQUENCES_SQL, [self.params["max_sequences"]])
        analysis = Analysis()
        for row in rows:
            if row["used_percent"] >= self.params["threshold_percent"]:
                analysis.findings.append(self._finding(row))
        analysis.evidence = {
            "sequences_checked": len(rows),
            "near_end": len(analysis.findings),
            "most_used_percent": round(rows[0]["used_percent"], 2) if rows else 0.0,
        }
        return analysis

    def _referencing(self, column: dict[str, Any]) -> list[dict[str, Any]]:
        table = self.session.render(sql.Identifier(column["schema"], column["table"]))
        rows = self.session.query(_REFERENCING_SQL, [table, column["column"]])
        return [{"schema": s, "table": t, "column": c, "type": type_} for s, t, c, type_ in rows]

    def _alter_column(self, column: dict[str, Any]) -> str:
        return self.session.render(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE bigint").format(
                sql.Identifier(column["schema"], column["table"]), sql.Identifier(column["column"])
            )
        )

    def _finding(self, row: dict[str, Any]) -> Finding:
        name = f"{row['schema']}.{row['name']}"
        sequence = sql.Identifier(row["schema"], row["name"])
        narrow = [c for c in row["columns"] if c["type"] != BIGINT]
        rewrites: list[str] = []
        for column in narrow:
            rewrites.append(self._alter_column(column))
            rewrites.extend(self._alter_column(ref) for ref in self._referencing(column) if ref["type"] != BIGINT)
        sequence_statements = []
        if row["sequence_type"] != BIGINT:
            # A maximum left at the integer default becomes bigint's; a lower one set by hand stays.
            sequence_statements.append(self.session.render(sql.SQL("ALTER SEQUENCE {} AS bigint").format(sequence)))
        elif row["sequence_max"] < BIGINT_MAX and row["limit_value"] == row["sequence_max"]:
            sequence_statements.append(self.session.render(sql.SQL("ALTER SEQUENCE {} NO MAXVALUE").format(sequence)))
        used = row["used_percent"]
        left = row["limit_value"] - row["last_value"]
        what = ", ".join(f"{c['schema']}.{c['table']}.{c['column']} ({c['type']})" for c in row["columns"])
        explanation = (
            f"Sequence {name} ({row['sequence_type']}) is at {row['last_value']:,} of {row['limit_value']:,} "
            f"({used:.1f} % used, {left:,} values left)"
            + (f"; it feeds {what}." if what else ".")
            + " When it runs out, every insert taking its next value fails."
        )
        if rewrites:
            explanation += (
                " ALTER COLUMN ... TYPE bigint rewrites each table and its indexes under an ACCESS EXCLUSIVE lock "
                "(no reads or writes until it ends): run the statements in a maintenance window, or move to a new "
                "bigint column in steps. Perfpilot does not run them for you."
            )
        statements = [] if rewrites else sequence_statements
        return Finding(
            key=f"sequence:{name}",
            category="sequence",
            title=f"Sequence {name} is {used:.0f} % used: move it to bigint",
            explanation=explanation,
            statements=statements,
            estimated_impact=f"{left:,} inserts until inserts fail",
            effort="high" if rewrites else "low",
            priority=min(100, round(used)),
            verified=True,  # read from the catalog, not estimated
            evidence={
                "sequence": name,
                "last_value": row["last_value"],
                "limit": row["limit_value"],
                "used_percent": round(used, 2),
                "columns": row["columns"],
                "manual_statements": [*rewrites, *sequence_statements] if rewrites else [],
            },
        )
