"""Perfpilot settings. Every value comes from the environment; see .env.example and the README.

With no DATABASE_URL or REDIS_URL, Perfpilot uses the embedded PostgreSQL and Redis that
`make run` starts under PERFPILOT_VAR_DIR; their passwords are generated there on first use.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import dj_database_url
from kombu import Exchange, Queue

from core.broker import AMQP_TRANSPORT_OPTIONS, broker_is_amqp
from core.env import (
    envbool,
    envchoice,
    envfloat,
    envint,
    envlist,
    envstr,
    read_or_create_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("PERFPILOT_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = envbool("PERFPILOT_DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY") or read_or_create_secret(VAR_DIR / "secrets" / "secret_key", nbytes=48)
SECRET_KEY_GENERATED = envstr("SECRET_KEY") is None
# Encrypts secrets stored in the database (target passwords); derived from SECRET_KEY when unset.
ENCRYPTION_KEY = envstr("PERFPILOT_ENCRYPTION_KEY")
ALLOWED_HOSTS = envlist("PERFPILOT_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("PERFPILOT_CSRF_TRUSTED_ORIGINS", [])
PUBLIC_URL = envstr("PERFPILOT_PUBLIC_URL", "http://localhost:8000")

# --- embedded servers (used only when the matching URL is not set) -------------------------
EMBEDDED_PG_PORT = envint("PERFPILOT_EMBEDDED_PG_PORT", 54329, minimum=1, maximum=65535)
EMBEDDED_REDIS_PORT = envint("PERFPILOT_EMBEDDED_REDIS_PORT", 63790, minimum=1, maximum=65535)
EMBEDDED_PG_DATABASE = "perfpilot"
EMBEDDED_PG_USER = "perfpilot"
# `make run` starts an embedded server again when it dies or is stopped; false leaves it stopped
# (e.g. to stop one by hand for maintenance while the rest keeps running and answers 503).
EMBEDDED_RESTART = envbool("PERFPILOT_EMBEDDED_RESTART", True)

_database_url = envstr("DATABASE_URL")
USE_EMBEDDED_POSTGRES = _database_url is None
if USE_EMBEDDED_POSTGRES:
    _pg_password = read_or_create_secret(VAR_DIR / "secrets" / "postgres_password")
    _database_url = (
        f"postgresql://{EMBEDDED_PG_USER}:{quote(_pg_password, safe='')}"
        f"@127.0.0.1:{EMBEDDED_PG_PORT}/{EMBEDDED_PG_DATABASE}"
    )
DATABASE_URL = _database_url

_redis_url = envstr("REDIS_URL")
USE_EMBEDDED_REDIS = _redis_url is None
if USE_EMBEDDED_REDIS:
    _redis_password = read_or_create_secret(VAR_DIR / "secrets" / "redis_password")
    _redis_url = f"redis://:{quote(_redis_password, safe='')}@127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
REDIS_URL = _redis_url

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=envint("PERFPILOT_DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", envint("PERFPILOT_DB_CONNECT_TIMEOUT", 5, minimum=1))
DATABASES["default"]["TEST"] = {"NAME": envstr("PERFPILOT_TEST_DATABASE_NAME", "test_perfpilot")}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.forms",  # its widget templates, for FORM_RENDERER below
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "ninja",
    "axes",
    "csp",
    "core.apps.CoreConfig",
    "monitoring.apps.MonitoringConfig",
    "optimizer.apps.OptimizerConfig",
    "scaling.apps.ScalingConfig",
    "alerts.apps.AlertsConfig",
]

MIDDLEWARE = [
    "core.metrics.RequestMetricsMiddleware",
    "core.bodylimit.RequestBodyLimitMiddleware",  # 413 before anything reads an oversized body
    # PostgreSQL or Redis down: a 503 naming it, in the door's format, never a 500 (core/outages.py).
    "core.middleware.OutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.compression.PageGZipMiddleware",  # HTML pages only; below whitenoise, which serves static files
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

# Widgets render through the project's template engine, so a widget's template may live in templates/
# and use its tags ({% url %} in monitoring/_target_picker_input.html).
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.perfpilot",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Login throttling (the login form and the admin login): after this many failures in a row for one user name
# from one address, logins for it are refused (429) until the lockout time has passed; a success resets it.
AXES_FAILURE_LIMIT = envint("PERFPILOT_LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(minutes=envint("PERFPILOT_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("PERFPILOT_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_AGE = envint("PERFPILOT_SESSION_AGE_SECONDS", 14 * 24 * 3600, minimum=300)

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("PERFPILOT_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]
# collectstatic (run by bootstrap) writes every file also under a content-hashed name, with gzip
# copies, and {% static %} links the hashed names. Whitenoise serves a hashed name with
# "max-age=315360000, immutable" (a changed file gets a new name); only a file asked for by its plain
# name gets WHITENOISE_MAX_AGE, kept short because that name does not change with its content.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_MAX_AGE = 60
WHITENOISE_USE_FINDERS = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Request bodies (core/bodylimit.py answers 413 past them): every endpoint takes up to
# PERFPILOT_MAX_REQUEST_BYTES; push ingestion, batches of 100,000+ samples in one JSON body, up to
# PERFPILOT_MAX_INGEST_BYTES. Django's own limit is the larger, so ours always answers first.
PERFPILOT_MAX_REQUEST_BYTES = envint("PERFPILOT_MAX_REQUEST_BYTES", 1024 * 1024, minimum=64 * 1024)
PERFPILOT_MAX_INGEST_BYTES = envint("PERFPILOT_MAX_INGEST_BYTES", 32 * 1024 * 1024, minimum=1024 * 1024)
REQUEST_BODY_LIMITS = {
    "/api/v1/metrics": PERFPILOT_MAX_INGEST_BYTES,
    # Protocol receivers (monitoring/protocols/); a compressed body may also expand to at most this much.
    "/prometheus/api/v1/write": PERFPILOT_MAX_INGEST_BYTES,
    "/otlp/v1/metrics": PERFPILOT_MAX_INGEST_BYTES,
}
DATA_UPLOAD_MAX_MEMORY_SIZE = max(PERFPILOT_MAX_REQUEST_BYTES, PERFPILOT_MAX_INGEST_BYTES)

# Django's cache lives in Redis; callers treat it as best effort so a Redis outage never
# takes the web process down.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "perfpilot",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = envstr("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = "default"
# One queue per kind of work, so workers can be scaled out by queue (see README).
TASK_QUEUES = ("default", "collect", "maintenance", "notify", "scale")
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name), routing_key=name) for name in TASK_QUEUES)
CELERY_TASK_ROUTES = {
    # Storage upkeep must not take the slots that keep collections on time.
    "monitoring.tasks.rollup_task": {"queue": "maintenance"},
    "monitoring.tasks.retention_task": {"queue": "maintenance"},
    "monitoring.*": {"queue": "collect"},
    "optimizer.*": {"queue": "maintenance"},
    "alerts.*": {"queue": "notify"},
    "scaling.*": {"queue": "scale"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = envint("PERFPILOT_TASK_TIME_LIMIT", 1800, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker outage is waited out, however long: retry the connection for ever (Celery gives up
# after 100 attempts and the worker exits), also after channel errors such as bindings lost in
# a Redis restart (Celery counts those unrecoverable unless told), and keep a task that runs
# meanwhile running (its late ack is redelivered if it cannot be sent).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Publishing a task is bounded (core/queueing.py): a broker that is down or stalled answers within
# these seconds per try, so a request that queues work never hangs on it.
CELERY_BROKER_CONNECTION_TIMEOUT = 3
if broker_is_amqp(CELERY_BROKER_URL):
    # RabbitMQ (core/broker.py): publisher confirms, and socket timeouts bounding each publish.
    # Unacknowledged messages return to the queue when the worker's connection closes, so there is
    # no visibility timeout; RabbitMQ's consumer_timeout must exceed the task time limit (README).
    CELERY_BROKER_TRANSPORT_OPTIONS = dict(AMQP_TRANSPORT_OPTIONS)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_TASK_TIME_LIMIT + 60,
        "socket_connect_timeout": 3,
        "socket_timeout": 5,
        "health_check_interval": 10,
    }
# A result written while Redis is down is retried until it is back instead of failing the task.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 30
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 10
CELERY_BEAT_SCHEDULER = "core.beat.HeartbeatScheduler"
# The built-in beat entries (synced once on start; then the user's to edit), plus those the
# plug-ins declare in the registry (each tuner's own schedule).
DEFAULT_SCHEDULES = "config.beat_schedule.DEFAULT_SCHEDULES"
# Write each schedule's last run to the database as soon as its task is sent (Celery's default is
# every 3 minutes): a beat that is restarted or killed must not send the same run again.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False

# --- outbound connections (core/outbound.py; docs/operations.md, "Security model") ---------------
# Link-local and cloud metadata addresses are always refused. These refine the rest: comma-separated
# CIDRs or the keywords loopback, private, unix, all; an address in ALLOW is allowed even if DENY
# names it. Empty (the default) allows private, loopback and Unix-socket targets, for self-hosting.
OUTBOUND_DENY = envlist("PERFPILOT_OUTBOUND_DENY", [])
OUTBOUND_ALLOW = envlist("PERFPILOT_OUTBOUND_ALLOW", [])

# --- monitoring ------------------------------------------------------------------------------
RETENTION_RAW_DAYS = envint("PERFPILOT_RETENTION_RAW_DAYS", 7, minimum=1)
RETENTION_1M_DAYS = envint("PERFPILOT_RETENTION_1M_DAYS", 90, minimum=1)
RETENTION_1H_DAYS = envint("PERFPILOT_RETENTION_1H_DAYS", 730, minimum=1)
# Cheap collections (Prometheus scrapes, Redis INFO, Celery) of one collector group are sent as one
# task per batch of this many targets and run on this many threads inside it (monitoring/services/
# scheduling.py): the per-task overhead is paid once per batch, and a slow target delays no other.
COLLECT_BATCH_SIZE = envint("PERFPILOT_COLLECT_BATCH_SIZE", 50, minimum=1, maximum=1000)
COLLECT_THREADS = envint("PERFPILOT_COLLECT_THREADS", 8, minimum=1, maximum=64)
# Kept connections to targets (monitoring/collectors/kept.py) per worker process, over all targets:
# past this, the least recently used one is closed.
COLLECTOR_MAX_CONNECTIONS = envint("PERFPILOT_COLLECTOR_MAX_CONNECTIONS", 200, minimum=1, maximum=100_000)
# Series ids each process remembers (monitoring/storage.py), about 200 bytes each: it should hold every
# series the process writes (targets x series per target), or each collection looks its series up again.
SERIES_CACHE_SIZE = envint("PERFPILOT_SERIES_CACHE_SIZE", 1_000_000, minimum=1000, maximum=100_000_000)
# Remote-write forwarding (monitoring/services/forwarding.py): every sample stored while the URL is set is
# sent on to a Prometheus remote-write endpoint (Mimir, VictoriaMetrics, Thanos, Prometheus); empty: off.
FORWARD_REMOTE_WRITE_URL = envstr("PERFPILOT_FORWARD_REMOTE_WRITE_URL", "") or ""
FORWARD_REMOTE_WRITE_TOKEN = envstr("PERFPILOT_FORWARD_REMOTE_WRITE_TOKEN", "") or ""  # Bearer; or _FILE
FORWARD_REMOTE_WRITE_USER = envstr("PERFPILOT_FORWARD_REMOTE_WRITE_USER", "") or ""  # Basic, with _PASSWORD
FORWARD_REMOTE_WRITE_PASSWORD = envstr("PERFPILOT_FORWARD_REMOTE_WRITE_PASSWORD", "") or ""
FORWARD_BATCH_SAMPLES = envint("PERFPILOT_FORWARD_BATCH_SAMPLES", 2000, minimum=1, maximum=100_000)
FORWARD_TIMEOUT_SECONDS = envfloat("PERFPILOT_FORWARD_TIMEOUT", 30.0, minimum=1.0)
FORWARD_RETRY_BASE_SECONDS = envfloat("PERFPILOT_FORWARD_RETRY_BASE_SECONDS", 1.0, minimum=0.0)
FORWARD_RETRY_CAP_SECONDS = envfloat("PERFPILOT_FORWARD_RETRY_CAP_SECONDS", 300.0, minimum=0.0)
# Samples the queue may hold while the remote end is away; past it the oldest are dropped (and counted).
FORWARD_MAX_QUEUE = envint("PERFPILOT_FORWARD_MAX_QUEUE", 50_000_000, minimum=1000)
# The Prometheus query API (monitoring/promql/): like Prometheus's --query.timeout and --query.max-samples,
# a query's reads of the samples stop after this long (503 "timeout"), and a selector may load at most
# this many series (422 "execution"), so one query cannot hold a web worker or its memory.
PROMQL_TIMEOUT_SECONDS = envint("PERFPILOT_PROMQL_TIMEOUT", 30, minimum=1, maximum=600)
PROMQL_MAX_SERIES = envint("PERFPILOT_PROMQL_MAX_SERIES", 20_000, minimum=100)

# --- optimizer -------------------------------------------------------------------------------
# Reads of a tuner's analysis and the actions it runs (VACUUM, CREATE INDEX CONCURRENTLY) are bounded apart.
OPTIMIZER_STATEMENT_TIMEOUT_SECONDS = envint("PERFPILOT_OPTIMIZER_STATEMENT_TIMEOUT", 30, minimum=1)
OPTIMIZER_ACTION_TIMEOUT_SECONDS = envint("PERFPILOT_OPTIMIZER_ACTION_TIMEOUT", 3600, minimum=1)
OPTIMIZER_LOCK_TIMEOUT_SECONDS = envint("PERFPILOT_OPTIMIZER_LOCK_TIMEOUT", 5, minimum=1)
# "HH:MM-HH:MM" (server time zone) when tuners may change targets; empty means any time.
OPTIMIZER_MAINTENANCE_WINDOW = envstr("PERFPILOT_OPTIMIZER_MAINTENANCE_WINDOW", "")
# A running run's worker writes a heartbeat every few seconds; the reaper (beat, every 30 s) ends a
# run as "interrupted" once its heartbeat is this old and its lock owner is gone (at once when the
# owner is a process of this host that no longer exists).
OPTIMIZER_RUN_STALE_SECONDS = envint("PERFPILOT_OPTIMIZER_RUN_STALE", 60, minimum=15)
# A pending run that no task has touched for this long (its task was lost, or never queued) is
# ended as "interrupted"; runs waiting behind another run's lock touch it at every retry.
OPTIMIZER_PENDING_TIMEOUT_SECONDS = envint("PERFPILOT_OPTIMIZER_PENDING_TIMEOUT", 900, minimum=60)
# Operators may end a target's backend from the Live activity page (pg_terminate_backend); False
# leaves them only cancelling queries (pg_cancel_backend), which never closes a client's connection.
OPTIMIZER_ALLOW_TERMINATE = envbool("PERFPILOT_ALLOW_TERMINATE", True)
# The space tuner (optimizer/tuners/space.py): a relation is advised when its bloat is at least this
# percent of its own size AND at least this many MB (REINDEX CONCURRENTLY for a btree index, VACUUM for a
# table); pgstattuple measures the largest ones exactly where it is installed. Daily sizes are kept this long.
SPACE_BLOAT_PERCENT = envfloat("PERFPILOT_SPACE_BLOAT_PERCENT", 30.0, minimum=1.0, maximum=99.0)
SPACE_BLOAT_MIN_MB = envint("PERFPILOT_SPACE_BLOAT_MIN_MB", 100, minimum=0)
SPACE_PGSTATTUPLE_RELATIONS = envint("PERFPILOT_SPACE_PGSTATTUPLE_RELATIONS", 20, minimum=0, maximum=1000)
SPACE_RETENTION_DAYS = envint("PERFPILOT_SPACE_RETENTION_DAYS", 400, minimum=30)
# EXPLAIN ANALYZE runs the query on the target (inside a transaction always rolled back): at most this
# long, and an operator may ask for less per run.
EXPLAIN_ANALYZE_TIMEOUT_SECONDS = envint("PERFPILOT_EXPLAIN_ANALYZE_TIMEOUT", 60, minimum=1, maximum=3600)
# A query whose generic plan changed is a plan regression when its mean time since the change is this
# many percent above its mean before it.
PLAN_REGRESSION_THRESHOLD_PERCENT = envfloat("PERFPILOT_PLAN_REGRESSION_THRESHOLD", 50.0, minimum=0.0)
# --- scaling ---------------------------------------------------------------------------------
# How often beat evaluates every scaled service (the HPA's sync period is 15 s too).
SCALING_INTERVAL_SECONDS = envint("PERFPILOT_SCALING_INTERVAL", 15, minimum=1, maximum=3600)
# Shell-command executors run programs on the worker's host: off unless an admin turns them on.
SCALING_SHELL_ENABLED = envbool("PERFPILOT_SCALING_SHELL_ENABLED", False)
SCALING_DECISION_RETENTION_DAYS = envint("PERFPILOT_SCALING_DECISION_RETENTION_DAYS", 14, minimum=1)
# --- alerts ----------------------------------------------------------------------------------
# Notification delivery: retries back off exponentially from the base to the cap (with jitter); a
# claim older than the claim timeout belongs to a dead worker and is handed out again.
ALERTS_RETRY_BASE_SECONDS = envfloat("PERFPILOT_ALERTS_RETRY_BASE_SECONDS", 2.0, minimum=0.1)
ALERTS_RETRY_CAP_SECONDS = envfloat("PERFPILOT_ALERTS_RETRY_CAP_SECONDS", 30.0, minimum=1.0)
ALERTS_CLAIM_TIMEOUT_SECONDS = envfloat("PERFPILOT_ALERTS_CLAIM_TIMEOUT", 60.0, minimum=5.0)
ALERTS_HTTP_TIMEOUT_SECONDS = envfloat("PERFPILOT_ALERTS_HTTP_TIMEOUT", 10.0, minimum=0.5, maximum=60.0)
ALERTS_RATE_PER_SECOND = envfloat("PERFPILOT_ALERTS_RATE_PER_SECOND", 1.0, minimum=0.01, maximum=1.0)
ALERTS_MAX_DELIVERY_HOURS = envfloat("PERFPILOT_ALERTS_MAX_DELIVERY_HOURS", 24.0, minimum=0.1)

# --- control-plane health ---------------------------------------------------------------------
HEARTBEAT_INTERVAL_SECONDS = envfloat("PERFPILOT_HEARTBEAT_INTERVAL", 5.0, minimum=0.5)
HEARTBEAT_STALE_SECONDS = envfloat("PERFPILOT_HEARTBEAT_STALE_SECONDS", 30.0, minimum=1.0)
HEALTH_CHECK_TIMEOUT_SECONDS = envfloat("PERFPILOT_HEALTH_TIMEOUT", 2.0, minimum=0.1)
METRICS_PUBLIC = envbool("PERFPILOT_METRICS_PUBLIC", False)
API_TOKEN_TOUCH_SECONDS = envint("PERFPILOT_API_TOKEN_TOUCH_SECONDS", 60, minimum=0)

# --- first start ------------------------------------------------------------------------------
OPERATOR_USERNAME = envstr("PERFPILOT_OPERATOR_USERNAME", "operator")
OPERATOR_EMAIL = envstr("PERFPILOT_OPERATOR_EMAIL", "")
OPERATOR_PASSWORD = envstr("PERFPILOT_OPERATOR_PASSWORD")

# --- processes started by `make run` ----------------------------------------------------------
WEB_BIND = envstr("PERFPILOT_BIND", "127.0.0.1:8000")
WEB_WORKERS = envint("PERFPILOT_WEB_WORKERS", 2, minimum=1, maximum=64)
WEB_THREADS = envint("PERFPILOT_WEB_THREADS", 4, minimum=1, maximum=64)
# Open connections one web worker takes at most. gunicorn's default (1,000) lets the first worker to
# wake accept a whole burst of keep-alive clients and leave the other idle; a few per thread keeps
# them spread over the workers (a further client waits in the backlog until one closes).
WEB_CONNECTIONS = envint("PERFPILOT_WEB_CONNECTIONS", 16, minimum=1, maximum=10_000)
WORKER_CONCURRENCY = envint("PERFPILOT_WORKER_CONCURRENCY", 2, minimum=1, maximum=256)
LOG_LEVEL = envchoice("PERFPILOT_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "quiet_ticks": {"()": "core.logfilters.QuietFrequentTicks"},
        "outage_lines": {"()": "core.logfilters.OutageLines"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["quiet_ticks", "outage_lines"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # django-axes logs every sign-in at INFO; failures are in the audit log, and its warnings still show.
    "loggers": {"django.db.backends": {"level": "INFO"}, "axes": {"level": "WARNING"}},
}

# Content-Security-Policy on every response (django-csp): scripts only from our own origin, none inline
# (no inline event handlers either: static/js/shell.js wires them); styles may be inline because plotly
# draws its charts with style attributes; images also from data:/blob: (plotly's PNG export).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    SECURE_REFERRER_POLICY = "same-origin"
