"""VACUUM/ANALYZE: catch up where autovacuum lags, and advise autovacuum settings.

A table is chosen when
- its dead tuples pass its own autovacuum threshold (threshold + scale_factor x reltuples, from the
  table's reloptions or else the server's settings) by `dead_ratio` times;
- the rows modified since its last analyze pass its own analyze threshold (→ ANALYZE only);
- its relfrozenxid or relminmxid age reaches 50 % of wraparound (80 % is critical);
- it has dead tuples and was not (auto)vacuumed for `stale_days`.
Chosen tables get `VACUUM (ANALYZE)` (or `ANALYZE`), one statement each, in autocommit; never
VACUUM FULL. Dead tuples, sizes and durations are measured before and after.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from optimizer.tuners.base import Action, Analysis, Finding, Tuner, TunerSchedule, register

WRAPAROUND = 2**31
DEFAULTS = {
    "autovacuum_vacuum_threshold": 50.0,
    "autovacuum_vacuum_scale_factor": 0.2,
    "autovacuum_analyze_threshold": 50.0,
    "autovacuum_analyze_scale_factor": 0.1,
    "autovacuum_vacuum_cost_limit": -1.0,
    "autovacuum_naptime": 60.0,
}

_TABLES_SQL = """
SELECT s.relid, s.schemaname, s.relname, c.reltuples::float8 AS reltuples, s.n_live_tup, s.n_dead_tup,
       s.n_mod_since_analyze, s.n_tup_upd + s.n_tup_del AS churn,
       age(c.relfrozenxid) AS xid_age, mxid_age(c.relminmxid) AS mxid_age,
       extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum)) AS vacuum_age_s,
       pg_total_relation_size(s.relid) AS total_bytes,
       coalesce(c.reloptions, '{}') AS reloptions
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE c.relkind IN ('r', 'm')
"""


def _reloptions(raw: list[str]) -> dict[str, float]:
    found = {}
    for item in raw:
        name, _, value = item.partition("=")
        try:
            found[name] = float(value)
        except ValueError:
            continue
    return found


@register
class VacuumTuner(Tuner):
    kind = "vacuum"
    label = "VACUUM / ANALYZE"
    description = "Vacuums and analyzes tables autovacuum left behind; advises autovacuum settings."
    # Nightly at 02:30: VACUUM (ANALYZE) the tables autovacuum left behind, on every PostgreSQL target.
    schedule = TunerSchedule(
        name="Optimizer: VACUUM / ANALYZE",
        crontab="30 2 * * *",
        description="Vacuums and analyzes lagging tables; advises autovacuum settings.",
    )
    defaults = {
        "dead_ratio": 1.0,  # x the table's own autovacuum threshold
        "min_dead_tuples": 1000,
        "stale_days": 7.0,
        "hot_table_rows": 1_000_000,
        "max_tables": 20,
        "tables": [],  # only these tables ("schema.table"), when given
    }

    def _settings(self) -> dict[str, float]:
        rows = self.session.query(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [[*DEFAULTS, "autovacuum"]]
        )
        values = dict.fromkeys(DEFAULTS, 0.0)
        values.update({name: float(v) for name, v in rows if name in DEFAULTS})
        values["autovacuum_on"] = any(name == "autovacuum" and v == "on" for name, v in rows)
        return values

    def tables(self) -> list[dict[str, Any]]:
        rows = self.session.query_dicts(_TABLES_SQL)
        only = set(self.params["tables"])
        if only:
            rows = [r for r in rows if f"{r['schemaname']}.{r['relname']}" in only or r["relname"] in only]
        return rows

    def _table_sql(self, row: dict[str, Any]) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(row["schemaname"]), sql.Identifier(row["relname"]))

    def analyze(self) -> Analysis:
        settings = self._settings()
        analysis = Analysis()
        candidates = []
        tables = self.tables()
        for row in tables:
            opts = _reloptions(row["reloptions"])
            reltuples = max(row["reltuples"], 0.0)
            vac_threshold = (
                opts.get("autovacuum_vacuum_threshold", settings["autovacuum_vacuum_threshold"])
                + opts.get("autovacuum_vacuum_scale_factor", settings["autovacuum_vacuum_scale_factor"]) * reltuples
            )
            an_threshold = (
                opts.get("autovacuum_analyze_threshold", settings["autovacuum_analyze_threshold"])
                + opts.get("autovacuum_analyze_scale_factor", settings["autovacuum_analyze_scale_factor"]) * reltuples
            )
            dead, mods = row["n_dead_tup"], row["n_mod_since_analyze"]
            xid_pct = 100.0 * row["xid_age"] / WRAPAROUND
            mxid_pct = 100.0 * row["mxid_age"] / WRAPAROUND
            vacuum_age_days = row["vacuum_age_s"] / 86400 if row["vacuum_age_s"] is not None else None
            reasons = []
            if dead >= self.params["min_dead_tuples"] and dead >= self.params["dead_ratio"] * vac_threshold:
                reasons.append(f"{dead} dead tuples, {dead / max(vac_threshold, 1):.1f}x its autovacuum threshold")
            if max(xid_pct, mxid_pct) >= 50:
                level = "critical" if max(xid_pct, mxid_pct) >= 80 else "warning"
                reasons.append(f"xid age {xid_pct:.0f} %, mxid age {mxid_pct:.0f} % of wraparound ({level})")
            stale = vacuum_age_days is None or vacuum_age_days >= self.params["stale_days"]
            if dead >= self.params["min_dead_tuples"] and stale and not reasons:
                reasons.append(
                    "never vacuumed" if vacuum_age_days is None else f"last vacuum {vacuum_age_days:.0f} d ago"
                )
            analyze_only = not reasons and mods >= max(an_threshold, self.params["min_dead_tuples"])
            if analyze_only:
                reasons.append(f"{mods} rows modified since the last analyze (threshold {an_threshold:.0f})")
            if reasons:
                urgency = max(xid_pct, mxid_pct, 100.0 * dead / max(vac_threshold, 1) / 10)
                candidates.append((urgency, row, reasons, analyze_only, vac_threshold))
            finding = self._autovacuum_finding(row, opts, settings)
            if finding is not None:
                analysis.findings.append(finding)
        candidates.sort(key=lambda c: -c[0])
        for _urgency, row, reasons, analyze_only, vac_threshold in candidates[: self.params["max_tables"]]:
            table = self._table_sql(row)
            statement = sql.SQL("ANALYZE {}" if analyze_only else "VACUUM (ANALYZE) {}").format(table)
            name = f"{row['schemaname']}.{row['relname']}"
            analysis.actions.append(
                Action(
                    statement=self.session.render(statement),
                    description="; ".join(reasons),
                    subject=name,
                    payload={"relid": row["relid"], "threshold": round(vac_threshold)},
                )
            )
        analysis.findings.extend(self._global_findings(settings))
        analysis.evidence = {
            "tables_checked": len(tables),
            "tables_chosen": len(analysis.actions),
            "dead_tuples_chosen": sum(c[1]["n_dead_tup"] for c in candidates[: self.params["max_tables"]]),
        }
        return analysis

    def _autovacuum_finding(self, row: dict, opts: dict, settings: dict) -> Finding | None:
        """Hot big tables on the default scale factor wait for 20 % of their rows to die: tighten it."""
        if row["reltuples"] < self.params["hot_table_rows"] or "autovacuum_vacuum_scale_factor" in opts:
            return None
        if row["churn"] < 0.1 * row["reltuples"]:
            return None
        name = f"{row['schemaname']}.{row['relname']}"
        statement = sql.SQL(
            "ALTER TABLE {} SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01, "
            "autovacuum_vacuum_threshold = 1000)"
        ).format(self._table_sql(row))
        return Finding(
            key=f"autovacuum:{name}",
            category="autovacuum",
            title=f"Autovacuum {name} sooner (hot table on default scale factor)",
            explanation=(
                f"{name} has {row['reltuples']:.0f} rows and {row['churn']} updates/deletes since statistics were "
                f"reset; with scale factor {settings['autovacuum_vacuum_scale_factor']:g} autovacuum waits for "
                f"{settings['autovacuum_vacuum_scale_factor'] * row['reltuples']:.0f} dead rows. A per-table 2 % "
                "keeps bloat and scan time down."
            ),
            statements=[self.session.render(statement)],
            estimated_impact="less bloat, steadier scans",
            effort="low",
            priority=60,
            evidence={"reltuples": row["reltuples"], "churn": row["churn"], "total_bytes": row["total_bytes"]},
        )

    def _global_findings(self, settings: dict) -> list[Finding]:
        at_default = [
            name
            for name in ("autovacuum_vacuum_scale_factor", "autovacuum_analyze_scale_factor", "autovacuum_naptime")
            if settings[name] == DEFAULTS[name]
        ]
        findings = []
        if not settings["autovacuum_on"]:
            findings.append(
                Finding(
                    key="autovacuum:off",
                    category="autovacuum",
                    title="Autovacuum is off",
                    explanation="Without autovacuum, dead tuples pile up and xid wraparound comes closer.",
                    statements=["ALTER SYSTEM SET autovacuum = on", "SELECT pg_reload_conf()"],
                    estimated_impact="prevents bloat and wraparound shutdowns",
                    priority=95,
                )
            )
        if at_default:
            findings.append(
                Finding(
                    key="autovacuum:defaults:" + ",".join(at_default),
                    category="autovacuum",
                    title="Autovacuum settings left at their defaults",
                    explanation=(
                        f"{', '.join(at_default)} are at PostgreSQL's defaults, tuned for small databases. "
                        "Busy servers usually want a lower scale factor (0.05) and naptime (30 s). Needs reload."
                    ),
                    statements=[
                        "ALTER SYSTEM SET autovacuum_vacuum_scale_factor = 0.05",
                        "ALTER SYSTEM SET autovacuum_analyze_scale_factor = 0.02",
                        "SELECT pg_reload_conf()",
                    ],
                    estimated_impact="earlier vacuums on growing tables",
                    priority=30,
                    evidence={name: settings[name] for name in at_default},
                )
            )
        return findings

    def measure(self, actions: list[Action]) -> dict[str, Any]:
        relids = [a.payload["relid"] for a in actions]
        if not relids:
            return {}
        # The counters come from the stats system; ask it to read the newest values.
        self.session.query("SELECT pg_stat_clear_snapshot()")
        rows = self.session.query_dicts(
            "SELECT relid, schemaname, relname, n_dead_tup, n_live_tup, pg_total_relation_size(relid) AS total_bytes "
            "FROM pg_stat_user_tables WHERE relid = ANY(%s)",
            [relids],
        )
        return {
            f"{r['schemaname']}.{r['relname']}": {
                "dead_tuples": r["n_dead_tup"],
                "live_tuples": r["n_live_tup"],
                "total_bytes": r["total_bytes"],
            }
            for r in rows
        }
