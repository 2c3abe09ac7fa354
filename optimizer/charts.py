"""Before/after figures of applied fixes, built from a run's evidence, and a target's total size over time
(tests check the figure data).

Figures are plain dicts in plotly's figure schema; core/charts.py says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core.charts import LEGEND_ABOVE, figure_json, value_axis, value_hover, with_empty_state
from optimizer.models import OptimizationRun
from optimizer.selectors import SpaceReport

BEFORE, AFTER = "#d9822b", "#2f9e6e"


@dataclass(frozen=True)
class BeforeAfter:
    title: str
    unit: str
    labels: list[str]
    before: list[float]
    after: list[float]


def _bytes(entry: dict) -> float:
    return entry.get("bytes_used", entry.get("bytes", 0))


def before_after_data(run: OptimizationRun) -> BeforeAfter | None:
    """What changed, per subject, as numbers; None when the run has nothing measured after."""
    before, after = run.evidence_before or {}, run.evidence_after or {}
    if run.action == OptimizationRun.Action.RUN and after.get("actions"):
        subjects = sorted(after["actions"])
        if not any("dead_tuples" in after["actions"][s] for s in subjects):  # the cache tuner: bytes
            return BeforeAfter(
                title="Memory before and after",
                unit="bytes",
                labels=subjects,
                before=[_bytes(before.get("actions", {}).get(s, {})) for s in subjects],
                after=[_bytes(after["actions"][s]) for s in subjects],
            )
        return BeforeAfter(
            title="Dead tuples per table",
            unit="tuples",
            labels=subjects,
            before=[before.get("actions", {}).get(s, {}).get("dead_tuples", 0) for s in subjects],
            after=[after["actions"][s]["dead_tuples"] for s in subjects],
        )
    observed = after.get("observed", {}).get("queries")
    if observed:
        ids = sorted(observed)
        return BeforeAfter(
            title="Mean time of the affected queries",
            unit="ms",
            labels=[f"query {qid}" for qid in ids],
            before=[observed[qid]["before_ms"] for qid in ids],
            after=[observed[qid]["after_ms"] for qid in ids],
        )
    if "bytes_used" in after and "bytes_used" in before:
        return BeforeAfter(
            title="Redis memory used",
            unit="bytes",
            labels=["used memory"],
            before=[before["bytes_used"]],
            after=[after["bytes_used"]],
        )
    if "index_bytes" in after and "index_bytes" in before:
        return BeforeAfter(
            title="Index size",
            unit="bytes",
            labels=["index"],
            before=[before["index_bytes"]],
            after=[after["index_bytes"]],
        )
    return None


def before_after_figure(data: BeforeAfter) -> dict:
    hover = f"%{{x}}: {value_hover(data.unit)}"
    bars = [
        {"type": "bar", "name": name, "x": data.labels, "y": values, "marker": {"color": colour}}
        | {"hovertemplate": f"{hover}<extra>{name}</extra>"}
        for name, values, colour in (("before", data.before, BEFORE), ("after", data.after, AFTER))
    ]
    layout = {
        "barmode": "group",
        "height": 260,
        # Table names are long: the axis takes the room its labels need rather than cutting them off
        # (automargin, from the shared figure template).
        "yaxis": value_axis(data.unit),
        "legend": LEGEND_ABOVE,
    }
    return {"data": bars, "layout": layout}


def before_after_json(run: OptimizationRun) -> str | None:
    data = before_after_data(run)
    return figure_json(before_after_figure(data)) if data else None


def space_figure(report: SpaceReport) -> dict:
    """The target's tables (with their indexes and TOAST) summed per day, from the space tuner's readings."""
    line = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "total size",
        "x": [day.isoformat() for day, _ in report.totals],
        "y": [size for _, size in report.totals],
        "hovertemplate": f"%{{x}}: {value_hover('bytes')}<extra>total size</extra>",
    }
    # Daily readings: day ticks, never plotly's sub-second ticks around a single reading.
    xaxis: dict = {"type": "date", "tickformat": "%b %d", "dtick": 86_400_000}
    if len(report.totals) == 1:
        day = report.totals[0][0]
        xaxis["range"] = [(day - timedelta(days=3)).isoformat(), (day + timedelta(days=3)).isoformat()]
    elif len(report.totals) > 14:
        del xaxis["dtick"]
    layout = {"height": 220, "xaxis": xaxis, "yaxis": value_axis("bytes"), "showlegend": False}
    return with_empty_state({"data": [line], "layout": layout}, text="No size readings yet (space tuner, daily)")


def space_json(report: SpaceReport) -> str:
    return figure_json(space_figure(report))
