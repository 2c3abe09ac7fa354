"""A readable plan tree from EXPLAIN (FORMAT JSON): one row per node, in tree order, with its depth.

Times in EXPLAIN ANALYZE are per loop and include the node's children; the tree shows each node's
exclusive time (its own total over all loops, less its children's), so the node doing the work
stands out. Estimated rows are per loop too, so the misestimate compares them with the actual rows
per loop. Without ANALYZE the worst node is the one with the largest exclusive cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MISESTIMATE_FLAG = 10.0  # estimates this many times off (either way) are pointed out


@dataclass
class PlanNode:
    index: int
    depth: int
    node_type: str
    detail: str
    estimated_rows: float
    total_cost: float
    exclusive_cost: float
    actual_rows: float | None = None
    loops: int | None = None
    total_time_ms: float | None = None
    exclusive_time_ms: float | None = None
    misestimate: float | None = None  # actual/estimated (>1 under-estimated, <1 over-estimated)
    shared_hit: int | None = None
    shared_read: int | None = None
    never_executed: bool = False
    worst: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def indent(self) -> int:
        """The depth the page indents by: deep trees stop indenting, so they fit a phone."""
        return min(self.depth, 8)

    @property
    def misestimate_factor(self) -> float | None:
        """How many times off the estimate was, whichever way (1 = right)."""
        if self.misestimate is None:
            return None
        return self.misestimate if self.misestimate >= 1 else 1 / self.misestimate

    @property
    def badly_estimated(self) -> bool:
        return self.misestimate_factor is not None and self.misestimate_factor >= MISESTIMATE_FLAG


@dataclass
class PlanTree:
    nodes: list[PlanNode]
    analyzed: bool
    planning_time_ms: float | None
    execution_time_ms: float | None

    @property
    def worst(self) -> PlanNode | None:
        return next((node for node in self.nodes if node.worst), None)


def _detail(plan: dict[str, Any]) -> str:
    parts = []
    if plan.get("Relation Name"):
        relation = plan["Relation Name"]
        if plan.get("Alias") and plan["Alias"] != relation:
            relation += f" {plan['Alias']}"
        parts.append(f"on {relation}")
    if plan.get("Index Name"):
        parts.append(f"using {plan['Index Name']}")
    for key in ("Index Cond", "Hash Cond", "Merge Cond", "Join Filter", "Filter", "Recheck Cond"):
        if plan.get(key):
            parts.append(f"{key.lower()}: {plan[key]}")
    if plan.get("Sort Key"):
        parts.append("sort: " + ", ".join(plan["Sort Key"]))
    if plan.get("Group Key"):
        parts.append("group: " + ", ".join(plan["Group Key"]))
    return " · ".join(parts)


def _node_type(plan: dict[str, Any]) -> str:
    name = plan.get("Node Type", "?")
    if plan.get("Join Type") and plan["Join Type"] != "Inner":
        name = f"{name} ({plan['Join Type']})"
    if plan.get("Parent Relationship") in ("InitPlan", "SubPlan"):
        name = f"{plan['Parent Relationship']}: {name}"
    return name


def plan_tree(explained: Any) -> PlanTree:
    """The nodes of EXPLAIN (FORMAT JSON) output (a list with one object, as PostgreSQL returns it)."""
    top = explained[0] if isinstance(explained, list) else explained
    if not isinstance(top, dict) or not isinstance(top.get("Plan"), dict):
        raise ValueError("Not EXPLAIN (FORMAT JSON) output: no Plan.")
    nodes: list[PlanNode] = []
    analyzed = "Actual Total Time" in top["Plan"] or "Actual Loops" in top["Plan"]

    def walk(plan: dict[str, Any], depth: int) -> None:
        children = [child for child in plan.get("Plans", []) if isinstance(child, dict)]
        estimated = float(plan.get("Plan Rows", 0))
        total_cost = float(plan.get("Total Cost", 0.0))
        node = PlanNode(
            index=len(nodes),
            depth=depth,
            node_type=_node_type(plan),
            detail=_detail(plan),
            estimated_rows=estimated,
            total_cost=total_cost,
            exclusive_cost=max(0.0, total_cost - sum(float(c.get("Total Cost", 0.0)) for c in children)),
        )
        if analyzed:
            loops = int(plan.get("Actual Loops", 0))
            node.loops = loops
            node.never_executed = loops == 0
            node.actual_rows = float(plan.get("Actual Rows", 0))
            node.total_time_ms = float(plan.get("Actual Total Time", 0.0)) * loops
            below = sum(float(c.get("Actual Total Time", 0.0)) * int(c.get("Actual Loops", 0)) for c in children)
            node.exclusive_time_ms = round(max(0.0, node.total_time_ms - below), 3)
            if loops:
                # A zero on either side is counted as one row, so "expected 0, got 5000" still shows.
                node.misestimate = max(node.actual_rows, 1.0) / max(estimated, 1.0)
            node.shared_hit = plan.get("Shared Hit Blocks")
            node.shared_read = plan.get("Shared Read Blocks")
        nodes.append(node)
        for child in children:
            walk(child, depth + 1)

    walk(top["Plan"], 0)
    key = (lambda n: n.exclusive_time_ms or 0.0) if analyzed else (lambda n: n.exclusive_cost)
    worst = max(nodes, key=key)
    worst.worst = True
    for node in nodes:
        if node.badly_estimated:
            way = "under" if node.misestimate > 1 else "over"
            node.notes.append(f"rows {way}-estimated {node.misestimate_factor:.0f} times")
    return PlanTree(
        nodes=nodes,
        analyzed=analyzed,
        planning_time_ms=top.get("Planning Time"),
        execution_time_ms=top.get("Execution Time"),
    )
