"""Shared fixtures: real servers, a real Celery worker, beat and scheduler, and users for each role.

The session starts the embedded PostgreSQL and Redis of config.settings_test (under var/test,
on their own ports) unless DATABASE_URL / REDIS_URL point elsewhere, and stops what it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from core.embedded import embedded_servers_from_settings
from core.roles import ADMIN, OPERATOR, VIEWER, user_set_role
from core.services import api_token_create
from core.supervisor import stop_process_group
from monitoring import storage

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
PASSWORD = "correct-horse-battery"
_started_servers = []


def pytest_sessionstart(session):
    for server in embedded_servers_from_settings():
        if server is not None and server.start():
            _started_servers.append(server)


def pytest_sessionfinish(session, exitstatus):
    for server in reversed(_started_servers):
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def _test_database_released(django_db_setup, django_db_blocker):
    """Close what still holds the test database (live-server threads, worker processes) before
    pytest-django drops it, so the next run starts from a fresh one without a warning."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _fresh_status():
    """The status API remembers its checks for a second per process: no test sees another's."""
    from core.health import status_cache_clear

    status_cache_clear()
    yield
    status_cache_clear()


# --- users and clients ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prometheus_start(tmp_path: Path, config: str, *flags: str) -> tuple[subprocess.Popen, int]:
    """Debian's Prometheus 2.42 with this prometheus.yml, a data directory and its log
    (prometheus.log) under tmp_path, on a free loopback port: (process, port). The caller stops it."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("Debian's prometheus package (2.42) is needed: /usr/bin/prometheus")
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    return process, port


def prometheus_ready(tmp_path: Path, config: str, *flags: str) -> tuple[subprocess.Popen, str]:
    """prometheus_start, then wait (up to 20 s) until it answers /-/ready: (process, base URL)."""
    process, port = prometheus_start(tmp_path, config, *flags)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            pass
        assert time.monotonic() < deadline, "Prometheus did not become ready in 20 s"
        time.sleep(0.2)


def prometheus_receiving(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A Prometheus with its remote-write receiver on and nothing scraped, once ready: (process, base URL).
    Feed it with prometheus_remote_write. The caller stops it."""
    return prometheus_ready(tmp_path, "global: {scrape_interval: 1h}\n", "--web.enable-remote-write-receiver")


