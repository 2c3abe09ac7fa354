"""Docker Engine: the replica count of a Swarm service, with the docker SDK.

Reads `GET /services/{name}` (Spec.Mode.Replicated.Replicas) and scales with
`POST /services/{id}/update?version=N` carrying the current spec with the new count (the SDK's
Service.scale). A global service cannot be scaled. Compose services have no scale endpoint in the
Engine API: use a shell executor with `docker compose up -d --scale NAME={replicas}` for them.
"""

from __future__ import annotations

from core import outbound
from core.errors import InvalidInput
from scaling.executors.base import ConfigField, Executor, ExecutorError, check_url_field, register

API_VERSION = "1.44"  # fixed, so no version negotiation round trip (Engine 25+; older engines answer 400)


@register
class DockerExecutor(Executor):
    kind = "docker"
    label = "Docker Swarm service"
    fields = (
        ConfigField("base_url", "the Engine's address, e.g. unix:///var/run/docker.sock or tcp://10.0.0.5:2375", True),
        ConfigField("service", "the Swarm service's name or id", True),
    )

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        cleaned = super().validate_config(config)
        base_url = cleaned.get("base_url")
        if base_url and not base_url.startswith(("unix://", "tcp://", "http://", "https://")):
            raise InvalidInput(
                "base_url must start with unix://, tcp://, http:// or https://.", field="executor_config.base_url"
            )
        if base_url:
            check_url_field(base_url, field="executor_config.base_url")
        return cleaned

    def _client(self):
        """A DockerClient whose connections go through the outbound policy: a Unix socket is checked before
        the client is made, a TCP address on every connection (requests' pool, pinned)."""
        import docker
        from docker.errors import DockerException

        base_url = self.config["base_url"]
        try:
            if base_url.startswith("unix://"):
                outbound.check_unix(base_url.removeprefix("unix://"), what="The Docker Engine's address")
            client = docker.DockerClient(base_url=base_url, version=API_VERSION, timeout=self.timeout)
        except outbound.OutboundRefused as exc:
            raise ExecutorError(f"The Docker Engine is refused: {exc}", permanent=True) from exc
        except DockerException as exc:
            raise ExecutorError(f"Cannot reach the Docker Engine: {exc}") from exc
        client.api.trust_env = False  # no proxy from the environment: it would be connected to, unchecked
        for adapter in client.api.adapters.values():
            if hasattr(adapter, "poolmanager"):
                outbound.pin_urllib3(adapter.poolmanager)
        return client

    def _service(self):
        from docker.errors import APIError, NotFound

        name = self.config["service"]
        client = self._client()
        try:
            return client, client.services.get(name)
        except NotFound as exc:
            client.close()
            raise ExecutorError(f"The Docker Engine has no service {name!r}.") from exc
        except outbound.OutboundRefused as exc:
            client.close()
            raise ExecutorError(f"The Docker Engine is refused: {exc}", permanent=True) from exc
        except APIError as exc:
            client.close()
            raise ExecutorError(f"Cannot read service {name!r}: {_engine_answer(exc)}.") from exc
        except Exception as exc:  # requests' connection errors and timeouts
            client.close()
            raise ExecutorError(f"Cannot read service {name!r} from the Docker Engine: {type(exc).__name__}") from exc

    @staticmethod
    def _replicas(service) -> int:
        mode = service.attrs.get("Spec", {}).get("Mode", {})
        if "Replicated" not in mode:
            raise ExecutorError(
                f"Service {service.name!r} is not replicated (global services cannot be scaled).", permanent=True
            )
        return int(mode["Replicated"].get("Replicas", 0))

    def current(self) -> int:
        client, service = self._service()
        try:
            return self._replicas(service)
        finally:
            client.close()

    def scale_to(self, replicas: int) -> str:
        if replicas < 0:
            raise ExecutorError("Replicas cannot be negative.", permanent=True)
        client, service = self._service()
        try:
            before = self._replicas(service)
            try:
                service.scale(replicas)
            except Exception as exc:
                raise ExecutorError(f"Scaling service {service.name!r} failed: {_engine_answer(exc)}") from exc
        finally:
            client.close()
        return f"docker service {service.name} scaled {before} → {replicas}"


def _engine_answer(exc: Exception) -> str:
    """What went wrong, without the Engine's own text (an APIError's message quotes the response body)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status:
        return f"the Docker Engine answered {outbound.http_status_text(status)}"
    return type(exc).__name__
