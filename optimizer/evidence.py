"""A run's evidence (two JSON objects, before and after) as a table a person reads: labels, units, gaps named.

Tuners record what they measured as nested JSON (see each tuner's analyze/measure/evidence_for). The run
page shows one row per measured value, found by walking the objects; the key's suffix gives the unit
(`_bytes`, `_ms`, `_mb`, `_percent`), query ids are shown as their (shortened) query text, and an empty
"after" says why it is empty instead of showing `{}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optimizer.models import OptimizationRun
from optimizer.tuners.base import human_size

QUERY_TEXT_LENGTH = 80
UNIT_SUFFIXES = {"_bytes": "size", "_ms": "time", "_mb": "", "_percent": ""}  # the unit goes to the value


@dataclass(frozen=True)
class EvidenceRow:
    label: str
    before: str | None  # None: not measured on that side
    after: str | None


@dataclass(frozen=True)
class EvidenceTable:
    rows: list[EvidenceRow]
    has_after: bool
    after_note: str  # why nothing was measured after, when nothing was


def format_value(key: str, value: Any) -> str:
    """A measured value with its unit, from the key's suffix: 1536000 bytes → "1.5 MB", 12.5 ms → "12.5 ms"."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if "bytes" in key.split("_"):  # bytes, index_bytes, bytes_used
            return human_size(value)
        number = f"{value:,.4g}" if isinstance(value, float) and not float(value).is_integer() else f"{int(value):,}"
        if key.endswith("_ms"):
            return f"{number} ms"
        if key.endswith("_mb"):
            return f"{number} MB"
        if key.endswith("_percent"):
            return f"{number} %"
        return number
    if isinstance(value, list):
        if all(not isinstance(item, dict | list) for item in value):
            return ", ".join(str(item) for item in value) or "none"
        return f"{len(value)} row{'s' if len(value) != 1 else ''} (see the recommendation)"
    return str(value)


def _label(key: str, query_texts: dict[str, str]) -> str:
    if key in query_texts:
        return f"query “{query_texts[key]}”"
    for suffix, noun in UNIT_SUFFIXES.items():
        if key.endswith(suffix):
            key = f"{key.removesuffix(suffix)} {noun}"  # index_bytes: "index size"
            break
    return key.replace("_", " ").strip() or key


def _flatten(evidence: dict, query_texts: dict[str, str], path: tuple[str, ...] = ()) -> dict[str, tuple[str, Any]]:
    """{dotted key: (label, value)} for every leaf; a value's unit comes from its own key or its parent's."""
    leaves: dict[str, tuple[str, Any]] = {}
    for key, value in evidence.items():
        key = str(key)
        here = (*path, key)
        if isinstance(value, dict) and value:
            leaves.update(_flatten(value, query_texts, here))
            continue
        unit_key = key
        if key in query_texts and path:  # {"queries_mean_ms": {"<queryid>": 1.2}}: the unit is the parent's
            unit_key = path[-1]
        label = ": ".join(_label(part, query_texts) for part in here)
        leaves[".".join(here)] = (label[:1].upper() + label[1:], format_value(unit_key, value))
    return leaves


def _query_texts(run: OptimizationRun) -> dict[str, str]:
    queries = (run.recommendation.evidence if run.recommendation else {}).get("queries", [])
    texts = {}
    for query in queries:
        text = " ".join(str(query.get("query", "")).split())
        if len(text) > QUERY_TEXT_LENGTH:
            text = text[: QUERY_TEXT_LENGTH - 1] + "…"
        texts[str(query.get("queryid"))] = text
    return texts


def _after_note(run: OptimizationRun) -> str:
    if run.is_live:
        return "Not measured after yet: the run is still going."
    if run.status == OptimizationRun.Status.FAILED:
        return "Not measured after: the run failed."
    if run.dry_run:
        return "Not measured after (dry run): nothing was changed."
    if run.action == OptimizationRun.Action.RUN:
        return "Not measured after: this run analysed and changed nothing."
    return "Not measured after."


def evidence_table(run: OptimizationRun) -> EvidenceTable:
    query_texts = _query_texts(run)
    before = _flatten(run.evidence_before or {}, query_texts)
    after = _flatten(run.evidence_after or {}, query_texts)
    rows = []
    for key in [*before, *(k for k in after if k not in before)]:
        label = (before.get(key) or after[key])[0]
        rows.append(
            EvidenceRow(
                label=label,
                before=before[key][1] if key in before else None,
                after=after[key][1] if key in after else None,
            )
        )
    return EvidenceTable(rows=rows, has_after=bool(after), after_note="" if after else _after_note(run))
