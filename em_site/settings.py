"""Settings for EM Audit.

Every deployment knob is an environment variable with a default that runs the embedded
setup (SQLite + a server-less Celery broker under var/). DEBUG is off unless DEBUG=true is set.
Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY, ALLOWED_HOSTS and, behind its TLS proxy,
the HTTPS settings below (README, "Configuration"; tests/security/test_deploy_settings.py checks them).
"""

import secrets
import sys
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from em_site.broker import is_serverless, serverless_options, transport_for

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
VAR_DIR = Path(env.str("EM_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Off unless asked for: a debug page shows settings and source to whoever triggers an error.
DEBUG = env.bool("DEBUG", default=False)


def _secret_key() -> str:
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    # Embedded default: generate once and keep it, so sessions survive restarts. Several machines serving
    # one site must share a key, so production sets SECRET_KEY (docker-compose.yml refuses to start without).
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.postgres",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "transcripts",
    "judging",
    "analysis",
    "em_site",
    "discovery",
    "browse",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless its view is explicitly marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Free-text "more like this" counts against the user of the request (docs/discovery.md, throttling).
    "discovery.throttle.TextSearchUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: turns a login refused because of the lock-out into the "Account locked" response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "em_site.urls"
WSGI_APPLICATION = "em_site.wsgi.application"

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
                "csp.context_processors.nonce",
                "transcripts.access.roles",
            ],
        },
    },
]

# Reports that cost more than a page may spend (bootstraps, judge-vs-judge figures) are computed by a Celery
# worker and read by the web processes (judging/reports.py), so the cache must be one they share: by default a
# table of the database (created by migrate, see judging/apps.py), so the embedded default and the test suite
# need no server and each database has its own; docker-compose.yml sets CACHE_URL=redis://… for production.
CACHES = {"default": env.cache_url("CACHE_URL", default="dbcache://em_cache")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache":
    # Past MAX_ENTRIES (default 300) each write deletes a third of the entries, current reports included.
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 100_000)

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE takes the write lock at
    # BEGIN so slot claims never fail half-way with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif env.int("DATABASE_POOL_SIZE", default=0):
    # A worker with hundreds of threads: each thread gives its connection back while it waits on a model
    # server (transcripts/engine/), so a small pool serves them all (PostgreSQL allows 100 by default).
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 2, "max_size": env.int("DATABASE_POOL_SIZE"), "timeout": 120},
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed logins (login page, admin login, token endpoint) lock one account name from one client address for
# AXES_COOLOFF_TIME, even with the right password (em_site/auth.py). Only the pair: a lock on the name alone
# would let anyone lock its owner out from everywhere, a lock on the address alone every account behind one
# NAT (docs/security.md says what this costs). A successful login clears the failures of its own pair only,
# never another account's. An admin unlocks early with `manage.py axes_reset_username NAME`.
AUTHENTICATION_BACKENDS = ["em_site.auth.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "em_site.auth.client_ip"
AXES_RESET_ON_SUCCESS = True
# Attempts during the lock-out get the "Account locked" answer (axes only flags them when this is off).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# API tokens are refused (and deleted) once this old; POST /api/token/ then issues a new one.
API_TOKEN_TTL = timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=30))
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Once `collectstatic` has run (the image does it at build time) whitenoise serves the hashed, compressed
# copies; a checkout that never collected (make run, the tests) serves the app folders' files as they are.
# `collectstatic` itself must write the manifest, or a collected tree would never be recognised as one.
STATIC_COLLECTED = (STATIC_ROOT / "staticfiles.json").exists() or sys.argv[1:2] == ["collectstatic"]
WHITENOISE_USE_FINDERS = not STATIC_COLLECTED
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_COLLECTED
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploads: imports stream from a temporary file; anything larger is refused with a clear message.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "em_site.uploads.SizeLimitedUploadHandler",  # stores nothing past IMPORT_MAX_BYTES
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=100 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# An experiment definition with more transcript slots than this (endpoints × datasets × k × CoT × system
# prompts × temperatures × questions × samples) is refused when it is defined, saying how many it has.
EXPERIMENT_MAX_SLOTS = env.int("EXPERIMENT_MAX_SLOTS", default=100_000)

SESSION_COOKIE_HTTPONLY = True
# HTTPS. Off by default because the embedded default and the shipped compose file serve plain HTTP; a
# deployment behind a TLS proxy turns them on (README, "Configuration").
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Trust the proxy's X-Forwarded-Proto only when told a proxy sets it: otherwise a client could claim HTTPS.
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
X_FRAME_OPTIONS = "DENY"

