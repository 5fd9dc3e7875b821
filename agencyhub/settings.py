"""AgencyHub settings. Every variable has a safe default for `make run` (SQLite, local-memory
cache, tasks in-process); production and the test suite set DATABASE_URL and REDIS_URL."""

import warnings
from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-change-me-" + "x" * 32)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

# Comma-separated Fernet keys, newest first. `make run` writes a random one into .env.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

INSTALLED_APPS = [
    "agencyhub",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: /api/docs works offline
    "tenants",
    "providers",
    "billing",
    "routing",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the admin's and the docs page's static files, under gunicorn too
    "conversations.api.origins.CorsMiddleware",  # first: preflights, and CORS headers on every answer below it (413 too)
    "agencyhub.middleware.RequestSizeLimitMiddleware",
    "agencyhub.middleware.ConfigScopeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "agencyhub.urls"
WSGI_APPLICATION = "agencyhub.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Production (PostgreSQL): a psycopg pool per process. The chat engine hands its connection back while a
# provider answers, so a few pooled connections serve hundreds of requests in flight.
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=0)
if DATABASE_POOL_MAX_SIZE and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    from agencyhub.db_pool import pool_options

    DATABASES["default"]["CONN_MAX_AGE"] = 0  # health checks: see agencyhub.db_pool
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = pool_options(DATABASE_POOL_MAX_SIZE)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
# Connections per process to Redis, per pool (the shared state's and the cache's). A thread that finds them all busy
# waits up to REDIS_POOL_TIMEOUT seconds for one (commands take well under a millisecond) instead of failing: with
# hundreds of request threads, redis-py's default pool (100 connections, no waiting) raised "Too many connections".
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=64)
REDIS_POOL_TIMEOUT = env.float("REDIS_POOL_TIMEOUT", default=5.0)
if REDIS_URL:
    CACHES = {"default": {
        "BACKEND": "agencyhub.cache.RedisCache", "LOCATION": REDIS_URL,
        "OPTIONS": {"pool_class": "redis.BlockingConnectionPool", "max_connections": REDIS_MAX_CONNECTIONS, "timeout": REDIS_POOL_TIMEOUT},
    }}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"
# WhiteNoise serves the apps' static files straight from their folders (no collectstatic step to forget); it
# also serves STATIC_ROOT if `collectstatic` filled it, and would warn at every start that it is missing.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)

# Client request bodies above this answer 413.
MAX_REQUEST_BYTES = env.int("MAX_REQUEST_BYTES", default=1_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
MAX_MESSAGE_CHARS = env.int("MAX_MESSAGE_CHARS", default=100_000)
# Callbacks go only to public addresses unless this is set (a receiver on this machine or the private network).
CALLBACK_ALLOW_PRIVATE_HOSTS = env.bool("CALLBACK_ALLOW_PRIVATE_HOSTS", default=False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PARSER_CLASSES": [
        "agencyhub.parsers.JSONParser", "rest_framework.parsers.FormParser", "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "agencyhub.exceptions.api_exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "agencyhub.negotiation.LenientContentNegotiation",
    "DEFAULT_THROTTLE_CLASSES": ["conversations.api.throttling.TenantRateThrottle"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AgencyHub API",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Staff alerts (a provider key disabled after a 401/403, budget alerts): who gets them, and how mail is sent
# (EMAIL_URL, e.g. smtp+tls://user:password@mail.example.com:587; the default prints mails to the log).
STAFF_ALERT_EMAILS = env.list("STAFF_ALERT_EMAILS", default=[])
ADMINS = [(email, email) for email in env.list("ADMIN_EMAILS", default=[])]
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
SERVER_EMAIL = env("SERVER_EMAIL", default="agencyhub@localhost")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default=SERVER_EMAIL)

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "probe-providers": {"task": "providers.probe_providers", "schedule": 60.0, "options": {"expires": 55}},
    "requeue-stalled-replies": {"task": "conversations.tasks.requeue_stalled_replies", "schedule": 60.0, "options": {"expires": 55}},
    "send-due-callbacks": {"task": "conversations.tasks.send_due_callbacks", "schedule": 60.0, "options": {"expires": 55}},
    "fail-interrupted-replies": {"task": "conversations.tasks.fail_interrupted_replies", "schedule": 60.0, "options": {"expires": 55}},
    "calibrate-complexity": {"task": "conversations.tasks.calibrate_complexity", "schedule": crontab(minute=17)},
    "purge-expired-content": {"task": "conversations.tasks.purge_expired", "schedule": crontab(hour=3, minute=30)},
    # Times are UTC. Tenant-local days end up to 12 h after UTC midnight (UTC-12) and start up to 14 h before it:
    # the nightly roll-up redoes the last two UTC days, so every tenant's yesterday is complete by its second run;
    # invoices are drafted at 14:00 UTC on the 1st, once the previous month has ended in every time zone.
    "billing-rollup-yesterday": {
        "task": "billing.rollup_yesterday", "schedule": crontab(hour=0, minute=40), "options": {"expires": 6 * 3600},
    },
    "billing-monthly-invoices": {
        "task": "billing.generate_monthly_invoices", "schedule": crontab(day_of_month=1, hour=14, minute=0),
        "options": {"expires": 12 * 3600},
    },
}
ATTEMPT_LOG_RETENTION_DAYS = env.int("ATTEMPT_LOG_RETENTION_DAYS", default=30)

# Provider calls: the gateway retries and fails over itself, so SDK retries stay off.
PROVIDER_TIMEOUT_SECONDS = env.float("PROVIDER_TIMEOUT_SECONDS", default=60.0)
PROVIDER_CONNECT_TIMEOUT_SECONDS = env.float("PROVIDER_CONNECT_TIMEOUT_SECONDS", default=5.0)
# A reply claimed longer ago than this by a process that died may be claimed again.
REPLY_LEASE_SECONDS = env.int("REPLY_LEASE_SECONDS", default=600)
OPENROUTER_REFERER = env("OPENROUTER_REFERER", default="https://agencyhub.local")
OPENROUTER_TITLE = env("OPENROUTER_TITLE", default="AgencyHub")

# /metrics: open when empty; else scrapers send `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# The admin's large tables count exactly up to this many rows, then estimate (tenants.admin_paginator).
ADMIN_COUNT_CAP = env.int("ADMIN_COUNT_CAP", default=10_000)
# The admin's "slow" filter: calls slower than this (ms).
ADMIN_SLOW_CALL_MS = env.int("ADMIN_SLOW_CALL_MS", default=10_000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Outage warnings marked extra={"throttle": True}: one per call site every LOG_REPEAT_SECONDS (log_filters.py).
    "filters": {"repeats": {"()": "agencyhub.log_filters.RepeatThrottle", "interval": env.float("LOG_REPEAT_SECONDS", default=30.0)}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["repeats"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
