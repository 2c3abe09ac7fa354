"""HTTP webhook: POST {"service", "replicas", "previous"} as JSON to a URL; any 2xx is success.

The URL and headers are secrets (they often carry tokens). The current count comes from an
optional status URL answering JSON {"replicas": n}; without one it is the count last applied
(or the service's minimum before anything was applied).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request

from core import outbound
from scaling.executors.base import ConfigField, Executor, ExecutorError, check_url_field, register

MAX_BODY_BYTES = 64 * 1024


@register
class WebhookExecutor(Executor):
    kind = "webhook"
    label = "HTTP webhook"
    fields = (
        ConfigField("url", "the URL to POST the desired count to (http or https)", True, secret=True),
        ConfigField("status_url", 'optional URL answering JSON {"replicas": n} with the current count', secret=True),
        ConfigField(
            "headers", 'optional extra request headers, e.g. {"Authorization": "Bearer …"}', secret=True, kind="dict"
        ),
    )

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        from core.errors import InvalidInput

        cleaned = super().validate_config(config)
        for name in ("url", "status_url"):
            value = cleaned.get(name)
            if value and not value.startswith(("http://", "https://")):
                raise InvalidInput(f"{name} must start with http:// or https://.", field=f"executor_config.{name}")
            if value:
                check_url_field(value, field=f"executor_config.{name}")
        return cleaned

    def _request(self, url: str, *, data: bytes | None = None) -> tuple[int, bytes]:
        """Through the outbound policy, no redirects followed. A failure names the status and its standard
        phrase only: the receiver's body is never kept (decisions are readable by viewers)."""
        headers = {"User-Agent": "perfpilot-scaling", **self.config.get("headers", {})}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")  # noqa: S310
        try:
            with outbound.http_open(request, timeout=self.timeout) as response:
                return response.status, response.read(MAX_BODY_BYTES)
        except outbound.OutboundRefused as exc:
            raise ExecutorError(f"The webhook is refused: {exc}", permanent=True) from exc
        except urllib.error.HTTPError as exc:
            exc.close()
            text = outbound.http_status_text(exc.code)
            if 300 <= exc.code < 400:
                raise ExecutorError(
                    f"The webhook answered {text}; redirects are not followed.", permanent=True
                ) from exc
            raise ExecutorError(f"The webhook answered {text}.") from exc
        except TimeoutError as exc:
            raise ExecutorError(f"The webhook did not answer within {self.timeout:g} s.") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise ExecutorError(f"The webhook did not answer within {self.timeout:g} s.") from exc
            raise ExecutorError(f"The webhook cannot be reached: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ExecutorError(f"The webhook cannot be reached: {type(exc).__name__}") from exc

    def current(self) -> int:
        status_url = self.config.get("status_url")
        if not status_url:
            if self.context.applied_replicas is not None:
                return self.context.applied_replicas
            return self.context.min_replicas
        _, body = self._request(status_url)
        try:
            replicas = json.loads(body)["replicas"]
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise ValueError(replicas)
        except (ValueError, KeyError, TypeError) as exc:
            raise ExecutorError('The status URL must answer JSON {"replicas": <whole number>}.') from exc
        return replicas

    def scale_to(self, replicas: int) -> str:
        payload = {"service": self.context.service, "replicas": replicas, "previous": self.context.applied_replicas}
        status, _ = self._request(self.config["url"], data=json.dumps(payload).encode())
        if not 200 <= status < 300:
            raise ExecutorError(f"The webhook answered {outbound.http_status_text(status)}; a 2xx was expected.")
        return f"webhook answered {status} for {replicas} replicas"
