"""The advised indexes chosen as one set for the whole workload, not index by index.

An index advised for one query may serve another nearly as well as that one's own index does, and
every index is paid for by every write to its table. So, with the indexes that each won on their
own query (HypoPG-verified) as the start:

- write cost of an index (ms over the window): the table's index-maintaining writes over the window
  (n_tup_ins + n_tup_upd - n_tup_hot_upd of pg_stat_user_tables since its statistics were reset,
  scaled to the window), times the share of rows it holds (a partial index on a value: that value's
  frequency in pg_stats), times `index_write_us_per_row`;
- read saving of an index in the set (ms over the window): over the workload, calls x mean time x
  (plan cost without it - plan cost with the whole set) / plan cost today, what the workload loses
  when that one index goes and the others serve in its place;
- while some index saves less than it costs, the one with the lowest saving minus cost leaves the set
  and the rest are costed again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optimizer.services.sessions import Session
    from optimizer.tuners.indexes import Candidate, WorkloadQuery

PlanPass = Callable[[list["WorkloadQuery"], set["Candidate"]], dict]


@dataclass(frozen=True)
class Economics:
    read_saving_ms: float
    write_cost_ms: float

    @property
    def net_ms(self) -> float:
        return self.read_saving_ms - self.write_cost_ms


def table_writes(session: Session, *, window_s: float) -> dict[tuple[str, str], float]:
    """(schema, table) -> rows written to its indexes over the window (inserts and non-HOT updates)."""
    rows = session.query(
        "SELECT t.schemaname, t.relname, t.n_tup_ins + t.n_tup_upd - t.n_tup_hot_upd, "
        "extract(epoch FROM now() - greatest(d.stats_reset, pg_postmaster_start_time()))::float8 "
        "FROM pg_stat_user_tables t CROSS JOIN pg_stat_database d WHERE d.datname = current_database()"
    )
    return {(schema, table): float(writes) * min(1.0, window_s / max(age, 1.0)) for schema, table, writes, age in rows}


def _workload_ms(queries: list[WorkloadQuery], costs: dict) -> float:
    """The workload's time over the window were its plans to cost `costs` (mean time scaled by plan cost)."""
    total = 0.0
    for query in queries:
        cost = costs.get(query.key, (query.base_cost, set()))[0]
        total += query.calls * query.mean_time_ms * min(cost, query.base_cost) / query.base_cost
    return total


def choose(
    plan_pass: PlanPass, queries: list[WorkloadQuery], advised: set[Candidate], write_ms: Callable[[Candidate], float]
) -> tuple[set[Candidate], dict[Candidate, Economics], dict[Candidate, Economics]]:
    """The set kept, its indexes' economics, and the indexes left out with theirs."""
    kept = set(advised)
    dropped: dict[Candidate, Economics] = {}
    while kept:
        with_all = _workload_ms(queries, plan_pass(queries, kept))
        economics = {}
        for candidate in sorted(kept, key=lambda c: c.describe()):
            without = _workload_ms(queries, plan_pass(queries, kept - {candidate}))
            economics[candidate] = Economics(round(max(without - with_all, 0.0), 3), round(write_ms(candidate), 3))
        worst = min(economics, key=lambda c: (economics[c].net_ms, c.describe()))
        if economics[worst].net_ms >= 0:
            return kept, economics, dropped
        kept.discard(worst)
        dropped[worst] = economics[worst]
    return kept, {}, dropped
