"""Ledgerflow settings, read from the environment.

With no environment set, the platform runs on the embedded default: SQLite and
kombu's filesystem broker under ``LEDGERFLOW_DATA_DIR`` (``var/``), so
``make run`` needs no server. ``DATABASE_URL`` and ``REDIS_URL`` (or
``CELERY_BROKER_URL``) switch to PostgreSQL and Redis.
"""

import base64
import binascii
import datetime as dt
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_rate_limits, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("LEDGERFLOW_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _persisted_secret(filename: str, make) -> str:
    """A secret generated once per data directory, so restarts keep sessions.

    Web, worker and beat may start at once on a new data directory: each
    writes its candidate to a file of its own and links it into place, so the
    first link wins, nobody fails, and nobody reads a half-written file.
    """
    path = DATA_DIR / filename
    if not path.exists():
        candidate = DATA_DIR / f".{filename}.{os.getpid()}"
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass  # another process won; use its secret
        finally:
            candidate.unlink()
    return path.read_text().strip()


def _check_fernet_keys(keys: list[str]) -> list[str]:
    for index, key in enumerate(keys):
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ImproperlyConfigured(
                f"LEDGERFLOW_SECRET_KEYS entry {index + 1} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            )
    return keys


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or _persisted_secret(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
# Newest first; credentials are encrypted with the first and readable with any.
LEDGERFLOW_SECRET_KEYS = _check_fernet_keys(
    env_list("LEDGERFLOW_SECRET_KEYS")
    or [_persisted_secret("secret_keys", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode())]
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "csp",
    # django-ninja's own templates and static files: the API docs page is
    # served from here instead of a CDN.
    "ninja",
    "channels",
    "runs",
    "flows",
    "connectors",
    "connectors.credentials",
    "connectors.triggers",
    "approvals",
    "flows.alerts",
    "config.tokens",
]

# The demo: its connectors (payments, inventory, CPU work; fakeapi/connectors)
# are registered only when this is on. `make run`, `seed_demo`, the drills,
# the benchmarks and the tests turn it on; a deployment leaves it off, and a
# flow that names one of them shows it as not installed and does not start.
LEDGERFLOW_DEMO = env_bool("LEDGERFLOW_DEMO", False)
if LEDGERFLOW_DEMO:
    INSTALLED_APPS.append("fakeapi")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "config.staticfiles.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.badinput.BadInputMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.tokens.auth.ActingTokenMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as its documentation asks: it turns a lockout into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "config.roles.role_context",
                "approvals.context.inbox_badge",
                "runs.context.dead_letter_badge",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        if env_str("LEDGERFLOW_PROCESS") == "web":
            # Under ASGI every request makes its database calls on a thread
            # of its own, so a persistent connection would be stranded by
            # each request until PostgreSQL runs out of slots. The web
            # process borrows from a pool instead and gives the connection
            # back when the request ends; workers keep one connection each.
            DATABASES["default"]["CONN_MAX_AGE"] = 0
            DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
            DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
                "min_size": 1,
                "max_size": env_int("LEDGERFLOW_WEB_DB_POOL_SIZE", 20),
                "timeout": 10,
            }
else:
    # IMMEDIATE takes SQLite's writer lock when a transaction begins, so two
    # processes never both read then fail to upgrade to a write ("database is
    # locked"); WAL lets readers proceed while one process writes. Writers
    # queue on a file lock first (config/sqlite/base.py: woken in turn, not
    # by SQLite's sleep-and-retry); the timeout is for writes outside a
    # transaction.
    DATABASES = {
        "default": {
            "ENGINE": "config.sqlite",
            "NAME": DATA_DIR / "ledgerflow.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
            },
        }
    }
EMBEDDED = not DATABASE_URL
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, broker, channels -------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "control", "staging", "claimed"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport with atomic writes and claims
    # (config/broker.py): stock kombu lets a consumer read a file its writer
    # has not finished, and the worker dies of it.
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
    # A message is deleted when it is acknowledged; one held by a worker that
    # died is delivered again. The recovery sweep still covers what no
    # message can (a step whose lease ran out).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "staging_folder": str(BROKER_DIR / "staging"),
        "claimed_folder": str(BROKER_DIR / "claimed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
else:
    # A message not acknowledged within this window is redelivered by Redis;
    # it must exceed the longest task, and it is not the recovery path (the
    # sweep is), so it is generous.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# How long a delivery of alert mail holds its outbox row; a process that dies
# mid-send leaves it to the sweep after this (alerts/services.py).
LEDGERFLOW_ALERT_DELIVERY_LEASE_SECONDS = env_int("LEDGERFLOW_ALERT_DELIVERY_LEASE_SECONDS", 300)
# The recovery sweep's tick; the sweep also paces held steps due before the
# next tick (runs/sweeper.py).
LEDGERFLOW_SWEEP_SECONDS = env_int("LEDGERFLOW_SWEEP_SECONDS", 2)
CELERY_BEAT_SCHEDULE = {
    "recovery-sweep": {
        "task": "runs.tasks.sweep",
        "schedule": float(LEDGERFLOW_SWEEP_SECONDS),
    },
    # Reminders, escalations and the flow's policy after a missed SLA; the
    # task passes the clock's now to the sweep.
    "approvals-sla-sweep": {
        "task": "approvals.tasks.sweep_slas",
        "schedule": float(env_int("LEDGERFLOW_APPROVAL_SWEEP_SECONDS", 30)),
    },
    # Schedule fires and the purge of old webhook keys; the sweep decides,
    # beat only ticks it, so a second beat fires nothing twice.
    "trigger-sweep": {
        "task": "connectors.triggers.tasks.sweep",
        "schedule": float(env_int("LEDGERFLOW_TRIGGER_SWEEP_SECONDS", 5)),
    },
    # The audit chains, a bounded slice per tick from each stream's checkpoint.
    "audit-chain-verify": {
        "task": "runs.tasks.verify_chains",
        "schedule": float(env_int("LEDGERFLOW_CHAIN_VERIFY_SECONDS", 60)),
    },
    # Alert mail left undelivered (a lost message, a mail server down past
    # the task's retries) is re-enqueued a minute after it was written.
    "alert-outbox-sweep": {
        "task": "flows.alerts.tasks.sweep_outbox",
        "schedule": float(env_int("LEDGERFLOW_ALERT_SWEEP_SECONDS", 30)),
    },
    # Idempotency-Key answers past their 24 hours (config/tokens).
    "api-idempotency-purge": {
        "task": "config.tokens.tasks.forget_idempotent_answers",
        "schedule": 3600.0,
    },
    "heartbeat": {
        "task": "runs.tasks.record_heartbeat",
        "schedule": float(env_int("LEDGERFLOW_HEARTBEAT_SECONDS", 10)),
        "kwargs": {"process": "beat"},
    },
}

# A websocket consumer waits for its messages with a blocking pop that the
# Redis server answers, empty, after 5 s (channels_redis' brpop_timeout).
# redis-py 8 reads with a 5 s socket timeout by default: the client gave up
# at the moment the server answered, the consumer died and every live page's
# websocket closed every 5 s. Reads wait longer than that pop.
CHANNEL_LAYER_SOCKET_TIMEOUT = 15.0

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT}]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth -----------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "flows:inventory"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Login throttling (django-axes, config/throttle.py): an address is locked
# out after LEDGERFLOW_LOGIN_FAILURE_LIMIT failures within the cool-off; a
# username alone is only slowed, never locked, so nobody can lock the admin
# out from elsewhere. Addresses are the connection's own (REMOTE_ADDR).
AUTHENTICATION_BACKENDS = [
    # A token's scope bounds its user's role (config/tokens/auth.py).
    "config.tokens.auth.TokenScopeBackend",
    "config.throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LEDGERFLOW_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_int("LEDGERFLOW_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# A username with more failures than this (from any addresses) waits before
# each login, doubling from 0.25 s up to the cap.
LEDGERFLOW_LOGIN_SLOW_AFTER = env_int("LEDGERFLOW_LOGIN_SLOW_AFTER", 5)
LEDGERFLOW_LOGIN_MAX_DELAY_SECONDS = float(env_int("LEDGERFLOW_LOGIN_MAX_DELAY_SECONDS", 3))
# API writes (POST, PUT, PATCH, DELETE) per token, or per person for a
# browser's session, per minute (config/tokens/ratelimit.py): past it, 429
# with Retry-After. Counted in Redis, or in the database without it.
LEDGERFLOW_API_WRITES_PER_MINUTE = env_int("LEDGERFLOW_API_WRITES_PER_MINUTE", 120)
# How long an Idempotency-Key's answer is kept (config/tokens/idempotency.py).
LEDGERFLOW_IDEMPOTENCY_HOURS = env_int("LEDGERFLOW_IDEMPOTENCY_HOURS", 24)
SESSION_COOKIE_HTTPONLY = True
# Headers: no MIME sniffing, no referrer beyond this origin, never framed.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# A strict Content-Security-Policy (django-csp): scripts and styles only from
# static/ (no inline script, handler or style), nothing framed, forms post
# only here. htmx is configured by a meta tag not to eval (base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        # 'self' covers the approvals websocket (ws:/wss: on this host).
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- I18N, static -----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on a missing root
# Serve straight from the source folders: no collectstatic step for `make run`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Logging ----------------------------------------------------------------
# LOG_FORMAT=json writes one JSON object per line with the run, step and flow
# a line is about (config/logjson.py), for log pipelines; plain is for people.
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logjson.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "filters": {"routine_ticks": {"()": "config.logfilters.RoutineTicks"}},
    "loggers": {
        # django-axes logs every attempt at INFO; lockouts are audit events.
        "axes": {"level": env_str("AXES_LOG_LEVEL", "WARNING")},
        # Beat's ticks of the sweeps and heartbeat, and the worker's receipts
        # of them, stay out of the INFO log (config/logfilters.py).
        "celery.beat": {"filters": ["routine_ticks"]},
        "celery.worker.strategy": {"filters": ["routine_ticks"]},
        "celery.app.trace": {"filters": ["routine_ticks"]},
    },
}

