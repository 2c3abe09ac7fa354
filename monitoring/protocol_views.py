"""The protocol receivers' doors: bearer token, operator role, decode, one bulk write.

Each receiver (monitoring/protocols/) decodes and answers in its protocol's format; these views
only authenticate, pass the body on and write the columns through the push API's bulk path.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.auth import bearer_user_or_refusal
from core.errors import InvalidInput
from core.registry import registry
from core.roles import OPERATOR
from monitoring.services.ingest import samples_ingest_columns


def receiver_view(kind: str):
    @csrf_exempt
    @login_not_required
    @require_POST
    def view(request: HttpRequest) -> HttpResponse:
        refusal = bearer_user_or_refusal(request, role=OPERATOR)
        if isinstance(refusal, HttpResponse):
            return refusal
        receiver = registry.get("protocols", kind)()
        content_type = request.headers.get("Content-Type", "")
        try:
            decoded = receiver.decode(
                body=request.body,
                content_type=content_type,
                content_encoding=request.headers.get("Content-Encoding", ""),
            )
            samples_ingest_columns(
                target=None,
                specs=decoded.specs,
                counts=decoded.counts,
                stamps=decoded.stamps,
                values=decoded.values,
                deltas=decoded.deltas,
                labels_keys=decoded.labels_keys,
            )
        except InvalidInput as exc:
            return receiver.refused(error=exc, content_type=content_type)
        return receiver.accepted(decoded=decoded, content_type=content_type)

    view.__name__ = f"{kind}_receive"
    return view
