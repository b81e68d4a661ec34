"""Weiyu settings, driven by the environment.

Required in production: ``SECRET_KEY``, ``DATABASE_URL``, ``REDIS_URL``. When ``DATABASE_URL`` /
``REDIS_URL`` are unset, the embedded services started by ``scripts/run.py`` are used (their URLs
are kept in ``.data/services.json``, see ``weiyu/devservices.py``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from redis.exceptions import ConnectionError as RedisConnectionError

from weiyu import devservices, procname, serve

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (``1/true/yes/on`` are true)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


#: ``production`` turns on the production profile below (Secure cookies, HSTS, CSP, the deploy
#: checks of tenants.checks); anything else (default ``development``) is a developer's machine
WEIYU_ENV = os.environ.get("WEIYU_ENV", "development").strip().lower()
PRODUCTION = WEIYU_ENV == "production"
DEBUG = env_bool("DEBUG", default=False)
if PRODUCTION and not os.environ.get("SECRET_KEY"):
    raise ImproperlyConfigured("WEIYU_ENV=production needs SECRET_KEY in the environment")
SECRET_KEY = os.environ.get("SECRET_KEY") or devservices.dev_secret_key()
# Fernet keys for secrets kept in tenant tables, first one encrypts (weiyu/fields.py); empty in
# development: one key is derived from SECRET_KEY. Required in production (check --deploy).
WEIYU_FIELD_KEYS = [k for k in os.environ.get("WEIYU_FIELD_KEYS", "").split(",") if k.strip()]
ALLOWED_HOSTS = [
    h for h in os.environ.get("ALLOWED_HOSTS", ".localhost,localhost,127.0.0.1").split(",") if h
]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

_services = devservices.service_urls()
DATABASE_URL = os.environ.get("DATABASE_URL") or _services.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL") or _services.get("REDIS_URL", "redis://127.0.0.1:6379/0")
if not DATABASE_URL:
    DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/weiyu"

# A psycopg connection pool per process: under ASGI every HTTP request runs in a new thread, and
# persistent per-thread connections would exhaust PostgreSQL under a burst (docs/benchmarks.md).
# A connection goes back to the pool after each request / consumer call; django-tenants sets the
# schema again on the next use. `timeout` (s) bounds the wait when PostgreSQL is unreachable.
# CONN_HEALTH_CHECKS makes the pool check a connection before handing it out, so a PostgreSQL
# restart costs no failed request.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)
}
# django-tenants' backend, remembering the search_path of each pooled connection (weiyu/postgresql_backend)
DATABASES["default"]["ENGINE"] = "weiyu.postgresql_backend"
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": 1,
    "max_size": int(os.environ.get("DB_POOL_MAX", "16")),
    "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10")),
}
# Server-side prepared statements only where a cursor asks for them (weiyu.prepared: the
# statements every socket runs at each reconnect). Django's default (None) turns them off
# outright; a threshold no statement reaches by repetition keeps every other query unprepared,
# as before. Needs connections of the process's own (this pool), not a transaction-mode pooler.
DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 2**31 - 1
# `pg_stat_activity.application_name` tells which kind of process holds each connection
# (weiyu-web-1, weiyu-worker, weiyu-beat…: weiyu/procname.py, docs/deploy.md "Database connections")
DATABASES["default"]["OPTIONS"].setdefault("application_name", procname.application_name())
if os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
# issue `SET search_path` only when the schema changes, not before every cursor
TENANT_LIMIT_SET_CALLS = True

# --- tenancy (django-tenants): `tenants` is the only shared app with data of its own; users,
# sessions and admin exist in both so the public schema has platform admins.
SHARED_APPS = [
    "daphne",
    "tenants",  # before django_tenants so our create_tenant command takes precedence over its own
    "django_tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.admin",
    "org",
    "treebeard",
    "channels",
    "rest_framework",
    # the OpenAPI 3 schema of the API and its documentation page, served offline (weiyu/api.py)
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",  # sign-in failures of the platform admin (public schema)
    # two-factor devices (TOTP, recovery codes) of platform admins; tenants have their own
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",  # Content-Security-Policy (the production profile)
    "auditlog",  # the platform admin's own audit log (public schema)
    "guardian",  # object permissions: the users table lives in both kinds of schema
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "org",
    "im",
    "kefu",
    "tickets",
    "kbase",
    # sign-in failures where the sign-in happens: in each tenant's schema, so a username locked
    # out in one tenant is not locked out in another that has the same one
    "axes",
    # two-factor devices live with the users they belong to (org.twofactor)
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    # the audit log (org.audit, docs/security.md): each tenant's entries in its own schema
    "auditlog",
    # signed webhooks (org/webhooks, docs/webhooks.md): endpoints, events, the delivery log
    "org.webhooks",
    # object permissions (docs/security.md "Roles"): the workgroups a supervisor supervises
    "guardian",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "weiyu.urls_public"
# New tenants are copies of this schema, kept migrated by `migrate_schemas` (tenants/template.py,
# docs/operations.md). Never a tenant: tenant schemas start with a letter. Empty: always migrate.
TENANT_TEMPLATE_SCHEMA = os.environ.get("WEIYU_TENANT_TEMPLATE_SCHEMA", "_tenant_template")
# Spare copies of the template kept ready by a worker (tenants/pool.py): provisioning renames one
# instead of copying the template while the new tenant waits. 0: no pool, always copy.
WEIYU_SPARE_SCHEMAS = int(os.environ.get("WEIYU_SPARE_SCHEMAS", "2"))
ROOT_URLCONF = "weiyu.urls"
AUTH_USER_MODEL = "org.User"
if os.environ.get("WEIYU_FAST_PASSWORD_HASHER") == "1":  # the test suite only (scripts/test.py)
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

MIDDLEWARE = [
    # requests and their durations for /metrics (tenants.metrics), first so it sees every answer
    "tenants.metrics.MetricsMiddleware",
    "weiyu.middleware.RefuseNulMiddleware",
    "tenants.middleware.ActiveTenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # a signed-in person's chosen language over the browser's (the inbox's language switch)
    "org.middleware.UserLanguageMiddleware",
    # "last active" of the signed-in session, at most every 5 minutes (org.sessions)
    "org.sessions.SessionActivityMiddleware",
    # a user whom the tenant requires to use two factors and who has none reaches only the
    # enrolment page (org.account_views, docs/security.md "Two-factor authentication")
    "org.account_views.TwoFactorRequiredMiddleware",
    # an auditor reads and changes nothing: every other method is refused (docs/security.md)
    "org.middleware.AuditorReadOnlyMiddleware",
    # a POST repeated with the same Idempotency-Key and API key gets the first answer again
    "org.apikeys.IdempotencyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # who and from where, for the audit log's entries written during the request (org.audit)
    "org.middleware.AuditMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # turns a locked-out sign-in into weiyu.views.login_locked_out (429); last, as axes asks
    "axes.middleware.AxesMiddleware",
]

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
                "django.template.context_processors.i18n",
                # ``brand``: the tenant's logo and colours (tenants.branding), read lazily
                "tenants.branding.context_processor",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "weiyu.asgi.application"
# Number of daphne processes `python -m weiyu.serve` (the Procfile's `web`) runs on one port:
# $WEB_CONCURRENCY, else the machine's cores. Each has its own DB pool of DB_POOL_MAX connections.
WEB_CONCURRENCY = serve.web_concurrency()

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # the tenant's minimum length and character kinds (Organisation → Security settings)
    {"NAME": "org.passwords.TenantPasswordPolicyValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "org.backends.LockoutBackend",
    "org.backends.PasswordBackend",
    # the permissions of the built-in roles (auditor, supervisor; org.roles)
    "org.backends.RolePermissionBackend",
    # object permissions (django-guardian): a supervisor's workgroups (kefu.supervision)
    "guardian.backends.ObjectPermissionBackend",
]
# django-guardian creates no anonymous user: nobody signed out is given any permission
ANONYMOUS_USER_NAME = None
LOGIN_URL = "kefu:inbox-login"

# --- sign-in throttling (django-axes; docs/security.md): after AXES_FAILURE_LIMIT failures an
# account (username) is locked, and separately the client address, for AXES_COOLOFF_TIME; a
# success clears the account's failures. Counted per tenant schema (and the public one).
AXES_FAILURE_LIMIT = int(os.environ.get("WEIYU_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("WEIYU_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "weiyu.views.login_locked_out"
AXES_HTTP_RESPONSE_CODE = 429
AXES_ENABLED = env_bool("WEIYU_LOGIN_THROTTLE", default=True)
# the client address is REMOTE_ADDR, which weiyu.clientaddr sets from the peer or, behind
# WEIYU_TRUSTED_PROXIES, the right-most untrusted X-Forwarded-For hop (docs/security.md)
LOGIN_REDIRECT_URL = "kefu:inbox"

# --- two-factor authentication (django-otp; org.twofactor): the issuer shown in authenticator
# apps, and how long (s) a password stays good for the code step of a sign-in
OTP_TOTP_ISSUER = os.environ.get("WEIYU_TOTP_ISSUER", "Weiyu")
# django-otp's own delay after a wrong code is off: wrong codes count as failed sign-ins in
# django-axes, which locks the account and the address like wrong passwords
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0
# the back office lists and deletes users' devices (a lost phone) but never shows a TOTP key, its
# QR code or recovery codes
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
WEIYU_TWO_FACTOR_STEP_SECONDS = int(os.environ.get("WEIYU_TWO_FACTOR_STEP_SECONDS", "300"))
# --- audit log (django-auditlog; org.audit, docs/security.md "Audit log"): changes as JSON; the
# client address is set by org.middleware.AuditMiddleware from REMOTE_ADDR (weiyu.clientaddr),
# never from a header the client wrote.
AUDITLOG_STORE_JSON_CHANGES = True
AUDITLOG_DISABLE_ON_RAW_SAVE = True

# --- i18n: every user-facing string ships in Simplified Chinese and English.
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / ".data" / "media"))
MEDIA_URL = "/media/"

# --- uploaded files (INT-4): local disk under MEDIA_ROOT, or S3 (any S3-compatible server) when a
# bucket is named. Files are never served from MEDIA_URL: /api/v1/im/files/<id> checks membership
# first, then streams the file or redirects to a signed URL valid for 5 minutes.
S3_BUCKET = os.environ.get("AWS_STORAGE_BUCKET_NAME") or os.environ.get("S3_BUCKET", "")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL")
            or os.environ.get("S3_ENDPOINT_URL")
            or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
# uploads larger than this (bytes) go to a temporary file instead of memory
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache, keyed per tenant schema so tenants never read each other's entries.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

# --- realtime. The channel layer is a doorbell, not the record (docs/architecture.md): capacity
# is raised from the default 100 (it bounds one queue shared by all sockets of a process), expiry
# kept short. weiyu.channel_layer receives a process's messages in batches. channels-redis blocks
# in BZPOPMIN for up to 5 s per receive and redis-py 8 defaults the socket read timeout to 5 s as
# well, so an idle receive could time out as if Redis were gone: the read timeout stays above.
#: prefix of every Redis key Weiyu writes itself (channel layer, agent presence); separate
#: deployments or test runs sharing one Redis database use different ones
REDIS_KEY_PREFIX = os.environ.get("CHANNEL_PREFIX", "weiyu")
#: the channel layer's Redis servers (comma-separated URLs, the same list in the same order on
#: every process): channels-redis spreads groups and process queues over them by consistent
#: hashing (docs/deploy.md). Presence, the cache and Celery stay on REDIS_URL.
CHANNEL_REDIS_URLS = [
    url.strip() for url in os.environ.get("CHANNEL_REDIS_URLS", "").split(",") if url.strip()
] or [REDIS_URL]
for _url in CHANNEL_REDIS_URLS:
    if not _url.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            f"CHANNEL_REDIS_URLS takes comma-separated redis://, rediss:// or unix:// URLs, "
            f"not {_url!r}"
        )
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "weiyu.channel_layer.BatchingRedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": url,
                    "socket_timeout": 15,
                    "socket_connect_timeout": 5,
                    # a pooled connection that died with an earlier Redis is reopened once
                    # instead of failing the first command after Redis came back
                    "retry_on_error": [RedisConnectionError],
                    # redis-py refuses (does not wait) past the pool size; overlapping fan-out
                    # sends are capped at weiyu.realtime.FAN_OUT_CONCURRENCY per process
                    "max_connections": 256,
                }
                for url in CHANNEL_REDIS_URLS
            ],
            "capacity": int(os.environ.get("CHANNEL_CAPACITY", "5000")),
            "expiry": 60,
            "group_expiry": 86400,
            "prefix": REDIS_KEY_PREFIX,
        },
    }
}
WEIYU_WS_MAX_FRAME_BYTES = 64 * 1024
# --- rate limits of the anonymous paths (org.limits, docs/security.md "Rate limits"): platform
# defaults of every tenant's VisitorLimits row (WEIYU_LIMIT_<NAME>; 0 turns one off), and the
# per-tenant budgets that keep one tenant's flood from starving the others (platform only).
WEIYU_RATE_LIMITS = env_bool("WEIYU_RATE_LIMITS", default=True)
_VISITOR_LIMIT_DEFAULTS = {
    "sessions_per_ip_minute": 20,
    "connects_per_ip_minute": 60,
    "frames_per_visitor_minute": 240,
    "messages_per_visitor_minute": 30,
    "messages_per_ip_minute": 120,
    "uploads_per_visitor_hour": 30,
    "upload_mb_per_visitor_hour": 50,
    "uploads_per_ip_hour": 100,
    "upload_mb_per_ip_hour": 200,
    "tickets_per_visitor_hour": 5,
    "tickets_per_ip_hour": 20,
    "transcripts_per_visitor_day": 5,
    "transcripts_per_address_day": 3,
    "searches_per_ip_minute": 30,
}
WEIYU_VISITOR_LIMITS = {
    name: int(os.environ.get(f"WEIYU_LIMIT_{name.upper()}", str(default)))
    for name, default in _VISITOR_LIMIT_DEFAULTS.items()
}
WEIYU_TENANT_LIMITS = {
    "sessions_per_minute": int(os.environ.get("WEIYU_TENANT_SESSIONS_PER_MINUTE", "600")),
    "messages_per_minute": int(os.environ.get("WEIYU_TENANT_MESSAGES_PER_MINUTE", "3000")),
    # password sign-ins over the whole tenant (each one hashes a password: ~0.3-1 s of CPU), so
    # a botnet's wrong passwords cannot take the web processes' CPU from every tenant's chats
    "sign_ins_per_minute": int(os.environ.get("WEIYU_TENANT_SIGN_INS_PER_MINUTE", "120")),
    # "forgot your password?" requests over the whole tenant (each one looks accounts up)
    "password_resets_per_minute": int(
        os.environ.get("WEIYU_TENANT_PASSWORD_RESETS_PER_MINUTE", "60")
    ),
}
#: password sign-ins per client address and minute, in each tenant (and on the platform's domains)
#: days a conversation list export (its file) is kept for download (kefu.exports.exports_purge)
WEIYU_EXPORTS_KEEP_DAYS = int(os.environ.get("WEIYU_EXPORTS_KEEP_DAYS", "7"))

# --- /metrics for Prometheus (tenants.metrics, docs/operations.md "Metrics"): with a token a
# scraper sends "Authorization: Bearer <token>"; without one only loopback clients are answered
WEIYU_METRICS_TOKEN = os.environ.get("WEIYU_METRICS_TOKEN", "")
#: Celery queues whose length and oldest task /metrics reports, besides the default queue
WEIYU_METRICS_QUEUES = [q for q in os.environ.get("WEIYU_METRICS_QUEUES", "").split(",") if q]

WEIYU_SIGN_INS_PER_IP_MINUTE = int(os.environ.get("WEIYU_SIGN_INS_PER_IP_MINUTE", "60"))
#: failed API-key authentications (bad Bearer tokens) one client address may make per minute,
#: over all tenants, before it is answered 429 without a database query (org.limits)
WEIYU_API_KEY_FAILURES_PER_IP_MINUTE = int(
    os.environ.get("WEIYU_API_KEY_FAILURES_PER_IP_MINUTE", "30")
)
#: threads of a web process that run sign-in and password-reset POSTs (org.signin_gate): the
#: password hashing of a sign-in flood never takes more than these; at most half of them (at
#: least one) work for one tenant at a time, so another tenant's people still sign in
WEIYU_SIGN_IN_THREADS = max(1, int(os.environ.get("WEIYU_SIGN_IN_THREADS", "2")))
#: niceness the sign-in threads add to the process's (Linux): hashing yields the CPU to chats
WEIYU_SIGN_IN_NICE = max(0, int(os.environ.get("WEIYU_SIGN_IN_NICE", "10")))
#: sign-in POSTs of one tenant that may wait for a sign-in thread; past them → 429 at once
WEIYU_SIGN_IN_QUEUE = max(1, int(os.environ.get("WEIYU_SIGN_IN_QUEUE", "16")))
#: a refused sign-in is answered this late (ms; 0: at once), while fewer than
#: WEIYU_SIGN_IN_REFUSALS_HELD refusals are held back in the process (org.signin_gate)
WEIYU_SIGN_IN_REFUSAL_DELAY_MS = max(
    0, int(os.environ.get("WEIYU_SIGN_IN_REFUSAL_DELAY_MS", "1000"))
)
WEIYU_SIGN_IN_REFUSALS_HELD = max(0, int(os.environ.get("WEIYU_SIGN_IN_REFUSALS_HELD", "256")))
#: addresses or CIDRs of the reverse proxies / load balancers in front of daphne (comma-separated);
#: only from them are X-Forwarded-For / X-Forwarded-Proto believed (weiyu.clientaddr). Empty: the
#: TCP peer is the client.
WEIYU_TRUSTED_PROXIES = os.environ.get("WEIYU_TRUSTED_PROXIES", "")
#: hours an uploaded file may stay unsent (in no message, ticket comment or group picture)
#: before the beat task im.tasks.attachment_orphans_purge_all_task deletes it
WEIYU_ORPHAN_UPLOAD_HOURS = float(os.environ.get("WEIYU_ORPHAN_UPLOAD_HOURS", "24"))
#: the address the public reaches tenants at, for the widget's embed snippet: ``https://{domain}``
#: (``{domain}``: each tenant's primary domain) or one fixed ``scheme://host[:port]``; unset: the
#: scheme, host and port of the back-office request (kefu.embed)
WEIYU_PUBLIC_URL = os.environ.get("WEIYU_PUBLIC_URL", "").strip().rstrip("/")
if WEIYU_PUBLIC_URL and (
    not WEIYU_PUBLIC_URL.startswith(("http://", "https://"))
    or "/" in WEIYU_PUBLIC_URL.split("://", 1)[1]
    or any(c in WEIYU_PUBLIC_URL for c in "?#")
):
    raise ImproperlyConfigured(
        f"WEIYU_PUBLIC_URL must look like https://host[:port] or https://{{domain}}, "
        f"not {WEIYU_PUBLIC_URL!r}"
    )
WEIYU_MESSAGE_MAX_CHARS = 5000
#: seconds a knowledge-base search waits for its query vector from the embedding service
#: (manage.py embed_server) before it answers by keywords (kbase.embed_service)
WEIYU_EMBED_TIMEOUT_S = float(os.environ.get("WEIYU_EMBED_TIMEOUT_S", "1.5"))
WEIYU_SYNC_MAX_MESSAGES = 500
#: most bytes of conversations and messages in one ``sync.result`` or ``history.result`` frame
#: (UTF-8 JSON); more goes on following pages (docs/protocol.md §2.2). daphne refuses to send a
#: websocket message over 1 MiB (``websocket_max_message_size``) and drops the connection.
WEIYU_SYNC_PAGE_BYTES = 256 * 1024
#: most messages in one ``sync.result`` page
WEIYU_SYNC_PAGE_MESSAGES = 1000
#: ``ip:port`` pairs (comma-separated, IPv6 in brackets) that requests to tenant-chosen URLs may
#: reach although they are not public, e.g. a self-hosted model: "127.0.0.1:11434" for Ollama
#: (weiyu.outbound; docs/security.md)
WEIYU_OUTBOUND_ALLOW = os.environ.get("WEIYU_OUTBOUND_ALLOW", "")
# Messaging channels (kefu.channels, docs/channels.md): seconds before a failed send is tried
# again (doubled each time), attempts before a reply is shown "not delivered", and the timeout of
# one call to the vendor.
WEIYU_CHANNEL_RETRY_S = float(os.environ.get("WEIYU_CHANNEL_RETRY_S", "10"))
WEIYU_CHANNEL_SEND_ATTEMPTS = int(os.environ.get("WEIYU_CHANNEL_SEND_ATTEMPTS", "4"))
WEIYU_CHANNEL_HTTP_TIMEOUT_S = float(os.environ.get("WEIYU_CHANNEL_HTTP_TIMEOUT_S", "15"))
# days a handled inbound event (kefu.ChannelEvent) is kept; a failed one is kept longer for the
# channel's health page (kefu.channels.inbound.channel_events_prune)
WEIYU_CHANNEL_EVENT_KEEP_DAYS = int(os.environ.get("WEIYU_CHANNEL_EVENT_KEEP_DAYS", "7"))
WEIYU_CHANNEL_EVENT_FAILED_KEEP_DAYS = int(
    os.environ.get("WEIYU_CHANNEL_EVENT_FAILED_KEEP_DAYS", "30")
)
# e-mail channels (kefu.channels.mail): the largest mail accepted, the IMAP polling interval
WEIYU_EMAIL_MAX_BYTES = int(os.environ.get("WEIYU_EMAIL_MAX_BYTES", str(25 * 1024 * 1024)))
WEIYU_EMAIL_POLL_S = float(os.environ.get("WEIYU_EMAIL_POLL_S", "60"))
#: bytes of response read at most from a tenant-chosen URL
WEIYU_OUTBOUND_MAX_BYTES = int(os.environ.get("WEIYU_OUTBOUND_MAX_BYTES", str(10 * 1024 * 1024)))

# --- Celery: long timers live in the database and a beat scanner acts on them (DESIGN.md §7);
# late acks so a killed worker's task is redelivered.
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# WEIYU_WORKER_DB_REUSE_TASKS > 0: a worker process keeps its PostgreSQL connection from one task
# to the next (checked before each, weiyu/celery.py) and closes its pool after this many tasks;
# 0 (default): Celery's own way, the pool closed after every task, a new connection per task
# (docs/deploy.md, "Database connections"). Opt-in until keeping connections is proven with
# several pool processes forked from one worker.
CELERY_DB_REUSE_MAX = int(os.environ.get("WEIYU_WORKER_DB_REUSE_TASKS", "0"))
CELERY_BEAT_SCHEDULE = {
    # uploads never sent (a closed widget, a changed mind) are deleted after a day
    "im-orphan-uploads": {"task": "im.tasks.attachment_orphans_purge_all_task", "schedule": 3600.0},
    "kefu-queue-dispatch": {"task": "kefu.tasks.queue_dispatch_scan_task", "schedule": 15.0},
    # each tenant's data retention (Customer service → Data retention), once a day
    # (and list exports older than WEIYU_EXPORTS_KEEP_DAYS deleted with their files)
    "kefu-retention": {"task": "kefu.tasks.retention_all_task", "schedule": 86400.0},
    # handled inbound channel events past their retention (docs/channels.md, "Retention")
    "kefu-channel-events-prune": {
        "task": "kefu.tasks.channel_events_prune_all_task",
        "schedule": 3600.0,
    },
    # queue wait limits, unanswered-visitor reminders and re-assignment, idle auto-close
    "kefu-stats": {
        "task": "kefu.tasks.stats_rollup_all_task",
        "schedule": float(os.environ.get("KEFU_STATS_INTERVAL_S", "300")),
    },
    "kefu-timers": {
        "task": "kefu.tasks.timers_scan_all_task",
        "schedule": float(os.environ.get("KEFU_TIMER_INTERVAL_S", "5")),
    },
    # SLA warnings, breaches and escalations: a breach is seen within one interval (TK-2)
    "tickets-sla-scan": {
        "task": "tickets.tasks.sla_scan_all_task",
        "schedule": float(os.environ.get("SLA_SCAN_INTERVAL_S", "10")),
    },
    # e-mail channels' IMAP folders (kefu.channels.mail_inbound)
    "kefu-email-poll": {
        "task": "kefu.tasks.imap_poll_all_task",
        "schedule": WEIYU_EMAIL_POLL_S,
    },
    # webhook deliveries a lost task or a restarted worker left behind (org/webhooks)
    "webhooks-due": {"task": "org.webhooks.tasks.webhook_due_scan_all_task", "schedule": 60.0},
    # LDAP / Active Directory sync of the tenants that turned it on, each at its own interval
    # (org.ldap_sync): how often to look for the ones that are due
    "org-ldap-sync": {
        "task": "org.tasks.ldap_sync_due_all_task",
        "schedule": float(os.environ.get("WEIYU_LDAP_SCAN_S", "300")),
    },
}

# --- alerts when away (org/alerts.py, docs/inbox.md "Alerts when away"): web push signed with
# the platform's VAPID key (base64url raw P-256 private key or PEM; empty: one generated at first
# use and kept in .data/vapid_private_key; required in production, where every node must sign with
# the same key); the contact push services may write to; how long (s) a push service keeps an
# undelivered push; the seconds to wait for a push service
WEIYU_VAPID_PRIVATE_KEY = os.environ.get("WEIYU_VAPID_PRIVATE_KEY", "")
WEIYU_VAPID_SUBJECT = os.environ.get("WEIYU_VAPID_SUBJECT", "")
WEIYU_PUSH_TTL_S = int(os.environ.get("WEIYU_PUSH_TTL_S", "3600"))
WEIYU_PUSH_TIMEOUT_S = float(os.environ.get("WEIYU_PUSH_TIMEOUT_S", "10"))
# the e-mail digest of unread messages: how often (s) each tenant is scanned
CELERY_BEAT_SCHEDULE["im-unread-digest"] = {
    "task": "im.tasks.unread_digest_all_task",
    "schedule": float(os.environ.get("WEIYU_DIGEST_INTERVAL_S", "60")),
}

# --- webhooks (org/webhooks, docs/webhooks.md): attempts per delivery, the first included; the
# delay after failed attempt n is BASE * 4^(n-1) seconds; an endpoint is disabled after this many
# deliveries in a row failed; seconds to wait for an answer
WEIYU_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEIYU_WEBHOOK_MAX_ATTEMPTS", "6"))
WEIYU_WEBHOOK_RETRY_BASE_S = float(os.environ.get("WEIYU_WEBHOOK_RETRY_BASE_S", "10"))
WEIYU_WEBHOOK_DISABLE_AFTER = int(os.environ.get("WEIYU_WEBHOOK_DISABLE_AFTER", "5"))
WEIYU_WEBHOOK_TIMEOUT_S = float(os.environ.get("WEIYU_WEBHOOK_TIMEOUT_S", "10"))

# --- e-mail: replies to ticket requesters. Without EMAIL_HOST the messages go to the worker's
# log (console backend), so nothing is lost silently in development.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "") == "1"
EMAIL_USE_SSL = os.environ.get("EMAIL_USE_SSL", "") == "1"
EMAIL_TIMEOUT = 30
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Weiyu <no-reply@localhost>")

REST_FRAMEWORK = {
    # API keys first (Authorization: Bearer, org.apikeys), then the inbox's session cookie
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "org.apikeys.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # signed in, and an auditor only reads (org.permissions)
    "DEFAULT_PERMISSION_CLASSES": ["org.permissions.IsAuthenticatedWriter"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "weiyu.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "weiyu.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "weiyu.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

# The OpenAPI 3 schema (GET /api/v1/schema/) and its Swagger UI page (/api/v1/docs/), docs/api.md
SPECTACULAR_SETTINGS = {
    "TITLE": "Weiyu API",
    "DESCRIPTION": (
        "The REST API of a Weiyu tenant, served on the tenant's domain. Authenticate with an API "
        "key (Authorization: Bearer wy_<prefix>_<secret>) or the inbox's session cookie. Errors "
        'are {"error": code, "detail": message, "field"?: name}. The websocket protocol is in '
        "docs/protocol.md."
    ),
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI's files come from drf-spectacular-sidecar (static files), not from a CDN
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

SESSION_COOKIE_NAME = "weiyu_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# --- production profile (WEIYU_ENV=production; docs/deploy.md, docs/security.md). Behind a TLS
# proxy, name it in WEIYU_TRUSTED_PROXIES so that its X-Forwarded-Proto makes requests https.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = int(os.environ.get("WEIYU_HSTS_SECONDS", "31536000")) if PRODUCTION else 0
#: tenants are sub-domains of the platform's domain, all served over https by this service
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("WEIYU_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("WEIYU_HSTS_PRELOAD", default=False)
#: usually the proxy redirects http to https; WEIYU_SSL_REDIRECT=1 makes Django do it too
SECURE_SSL_REDIRECT = env_bool("WEIYU_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the load balancer's health check speaks plain http
X_FRAME_OPTIONS = "DENY"  # the widget's frame is the one page others may frame
SILENCED_SYSTEM_CHECKS = [
    # HSTS preload is a commitment an operator opts into (WEIYU_HSTS_PRELOAD=1)
    *(["security.W021"] if not SECURE_HSTS_PRELOAD else []),
    # the redirect to https is the proxy's job unless WEIYU_SSL_REDIRECT=1
    *(["security.W008"] if not SECURE_SSL_REDIRECT else []),
]

# --- Content-Security-Policy (django-csp): on in production, or with WEIYU_CSP=1. One policy for
# the inbox, the admin and the help center; the widget's frame may be framed by any site
# (kefu.views.widget_frame). Inline scripts need the request's nonce; inline styles are allowed
# (the admin and the pages' own <style> blocks). WEIYU_CSP_MEDIA_SOURCES: origins files are served
# from besides this one (the S3 endpoint of signed download URLs), space-separated.
WEIYU_CSP = env_bool("WEIYU_CSP", default=PRODUCTION)
_MEDIA_SOURCES = os.environ.get("WEIYU_CSP_MEDIA_SOURCES", "").split()
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:", *_MEDIA_SOURCES],
        "media-src": ["'self'", "blob:", *_MEDIA_SOURCES],
        "connect-src": ["'self'", *_MEDIA_SOURCES],
        "font-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'self'"],
    }
}
if WEIYU_CSP:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "csp.middleware.CSPMiddleware",
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}

# --- public sign-up (TEN-4, tenants.signup, docs/operations.md "Sign-up"): a company signs up on
# the platform domain at /signup/, verifies its e-mail and gets a tenant on a trial plan.
#: off: /signup/ says sign-up is closed (the platform operator creates tenants)
WEIYU_SIGNUP = env_bool("WEIYU_SIGNUP", default=True)
#: new tenants' host names are ``<subdomain>.<this>`` (e.g. ``weiyu.example.com``)
WEIYU_SIGNUP_DOMAIN = os.environ.get("WEIYU_SIGNUP_DOMAIN", "localhost").strip().lower()
#: custom domains (tenants.domains): the class that looks up their TXT records
WEIYU_DNS_RESOLVER = os.environ.get("WEIYU_DNS_RESOLVER", "tenants.domains.DnsTxtResolver")
#: seconds a verification link works
WEIYU_SIGNUP_LINK_MAX_AGE_S = int(os.environ.get("WEIYU_SIGNUP_LINK_MAX_AGE_S", str(2 * 86400)))
#: sign-ups (forms sent) per client address per hour; 0: off
WEIYU_SIGNUP_PER_IP_HOUR = int(os.environ.get("WEIYU_SIGNUP_PER_IP_HOUR", "5"))
# GET /tls/ask (tenants.views.tls_ask, the TLS proxy's on-demand question): per client address
WEIYU_TLS_ASK_PER_IP_MINUTE = int(os.environ.get("WEIYU_TLS_ASK_PER_IP_MINUTE", "120"))
#: subdomains nobody may take (comma-separated, added to the shipped list in tenants.signup)
WEIYU_SIGNUP_RESERVED = [
    s.strip().lower() for s in os.environ.get("WEIYU_SIGNUP_RESERVED", "").split(",") if s.strip()
]
#: disposable e-mail domains refused (comma-separated, added to the shipped list in
#: tenants.signup); WEIYU_SIGNUP_DISPOSABLE_FILE: a file with one domain a line, added too
WEIYU_SIGNUP_DISPOSABLE_DOMAINS = [
    s.strip().lower()
    for s in os.environ.get("WEIYU_SIGNUP_DISPOSABLE_DOMAINS", "").split(",")
    if s.strip()
]
WEIYU_SIGNUP_DISPOSABLE_FILE = os.environ.get("WEIYU_SIGNUP_DISPOSABLE_FILE", "")
#: the plan (its code) a sign-up gets; made with these limits when missing (tenants.signup)
WEIYU_SIGNUP_PLAN = os.environ.get("WEIYU_SIGNUP_PLAN", "trial")
WEIYU_TRIAL_DAYS = int(os.environ.get("WEIYU_TRIAL_DAYS", "14"))
CELERY_BEAT_SCHEDULE["tenants-usage-rollup"] = {
    "task": "tenants.tasks.usage_rollup_all_task",
    "schedule": float(os.environ.get("WEIYU_USAGE_ROLLUP_INTERVAL_S", "300")),
}
CELERY_BEAT_SCHEDULE["tenants-signups-purge"] = {
    "task": "tenants.tasks.signups_purge_task",
    "schedule": 3600.0,
}
#: days between "Schedule deletion" and the deletion of a tenant (tenants.lifecycle)
WEIYU_TENANT_DELETE_GRACE_DAYS = int(os.environ.get("WEIYU_TENANT_DELETE_GRACE_DAYS", "30"))
CELERY_BEAT_SCHEDULE["tenants-delete-due"] = {
    "task": "tenants.tasks.tenants_delete_due_task",
    "schedule": 3600.0,
}
# the spare schema pool (tenants/pool.py) is refilled after each sign-up; this catches up after
# a worker was down or a deploy
CELERY_BEAT_SCHEDULE["tenants-spares-fill"] = {
    "task": "tenants.tasks.spares_fill_task",
    "schedule": 600.0,
}
#: beat fan-out (tenants/fanout.py): tenants per chunk task, and seconds between two passes that
#: visit every tenant, not only those marked live
WEIYU_FANOUT_CHUNK = int(os.environ.get("WEIYU_FANOUT_CHUNK", "50"))
# a beat chunk's statements wait at most this long for a lock (tenants.fanout.chunk_run), seconds
WEIYU_FANOUT_LOCK_TIMEOUT_S = float(os.environ.get("WEIYU_FANOUT_LOCK_TIMEOUT_S", "5"))
WEIYU_FANOUT_SWEEP_S = float(os.environ.get("WEIYU_FANOUT_SWEEP_S", "300"))
# a pass of a beat task holds the next one back while its chunks are under way; one whose chunks
# show no progress (a chunk started, a tenant done) for this long (a killed worker) no longer
# does, seconds
WEIYU_FANOUT_PASS_STALE_S = float(os.environ.get("WEIYU_FANOUT_PASS_STALE_S", "30"))
CELERY_BEAT_SCHEDULE["tenants-trials-expire"] = {
    "task": "tenants.tasks.trials_expire_task",
    "schedule": 60.0,
}
