"""Kubernetes: the scale subresource of a Deployment or StatefulSet, with the official client.

Reads `GET .../{deployments|statefulsets}/{name}/scale` (spec.replicas is the count asked for,
status.replicas the count running; current() reports spec.replicas, as the HPA does) and writes
`PATCH .../scale` with {"spec": {"replicas": n}}. The bearer token is a secret.
"""

from __future__ import annotations

from core import outbound
from core.errors import InvalidInput
from scaling.executors.base import ConfigField, Executor, ExecutorError, check_url_field, register

RESOURCES = ("deployment", "statefulset")


@register
class KubernetesExecutor(Executor):
    kind = "kubernetes"
    label = "Kubernetes Deployment/StatefulSet"
    fields = (
        ConfigField("api_url", "the API server URL, e.g. https://10.0.0.1:6443", True),
        ConfigField("token", "a service account bearer token allowed to get and patch the scale", secret=True),
        ConfigField("namespace", "the namespace (default: default)"),
        ConfigField("resource", "deployment or statefulset (default: deployment)"),
        ConfigField("name", "the Deployment's or StatefulSet's name", True),
        ConfigField("verify_tls", "check the server certificate (default: true)", kind="bool"),
        ConfigField("ca_cert", "path of the CA bundle that signed the API server's certificate"),
    )

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        cleaned = super().validate_config(config)
        if cleaned.get("resource", "deployment") not in RESOURCES:
            raise InvalidInput("resource must be deployment or statefulset.", field="executor_config.resource")
        api_url = cleaned.get("api_url")
        if api_url and not api_url.startswith(("http://", "https://")):
            raise InvalidInput("api_url must start with https:// (or http://).", field="executor_config.api_url")
        if api_url:
            check_url_field(api_url, field="executor_config.api_url")
        return cleaned

    def _api(self):
        from kubernetes import client

        configuration = client.Configuration(
            host=self.config["api_url"].rstrip("/"),
            verify_ssl=self.config.get("verify_tls", True),
            ssl_ca_cert=self.config.get("ca_cert") or None,
            retries=False,
        )
        if self.config.get("token"):
            configuration.api_key = {"BearerToken": self.config["token"]}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        api_client = client.ApiClient(configuration)
        outbound.pin_urllib3(api_client.rest_client.pool_manager)  # every connection checked by the policy
        return api_client

    def _call(self, action: str, **kwargs):
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        resource = self.config.get("resource", "deployment")
        namespace = self.config.get("namespace") or "default"
        name = self.config["name"]
        suffix = "deployment" if resource == "deployment" else "stateful_set"
        where = f"{resource} {namespace}/{name}"
        with self._api() as api_client:
            method = getattr(client.AppsV1Api(api_client), f"{action}_namespaced_{suffix}_scale")
            try:
                return method(name, namespace, _request_timeout=self.timeout, **kwargs)
            except ApiException as exc:
                # The status and its standard phrase only: the body is the server's text.
                status = outbound.http_status_text(exc.status) if exc.status else "an error"
                raise ExecutorError(f"The API server answered {status} for {where}.") from exc
            except outbound.OutboundRefused as exc:
                raise ExecutorError(f"The API server for {where} is refused: {exc}", permanent=True) from exc
            except Exception as exc:  # urllib3 connection errors, timeouts, TLS failures
                raise ExecutorError(f"Cannot reach the API server for {where}: {type(exc).__name__}: {exc}") from exc

    def current(self) -> int:
        scale = self._call("read")
        return int(scale.spec.replicas or 0)

    def scale_to(self, replicas: int) -> str:
        if replicas < 0:
            raise ExecutorError("Replicas cannot be negative.", permanent=True)
        scale = self._call("patch", body={"spec": {"replicas": replicas}})
        return (
            f"scale of {self.config.get('resource', 'deployment')} {self.config['name']} set to {scale.spec.replicas}"
        )