# --- Metrics ----------------------------------------------------------------
# /metrics answers only with this bearer token (config/metrics.py); unset, it
# is off. Step figures observed by workers and web processes are summed from
# prometheus_client's multiprocess files; the folder is set here, before
# anything imports the library, and emptied by the launcher at start
# (config/settings_test.py gives each test session its own).
LEDGERFLOW_METRICS_TOKEN = env_str("LEDGERFLOW_METRICS_TOKEN")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "metrics"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# --- Ledgerflow -------------------------------------------------------------
# Days after which a flow's inventory review counts as overdue when it has no
# cadence of its own.
LEDGERFLOW_DEFAULT_REVIEW_DAYS = env_int("LEDGERFLOW_DEFAULT_REVIEW_DAYS", 90)
# Run engine. Pure steps run inline up to these budgets per transaction.
LEDGERFLOW_INLINE_STEP_BUDGET = env_int("LEDGERFLOW_INLINE_STEP_BUDGET", 50)
LEDGERFLOW_INLINE_TIME_BUDGET = env_int("LEDGERFLOW_INLINE_TIME_BUDGET_MS", 100) / 1000
# CPU time one render of a node's expressions may take (runs/expression_limits.py).
LEDGERFLOW_EXPRESSION_BUDGET_MS = env_int("LEDGERFLOW_EXPRESSION_BUDGET_MS", 100)
# A worker keeps executing its run's next step itself for this long.
LEDGERFLOW_EAGER_SECONDS = env_int("LEDGERFLOW_EAGER_MS", 2000) / 1000
# A scheduled step with no progress for this long had its message lost.
LEDGERFLOW_REDISPATCH_SECONDS = env_int("LEDGERFLOW_REDISPATCH_SECONDS", 30)
# A side-effecting step's lease is its connector's timeout plus this margin;
# the sweep re-runs (or dead-letters) a step whose lease ran out.
LEDGERFLOW_LEASE_MARGIN_SECONDS = env_int("LEDGERFLOW_LEASE_MARGIN_SECONDS", 30)
# FOR DRILLS AND THEIR TESTS ONLY, never in service: treat every step as safe
# to re-run, so a step whose outcome is unknown (its worker died mid-call, its
# request timed out after it was sent) is retried, which may repeat its effect.
# The drills switch it on to prove they would see the repeated effect.
LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS = env_bool("LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS", False)