# Defence in depth behind the sanitiser: no inline script runs unless it carries the nonce.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "em_site.auth.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's defaults with the JSON parser bounded in size and nesting (em_site/bounded.py).
    "DEFAULT_PARSER_CLASSES": [
        "em_site.bounded.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "EM Audit API",
    "DESCRIPTION": "Experiments, transcripts, judge scores and human labels.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs are for researchers (and admins), like every operation they describe; auditors
    # work only in the annotation workspace.
    "SERVE_PERMISSIONS": ["transcripts.access.IsResearcher"],
    # Every operation's 400/401/403/404 answers are documented in one place.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "em_site.schema.document_error_responses",
    ],
    # Four models have a `status` with different choices: each gets its own named enum in the schema.
    "ENUM_NAME_OVERRIDES": {
        "ExperimentStatusEnum": "transcripts.models.Experiment.Status",
        "TranscriptStatusEnum": "transcripts.models.Transcript.Status",
        "JudgeScoreStatusEnum": "judging.models.JudgeScore.Status",
        "AssignmentStatusEnum": "judging.models.Assignment.Status",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery. The default broker is server-less (kombu's filesystem transport under var/) and is
# consumed by a real `celery worker` process; production points CELERY_BROKER_URL at Redis.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT = transport_for(CELERY_BROKER_URL)
BROKER_DIR = VAR_DIR / env.str("EM_BROKER_SUBDIR", default="broker")
if is_serverless(CELERY_BROKER_URL):
    CELERY_BROKER_TRANSPORT_OPTIONS = serverless_options(BROKER_DIR)
else:
    # Our own reconciler re-dispatches lost work within minutes, so Redis need not hold
    # unacked messages for its default hour.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_PREFETCH_MULTIPLIER", default=4)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE = {
    "reconcile-slots": {"task": "transcripts.tasks.reconcile", "schedule": env.float("RECONCILE_EVERY", 30.0)},
    "reconcile-judge-scores": {"task": "judging.tasks.reconcile", "schedule": env.float("RECONCILE_EVERY", 30.0)},
    "reconcile-vectors": {"task": "discovery.tasks.reconcile", "schedule": env.float("RECONCILE_EVERY", 30.0)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# How long a claimed slot stays claimed without a result before the reconciler hands it out again.
SLOT_LEASE_SECONDS = env.int("SLOT_LEASE_SECONDS", default=300)
# Generation retries on 429, 5xx, timeouts, connection errors and malformed replies: exponential backoff
# (base × 2^attempt, capped) with jitter; a slot fails with its last error after this many attempts.
GENERATION_MAX_ATTEMPTS = env.int("GENERATION_MAX_ATTEMPTS", default=6)
GENERATION_BACKOFF_SECONDS = env.float("GENERATION_BACKOFF_SECONDS", default=2.0)
GENERATION_BACKOFF_MAX_SECONDS = env.float("GENERATION_BACKOFF_MAX_SECONDS", default=120.0)
# A work message keeps claiming slots of its endpoint for at most this long, then hands over to a new one.
GENERATION_MESSAGE_BUDGET_SECONDS = env.float("GENERATION_MESSAGE_BUDGET_SECONDS", default=600.0)
# The call engine (transcripts/engine/): requests one worker process keeps in flight at most, over every
# endpoint (a server allowing more gets one work message per this many places, so more processes share it),
# and how long a driver gathers finished rows into one recording transaction while others are about to finish.
ENGINE_MAX_IN_FLIGHT = env.int("ENGINE_MAX_IN_FLIGHT", default=1000)
ENGINE_BATCH_SECONDS = env.float("ENGINE_BATCH_SECONDS", default=0.05)
# Batch API endpoints (Endpoint.batch_api; transcripts/engine/batches.py): requests and bytes per batch file at
# most (OpenAI's limits: 50,000 requests, 200 MB), and how often a submitted batch is polled. The account's
# queue of enqueued tokens is an endpoint's (Endpoint.batch_queue_tokens).
BATCH_MAX_REQUESTS = env.int("BATCH_MAX_REQUESTS", default=50_000)
BATCH_MAX_FILE_BYTES = env.int("BATCH_MAX_FILE_BYTES", default=200 * 1024 * 1024)
BATCH_POLL_SECONDS = env.float("BATCH_POLL_SECONDS", default=60.0)

# The environment variables an endpoint may name as its API key, declared by the operator. Nothing else is
# ever read for a request: an endpoint (even one an admin made) naming another variable fails with
# `undeclared_key_variable`. The variables the app itself is configured with can never be declared.
ENDPOINT_KEY_VARIABLES = frozenset(env.list("ENDPOINT_KEY_VARIABLES", default=[]))
_NEVER_KEYS = {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
if ENDPOINT_KEY_VARIABLES & _NEVER_KEYS:
    raise ImproperlyConfigured(
        f"ENDPOINT_KEY_VARIABLES may not include {', '.join(sorted(ENDPOINT_KEY_VARIABLES & _NEVER_KEYS))}: "
        "those configure EM Audit itself and must never be sent to a model server."
    )

# The embedded local model server (llama-cpp-python serving SmolLM2-135M-Instruct).
LOCAL_MODEL_HOST = env.str("LOCAL_MODEL_HOST", default="127.0.0.1")
LOCAL_MODEL_PORT = env.int("LOCAL_MODEL_PORT", default=8765)
LOCAL_MODEL_ALIAS = env.str("LOCAL_MODEL_ALIAS", default="smollm2")
LOCAL_MODEL_CONTEXT = env.int("LOCAL_MODEL_CONTEXT", default=8192)
LOCAL_MODEL_BASE_URL = env.str(
    "LOCAL_MODEL_BASE_URL", default=f"http://{LOCAL_MODEL_HOST}:{LOCAL_MODEL_PORT}/v1"
)

# The embedded default's embedding model (all-MiniLM-L6-v2, discovery.local_embedder): `base_url: local-embedder`.
LOCAL_EMBEDDER_HOST = env.str("LOCAL_EMBEDDER_HOST", default="127.0.0.1")
LOCAL_EMBEDDER_PORT = env.int("LOCAL_EMBEDDER_PORT", default=8766)
LOCAL_EMBEDDER_BASE_URL = env.str(
    "LOCAL_EMBEDDER_BASE_URL", default=f"http://{LOCAL_EMBEDDER_HOST}:{LOCAL_EMBEDDER_PORT}/v1"
)
# "More like this" by a free text embeds the text: each user may embed this many new texts per window (seconds).
DISCOVERY_TEXT_SEARCHES = env.int("DISCOVERY_TEXT_SEARCHES", default=30)
DISCOVERY_TEXT_SEARCH_WINDOW = env.int("DISCOVERY_TEXT_SEARCH_WINDOW", default=60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}, "openai": {"level": "WARNING"}},
}
