"""Events other apps can consume.

`scaling_failed` is sent (after the decision is saved) whenever an evaluation or an action of a
service fails: its executor could not read or change the replica count, or the evaluation itself
raised. Receivers get `service` (ScaledService), `decision` (ScalingDecision, result "failed") and
`error` (str). Alerts can connect to it, e.g.

    from scaling.signals import scaling_failed

    @receiver(scaling_failed)
    def on_scaling_failed(sender, *, service, decision, error, **kwargs): ...

`scaling_executed` is sent after an executor changed a service's replicas (decision result
"scaled"), with `service` and `decision`. Receivers run in the evaluating process; one that raises
is logged and does not stop the evaluation of other services (send_robust).
"""

from __future__ import annotations

from django.dispatch import Signal

scaling_failed = Signal()
scaling_executed = Signal()