# --- Approvals --------------------------------------------------------------
# How inbox pages learn of changes: "channels" (websocket over the Redis
# channel layer) needs a layer shared by web and worker processes, which only
# Redis gives; the embedded default polls with htmx instead.
LEDGERFLOW_LIVE_UPDATES = env_str("LEDGERFLOW_LIVE_UPDATES", "channels" if REDIS_URL else "polling")
if LEDGERFLOW_LIVE_UPDATES not in ("channels", "polling"):
    raise ImproperlyConfigured("LEDGERFLOW_LIVE_UPDATES must be channels or polling")
# Seconds between refreshes of a polling inbox and badge.
LEDGERFLOW_INBOX_POLL_SECONDS = env_int("LEDGERFLOW_INBOX_POLL_SECONDS", 3)
# Decide-by-email links expire: a week covers a reviewer's absence, and a
# leaked old email stops working.
LEDGERFLOW_APPROVAL_LINK_HOURS = env_int("LEDGERFLOW_APPROVAL_LINK_HOURS", 7 * 24)
# Links in emails are absolute; the web process cannot know its public name.
# Unset, they point at the port `make run` serves on (LEDGERFLOW_PORT).
LEDGERFLOW_BASE_URL = env_str(
    "LEDGERFLOW_BASE_URL", f"http://127.0.0.1:{env_int('LEDGERFLOW_PORT', 8000)}"
)
# Mail: printed to the console unless an SMTP server is configured, so
# `make run` needs none and shows the notifications it would send.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ledgerflow@localhost")
# Circuit breakers (connectors/outbound/breakers.py): a target's breaker opens after
# this many failed calls within the window, and lets one probe call through
# after the cool-down. Per node type overrides go in LEDGERFLOW_BREAKERS_BY_TYPE.
LEDGERFLOW_BREAKER_DEFAULTS = {
    "failures": env_int("LEDGERFLOW_BREAKER_FAILURES", 5),
    "window_seconds": env_int("LEDGERFLOW_BREAKER_WINDOW_SECONDS", 60),
    "cooldown_seconds": env_int("LEDGERFLOW_BREAKER_COOLDOWN_SECONDS", 30),
}
LEDGERFLOW_BREAKERS_BY_TYPE: dict[str, dict] = {}
# Steps held by an open breaker are released at most this many per second
# per target, so a recovering API is not hit by the whole backlog at once.
LEDGERFLOW_BREAKER_RELEASE_PER_SECOND = env_int("LEDGERFLOW_BREAKER_RELEASE_PER_SECOND", 5)
# While a probe call is in flight, other steps look again after this long.
LEDGERFLOW_BREAKER_RECHECK_SECONDS = env_int("LEDGERFLOW_BREAKER_RECHECK_SECONDS", 1)
# Breakers and rate limits are shared through Redis when there is one; with
# none (the embedded default) they live in the database.
LEDGERFLOW_BREAKER_REDIS_URL = env_str("LEDGERFLOW_BREAKER_REDIS_URL", REDIS_URL)
# Per-target token buckets, e.g. "api.example.com=10/20,credential:stripe=5"
# (calls per second / burst); targets not listed are not limited.
LEDGERFLOW_RATE_LIMITS = env_rate_limits("LEDGERFLOW_RATE_LIMITS")
# Connectors refuse private, loopback, link-local and other internal addresses
# (the metadata service, the database, the broker) so that a flow cannot reach
# the platform's own network; "host:port" entries here are let through (the
# demo's fake payments API, an internal service an admin chose to expose).
LEDGERFLOW_OUTBOUND_ALLOWLIST = env_list("LEDGERFLOW_OUTBOUND_ALLOWLIST")
# --- Triggers ---------------------------------------------------------------
# RabbitMQ for queue triggers and the Publish-to-queue connector. None (the
# embedded default): queue triggers are off and `consume_queues` idles.
RABBITMQ_URL = env_str("RABBITMQ_URL") or None
# Webhook idempotency keys are remembered this long (then purged by the
# trigger sweep); senders retry within hours, not days.
LEDGERFLOW_WEBHOOK_KEY_RETENTION_HOURS = env_int("LEDGERFLOW_WEBHOOK_KEY_RETENTION_HOURS", 72)
# The largest webhook body any flow may accept (a flow may set a lower one).
LEDGERFLOW_WEBHOOK_MAX_BODY_BYTES = env_int("LEDGERFLOW_WEBHOOK_MAX_BODY_BYTES", 1_048_576)
# A schedule fire found later than this is "missed" and follows the
# schedule's catch-up policy; sooner, it is simply on time.
LEDGERFLOW_SCHEDULE_GRACE_SECONDS = env_int("LEDGERFLOW_SCHEDULE_GRACE_SECONDS", 60)
# Event chains longer than this stop: flows answering each other's events
# would otherwise loop for ever.
LEDGERFLOW_EVENT_MAX_HOPS = env_int("LEDGERFLOW_EVENT_MAX_HOPS", 16)
