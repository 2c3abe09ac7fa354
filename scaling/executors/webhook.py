"""HTTP webhook: POST {"service", "replicas", "previous"} as JSON to a URL; any 2xx is success.

The URL and headers are secrets (they often carry tokens). The current count comes from an
optional status URL answering JSON {"replicas": n}; without one it is the count last applied
(or the service's minimum before anything was applied).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from scaling.executors.base import ConfigField, Executor, ExecutorError, register

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
        return cleaned

    def _request(self, url: str, *, data: bytes | None = None) -> tuple[int, bytes]:
        headers = {"User-Agent": "perfpilot-scaling", **self.config.get("headers", {})}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http/https checked on save)
                return response.status, response.read(MAX_BODY_BYTES)
        except urllib.error.HTTPError as exc:
            body = exc.read(500).decode(errors="replace").strip()
            raise ExecutorError(
                f"The webhook answered {exc.code} {exc.reason}" + (f": {body}" if body else "")
            ) from exc
        except TimeoutError as exc:
            raise ExecutorError(f"The webhook did not answer within {self.timeout:g} s.") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise ExecutorError(f"The webhook did not answer within {self.timeout:g} s.") from exc
            raise ExecutorError(f"The webhook cannot be reached: {exc.reason}") from exc
        except OSError as exc:
            raise ExecutorError(f"The webhook cannot be reached: {exc}") from exc

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
            raise ExecutorError(f"The webhook answered {status}; a 2xx was expected.")
        return f"webhook answered {status} for {replicas} replicas"