def prometheus_remote_write(url: str, series: list) -> None:
    """[(labels with __name__, [(value, t ms)])] into the Prometheus at `url` by remote write."""
    from monitoring.protocols.remote_write import write_request_encode

    request = urllib.request.Request(
        f"{url}/api/v1/write",
        data=write_request_encode(series),
        headers={
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def perfpilot_remote_write(client: Client, auth: dict, series: list) -> None:
    """The same series into Perfpilot through its remote-write receiver (the ingest path Prometheus uses)."""
    from monitoring.protocols.remote_write import write_request_encode

    response = client.post(
        "/prometheus/api/v1/write",
        write_request_encode(series),
        content_type="application/x-protobuf",
        HTTP_CONTENT_ENCODING="snappy",
        **auth,
    )
    assert response.status_code == 204, response.content


class RunningPrometheus:
    """A real Prometheus 2.42 taking remote-written samples (the `real_prometheus` fixture)."""

    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url

    def write(self, series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> None:
        """Remote-write [(labels with __name__, [(value, t ms)])] into it."""
        prometheus_remote_write(self.url, series)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def real_prometheus(tmp_path):
    running = RunningPrometheus(*prometheus_receiving(tmp_path))
    yield running
    running.stop()


def _make_user(username: str, role: str):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    user_set_role(user=user, role=role)
    return user


@pytest.fixture
def admin_user(db):
    return _make_user("ada-admin", ADMIN)


@pytest.fixture
def operator_user(db):
    return _make_user("oscar-operator", OPERATOR)


@pytest.fixture
def viewer_user(db):
    return _make_user("vera-viewer", VIEWER)


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user) -> Client:
    return _client_for(admin_user)


@pytest.fixture
def operator_client(operator_user) -> Client:
    return _client_for(operator_user)


@pytest.fixture
def viewer_client(viewer_user) -> Client:
    return _client_for(viewer_user)


@pytest.fixture
def anonymous_client() -> Client:
    return Client()


def _bearer(user) -> dict:
    raw = api_token_create(user=user, name="test", via="command").raw
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def operator_auth(operator_user) -> dict:
    """Request headers carrying an operator's API token."""
    return _bearer(operator_user)


@pytest.fixture
def viewer_auth(viewer_user) -> dict:
    return _bearer(viewer_user)


# --- sample storage ---------------------------------------------------------------------------


def _reset_storage() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'monitoring_sample'"
        )
        for (partition,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE IF EXISTS "{partition}"')
        cursor.execute("TRUNCATE monitoring_rollup_1m, monitoring_rollup_1h")
    storage.sample_partitions_forget()
    storage.series_cache.clear()


@pytest.fixture
def clean_samples(transactional_db):
    """Samples live in partitions created by DDL outside the ORM: start and end with none."""
    _reset_storage()
    yield
    _reset_storage()


# --- real Celery processes --------------------------------------------------------------------


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    from urllib.parse import quote

    password = quote(db["PASSWORD"] or "", safe="")
    return f"postgresql://{quote(db['USER'])}:{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _spawn(
    argv: list[str], log_name: str, *, command: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Path]:
    """`celery -A config ARGV` (or `command`) on the test database and Redis, logging to ARTIFACTS."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / log_name
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        **(env or {}),
    }
    log = log_path.open("w")
    process = subprocess.Popen(
        command or [sys.executable, "-m", "celery", "-A", "config", *argv],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log_path


def _wait_for(predicate, *, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up; its log ({log}):\n{log.read_text()[-3000:]}")


def _start_worker(name: str, log_name: str, *, concurrency: int, env: dict[str, str] | None = None):
    from core.heartbeat import worker_heartbeats

    process, log = _spawn(
        [
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--queues",
            ",".join(settings.TASK_QUEUES),
            "--hostname",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        log_name,
        env=env,
    )
    _wait_for(
        lambda: any(b.name.startswith(f"{name}@") for b in worker_heartbeats()),
        timeout=60,
        what=f"the Celery worker {name}",
        process=process,
        log=log,
    )
    return process


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """A real `celery worker` process on the test database and Redis, for the whole session."""
    with django_db_blocker.unblock():
        process = _start_worker(f"pytest-{os.getpid()}", "celery-worker.log", concurrency=2)
    yield process
    stop_process_group(process)


# --- RabbitMQ as the broker -------------------------------------------------------------------

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def rabbitmq_url():
    """An AMQP broker URL on the machine's RabbitMQ, in a virtual host of this session's own (its
    queues cannot meet another run's workers), deleted with everything in it at the end."""
    import shutil

    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        pytest.skip("RabbitMQ tests need rabbitmqctl as root (to give the session its own virtual host)")
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    vhost = f"perfpilot-test-{os.getpid()}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{RABBITMQ_URL}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def celery_worker_process_amqp(django_db_setup, django_db_blocker, rabbitmq_url):
    """A second real worker, taking its tasks from RabbitMQ (results and heartbeats still in Redis)."""
    with django_db_blocker.unblock():
        process = _start_worker(
            f"pytest-amqp-{os.getpid()}",
            "celery-worker-amqp.log",
            concurrency=1,
            env={"CELERY_BROKER_URL": rabbitmq_url},
        )
    yield process
    stop_process_group(process)


@contextlib.contextmanager
def publishing_to(url: str):
    """The test process's Celery app publishing to another broker for a while."""
    from celery import current_app

    app = current_app
    saved = (app.conf.broker_url, app.conf.broker_transport_options, app._pool, app.amqp._producer_pool)
    app.conf.broker_url = url
    if url.startswith("amqp"):
        from core.broker import AMQP_TRANSPORT_OPTIONS

        app.conf.broker_transport_options = dict(AMQP_TRANSPORT_OPTIONS)
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield url
    finally:
        # kombu keeps producer and connection pools per broker in process-wide registries: close
        # and forget this broker's, or the next test on the same URL would get closed ones.
        from kombu import pools
        from kombu.utils.collections import eqhash

        key = eqhash(app.connection_for_write())
        for group in (pools.producers, pools.connections):
            pool = dict.pop(group, key, None)
            if pool is not None:
                pool.force_close_all()
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app.conf.broker_transport_options, app._pool, app.amqp._producer_pool = saved


@pytest.fixture
def amqp_broker(rabbitmq_url):
    """This process publishes to the session's RabbitMQ virtual host (as CELERY_BROKER_URL=amqp://…)."""
    with publishing_to(rabbitmq_url) as url:
        yield url


@pytest.fixture
def amqp_broker_down():
    """This process's broker is a RabbitMQ URL on a port nothing listens on."""
    with publishing_to(f"amqp://guest:guest@127.0.0.1:{free_port()}//") as url:
        yield url


@pytest.fixture(scope="session")
def celery_beat_process(django_db_setup, django_db_blocker):
    """A real `celery beat` process (DatabaseScheduler) on the test database."""
    from core.heartbeat import beat_heartbeat

    with django_db_blocker.unblock():
        process, log = _spawn(["beat", "--loglevel", "INFO", "--pidfile="], "celery-beat.log")
    started = time.time()
    _wait_for(
        lambda: (b := beat_heartbeat()) is not None and b.seen_at >= started,
        timeout=60,
        what="Celery beat",
        process=process,
        log=log,
    )
    yield process
    stop_process_group(process)


@pytest.fixture
def scheduler_process(django_db_setup, django_db_blocker):
    """A real `manage.py run_scheduler` process on the test database and broker, for one test: left
    running, it would claim the due targets of every later test (tests/monitoring/test_scheduling.py
    claims its own)."""
    from core.heartbeat import scheduler_heartbeats

    with django_db_blocker.unblock():
        process, log = _spawn([], "scheduler.log", command=[sys.executable, str(ROOT / "manage.py"), "run_scheduler"])
    _wait_for(
        lambda: any(b.name.endswith(f":{process.pid}") for b in scheduler_heartbeats()),
        timeout=60,
        what="the scheduler",
        process=process,
        log=log,
    )
    yield process
    stop_process_group(process)


@pytest.fixture(scope="session")
def web_server_url(django_db_setup, django_db_blocker) -> str:
    """gunicorn as `make run` starts it (core.supervisor.gunicorn_command) on a free port, on the
    test database and Redis, for the whole session. Tests that use it write through
    transactional_db, so the server sees what they create."""
    import http.client

    from core.supervisor import gunicorn_command

    port = free_port()
    with django_db_blocker.unblock():
        process, log = _spawn([], "gunicorn.log", command=gunicorn_command(bind=f"127.0.0.1:{port}"))

    def serving() -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    _wait_for(serving, timeout=60, what="gunicorn", process=process, log=log)
    yield f"http://127.0.0.1:{port}"
    stop_process_group(process)


def control_plane_env(var: Path, web_port: int, **extra: str) -> dict[str, str]:
    """The environment of a `run_control_plane` started by a test: its own data dir and free ports,
    fast heartbeats, one web and one worker process, and what the test adds."""
    return {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PERFPILOT_VAR_DIR": str(var),
        "PERFPILOT_BIND": f"127.0.0.1:{web_port}",
        "PERFPILOT_EMBEDDED_PG_PORT": str(free_port()),
        "PERFPILOT_EMBEDDED_REDIS_PORT": str(free_port()),
        "PERFPILOT_HEARTBEAT_INTERVAL": "1",
        "PERFPILOT_WEB_WORKERS": "1",
        "PERFPILOT_WORKER_CONCURRENCY": "1",
        **extra,
    }


def control_plane_spawn(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`manage.py run_control_plane` in its own session, its output appended to `log`."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_control_plane"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_control_plane(process: subprocess.Popen, env: dict[str, str]) -> None:
    """Ctrl-C a `run_control_plane` started by a test; if it does not stop within 90 s, kill it and
    everything it started (children run in their own sessions, the embedded servers as daemons),
    then raise: the test fails, but leaves nothing running."""
    import psutil

    from core.embedded import EmbeddedPostgres, EmbeddedRedis

    descendants = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    try:
        process.wait(90)
    except subprocess.TimeoutExpired:
        for child in [*descendants, psutil.Process(process.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait()
        var_dir = Path(env["PERFPILOT_VAR_DIR"])
        secrets = var_dir / "secrets"
        with contextlib.suppress(Exception):
            redis_password = (secrets / "redis_password").read_text().strip()
            port = int(env["PERFPILOT_EMBEDDED_REDIS_PORT"])
            EmbeddedRedis(root=var_dir / "redis", port=port, password=redis_password).stop()
        with contextlib.suppress(Exception):
            pg_password = (secrets / "postgres_password").read_text().strip()
            port = int(env["PERFPILOT_EMBEDDED_PG_PORT"])
            EmbeddedPostgres(root=var_dir / "postgres", port=port, user="", password=pg_password, database="").stop()
        raise


@pytest.fixture
def broker_down():
    """The test process's Celery broker pointed at a port nothing listens on (the session's Redis
    stays up for everything else): publishing meets a real refused connection."""
    with publishing_to(f"redis://127.0.0.1:{free_port()}/0"):
        yield
