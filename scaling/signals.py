"""Events other apps can consume.

`scaling_executed` is sent after an executor changed a service's replicas (decision result
"scaled"), with `service` and `decision`. Receivers run in the evaluating process; one that raises
is logged and does not stop the evaluation of other services (send_robust).

Failures (an evaluation or an action that failed) are sent as core's `core.events.failure_event`
with kind "scaling_failure", the one signal alerts listens to for failures of any app.
"""

from __future__ import annotations

from django.dispatch import Signal

scaling_executed = Signal()
