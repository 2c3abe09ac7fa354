"""The tuner plug-in contract and its registry.

A tuner is one module in optimizer/tuners/ with one class registered under its `kind`. It gets a
`Session` (an open, bounded connection to one target) and implements:

    analyze()            read-only: findings (recommendations), actions it would run itself, evidence numbers,
                         plans it captured (the run stores them: optimizer.services.plan_regressions),
                         table and index sizes it read (the run stores them: optimizer.services.space)
    measure(actions)     numbers describing what the actions touch, taken before and after they run
    perform(action)      run one action (default: its statement through the session)
    apply(recommendation)  run a recommendation's statements (default: each one through the session)
    evidence_for(recommendation)  numbers before/after applying a recommendation (default: none)

Its `schedule` (a TunerSchedule, with a comment saying when and why) is installed as a default beat
entry of the one generic task, `optimizer.tasks.run_tuner_task`, with the tuner named in its kwargs.

Nothing here writes Perfpilot's own tables; optimizer.services does.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from django.template.defaultfilters import filesizeformat

from core.registry import UnknownPlugin, registry
from core.schedules import DefaultSchedule

if TYPE_CHECKING:
    from optimizer.models import Recommendation
    from optimizer.services.sessions import Session

logger = logging.getLogger(__name__)

# The one Celery task that runs any tuner on its beat schedules; a schedule names its tuner in its kwargs.
RUN_TUNER_TASK = "optimizer.tasks.run_tuner_task"


class TunerError(Exception):
    """A tuner cannot do its work on this target (wrong kind, missing privilege, bad parameter)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class WindowClosed(TunerError):
    """An action was asked for outside the maintenance window."""


class LockHeld(TunerError):
    """Another optimizer run holds this target's lock."""


@dataclass
class Finding:
    """A recommendation as a tuner drafts it; `key` identifies it across runs."""

    key: str
    category: str
    title: str
    explanation: str
    statements: list[str] = field(default_factory=list)
    estimated_impact: str = ""
    effort: str = "low"
    priority: int = 50
    verified: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self, tuner_kind: str) -> str:
        return hashlib.sha256(f"{tuner_kind}\x00{self.category}\x00{self.key}".encode()).hexdigest()


@dataclass
class Action:
    """A statement the tuner runs on its own during a (non dry-run) run, e.g. VACUUM of one table."""

    statement: str
    description: str
    subject: str  # what it acts on (a table, a namespace); the key of its before/after evidence
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Analysis:
    findings: list[Finding] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Plans taken (optimizer.tuners.plans.PlanSnapshot); the run stores them and looks for regressions.
    captures: list[Any] = field(default_factory=list)
    # Sizes of tables and indexes read by the run (the space tuner); the run stores them per day.
    relation_sizes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TunerSchedule:
    """When a tuner runs by default, on every enabled target it fits (the operator edits it afterwards)."""

    name: str  # the beat entry's name, unique among all schedules
    crontab: str  # "minute hour day_of_month month_of_year day_of_week"
    description: str


class Tuner:
    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    target_kinds: ClassVar[tuple[str, ...]] = ("postgres",)
    schedule: ClassVar[TunerSchedule | None] = None
    # Parameters a caller may pass, with their defaults; anything else is refused.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, session: Session, *, params: dict[str, Any] | None = None) -> None:
        self.session = session
        self.params = {**self.defaults, **(params or {})}

    def analyze(self) -> Analysis:
        raise NotImplementedError

    def measure(self, actions: list[Action]) -> dict[str, Any]:
        return {}

    def perform(self, action: Action) -> None:
        """Run one action of a tuner run (the session records it, or only plans it in a dry run)."""
        self.session.execute_action(action.statement)

    def apply(self, recommendation: Recommendation) -> None:
        for statement in recommendation.statements:
            self.session.execute_action(statement)

    def evidence_for(self, recommendation: Recommendation) -> dict[str, Any]:
        return {}


def human_size(size_bytes: int | float) -> str:
    """Bytes as people read them in advice text: "8.0 KB", "1.2 GB" (Django's filesizeformat, plain spaces)."""
    return filesizeformat(size_bytes).replace("\xa0", " ")


# Tuner modules register themselves here (`@register`); optimizer's AppConfig discovers them.
register = registry.plugin("tuners")


def all_tuners() -> dict[str, type[Tuner]]:
    return dict(registry.all("tuners"))


def tuner_default_schedule(cls: type[Tuner]) -> DefaultSchedule:
    """The tuner's declared schedule as a default beat entry of the generic task, on the maintenance queue."""
    return DefaultSchedule(
        name=cls.schedule.name,
        task=RUN_TUNER_TASK,
        description=cls.schedule.description,
        crontab=cls.schedule.crontab,
        queue="maintenance",
        kwargs={"tuner": cls.kind},
    )


def tuner_class(kind: str) -> type[Tuner]:
    try:
        return registry.get("tuners", kind)
    except UnknownPlugin as exc:
        raise TunerError(f"Unknown tuner {kind!r} ({exc.reason}).", field="tuners") from None


def check_params(cls: type[Tuner], params: dict[str, Any]) -> dict[str, Any]:
    """Params with unknown names refused and numbers coerced to the default's type."""
    cleaned: dict[str, Any] = {}
    for name, value in params.items():
        if name not in cls.defaults:
            allowed = ", ".join(sorted(cls.defaults)) or "none"
            raise TunerError(f"Tuner {cls.kind} has no parameter {name!r} (it takes: {allowed}).", field=name)
        default = cls.defaults[name]
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError
                cleaned[name] = value
            elif isinstance(default, int | float):
                cleaned[name] = type(default)(value)
                if cleaned[name] < 0:
                    raise ValueError
            elif isinstance(default, list | dict) and not isinstance(value, type(default)):
                raise ValueError
            else:
                cleaned[name] = value
        except (TypeError, ValueError):
            raise TunerError(
                f"Parameter {name!r} of tuner {cls.kind} must be a {type(default).__name__} of at least 0.",
                field=name,
            ) from None
    return cleaned
