"""Mission Control settings.

Every environment value is read here, at the top, through django-environ, and a bad
value fails loudly at start-up. Secrets may also come from ``<NAME>_FILE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A run under pytest gets test defaults (no SSL redirect, a throwaway key).
TESTING = "pytest" in sys.modules
# Django's development server (`make run`): one short-lived thread per request.
RUNSERVER = sys.argv[1:2] == ["runserver"]


def _secret(name: str, default: str = "") -> str:
    """Read a secret from NAME or from the file named by NAME_FILE."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return env.str(name, default=default)


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _secret("SECRET_KEY")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-development-key-do-not-use-in-production-0123456789"
    else:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
if TESTING:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'mission_control.sqlite3'}"
    )
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded default: WAL lets readers run beside the one writer; IMMEDIATE takes the
    # write lock at BEGIN so claims serialize instead of failing on lock upgrade.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
        ),
        **_db.get("OPTIONS", {}),
    }
else:
    # Persistent connections pay off only where threads are reused (gunicorn workers,
    # orchestrator managers). runserver starts a thread per request, and each would keep
    # its own connection open: there they are closed after every request.
    _db.setdefault("CONN_MAX_AGE", 0 if RUNSERVER else env.int("DB_CONN_MAX_AGE", default=60))
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})
    _db["OPTIONS"].setdefault(
        "application_name", env.str("DB_APPLICATION_NAME", default="mission-control")
    )
    _db.setdefault("TEST", {})

IS_POSTGRES = _db["ENGINE"].startswith("django.db.backends.postgresql")
# The covering index's INCLUDE columns are a PostgreSQL feature; SQLite builds the index
# without them, which is fine for the embedded database: don't warn at every migrate.
SILENCED_SYSTEM_CHECKS = [] if IS_POSTGRES else ["models.W040"]

ETL_API_ENDPOINT = env.str("ETL_API_ENDPOINT", default="")
ETL_API_KEY = _secret("ETL_API_KEY")
REDIS_URL = env.str("REDIS_URL", default="")
# One cache shared by every process: rate limits (DRF throttles), django-axes and
# django-q's statistics count there, so 3 gunicorn workers share one 30/min budget
# instead of 30/min each. CACHE_URL (django-environ: rediscache://, dbcache://, ...)
# wins; else Redis when REDIS_URL is set, else the database cache (table `mc_cache`,
# created by a migration). Tests keep a per-process memory cache unless CACHE_URL is set.
CACHE_TABLE = "mc_cache"
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache_url("CACHE_URL")}
elif TESTING:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": CACHE_TABLE,
        }
    }
LOCALNODE_ENABLED = env.bool("LOCALNODE_ENABLED", default=not IS_POSTGRES)
LOCALNODE_API_KEY = _secret("LOCALNODE_API_KEY")
# The built-in uploader's files (inside the data folder, never served as static files).
LOCALNODE_UPLOADS_DIR = env.path("LOCALNODE_UPLOADS_DIR", default=VAR_DIR / "uploads")
# Screenshots of failure evidence (mission_control/evidence_files.py): files in the data
# folder, the database keeps their path; served only to logged-in users.
EVIDENCE_DIR = env.path("EVIDENCE_DIR", default=VAR_DIR / "evidence")
# The built-in worker's `browserbase` provider (localnode/browserbase.py): offered only
# when both the key and the project are set. The key is a secret: never logged.
BROWSERBASE_API_KEY = _secret("BROWSERBASE_API_KEY")
BROWSERBASE_PROJECT_ID = env.str("BROWSERBASE_PROJECT_ID", default="")
BROWSERBASE_BASE_URL = env.str("BROWSERBASE_BASE_URL", default="")
BROWSERBASE_REGION = env.str("BROWSERBASE_REGION", default="")
PROXY_CHECK_URL = env.str("PROXY_CHECK_URL", default="https://httpbin.org/ip")
# The outbound policy (mission_control.outbound) of every address dialed for a user:
# connection tests, webhooks, the built-in worker. Loopback and private addresses are
# off by default in production (deploy check mission_control.W003): list the networks
# of your services in OUTBOUND_ALLOWED_NETWORKS, or name exact hosts (`host` or
# `host:port`) in OUTBOUND_ALLOWED_HOSTS. CONNECTION_TEST_* are the former names.
OUTBOUND_ALLOW_PRIVATE = env.bool(
    "OUTBOUND_ALLOW_PRIVATE",
    default=env.bool("CONNECTION_TEST_ALLOW_PRIVATE", default=DEBUG or TESTING),
)
OUTBOUND_ALLOWED_HOSTS = env.list("OUTBOUND_ALLOWED_HOSTS", default=[])
ORCHESTRATOR_INSTANCE_NAME = env.str("ORCHESTRATOR_INSTANCE_NAME", default="")
# An engine transaction never waits on anything but its own statements: one idle this long
# belongs to a process frozen mid-transaction (SIGSTOP, a VM paused), and PostgreSQL ends
# it so that its row locks stop blocking the process that took over its leases.
ORCHESTRATOR_IDLE_TX_TIMEOUT_S = env.float("ORCHESTRATOR_IDLE_TX_TIMEOUT_S", default=30.0)
# `run_orchestrator` splits its managers over this many processes (one core each).
ORCHESTRATOR_PROCESSES = env.int("ORCHESTRATOR_PROCESSES", default=1)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

# --- Security and observability (audit app, mission_control.crypto/metrics/health) ---
# Fernet keys for secrets at rest, newest first (rotate: prepend, run
# `manage.py rotate_secret_keys`, then drop the old key). Empty only with DEBUG/tests.
SECRETS_ENCRYPTION_KEYS = [k for k in _secret("SECRETS_ENCRYPTION_KEYS").split(",") if k.strip()]
# Private networks (CIDR) the server may dial even when private ranges are off.
OUTBOUND_ALLOWED_NETWORKS = env.list(
    "OUTBOUND_ALLOWED_NETWORKS",
    default=env.list("CONNECTION_TEST_ALLOWED_NETWORKS", default=[]),
)
CONNECTION_TEST_RATE = env.str("CONNECTION_TEST_RATE", default="30/min")
# POST /api/auth/token/ per client address (DRF's "login" throttle).
LOGIN_RATE = env.str("LOGIN_RATE", default="10/min")
# /metrics: a bearer token for Prometheus (or a staff session); empty = staff only.
METRICS_TOKEN = _secret("METRICS_TOKEN")
METRICS_EVENT_WINDOW_S = env.int("METRICS_EVENT_WINDOW_S", default=300)
# /readyz and /healthz/orchestrator: a heartbeat older than this is stale.
HEALTH_HEARTBEAT_MAX_AGE_S = env.int("HEALTH_HEARTBEAT_MAX_AGE_S", default=60)
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG or TESTING else "json")
# django-axes: lock a username+address pair out after repeated failed logins.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
# Locked per username+address and per address (spraying many usernames from one
# address is locked too). The address is mission_control.clientip.client_ip.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_CLIENT_IP_CALLABLE = "mission_control.clientip.client_ip"
# Reverse proxies in front of the app that append to X-Forwarded-For (the TLS proxy
# of docs/deploy.md is 1). 0: REMOTE_ADDR is the client and the header is ignored.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# API tokens (registry.tokens): stored as SHA-256 only; days until one expires, 0 = never.
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=30)
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_SENSITIVE_PARAMETERS = ["password", "api_key", "token"]
AXES_VERBOSE = False

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "registry",
    "orchestrator",
    "localnode",
    "dashboard",
    "axes",
    "audit",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses locked-out credentials before any password check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # HTML compressed (whitenoise compresses static files itself): the console's pages
    # carry their stylesheet inline. Django pads gzip output against BREACH.
    "django.middleware.gzip.GZipMiddleware",
    # Hostile input (oversized bodies, NUL bytes, lone surrogates) is a 4xx, never a 500.
    "mission_control.hardening.InputGuardMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "audit.middleware.AuditContextMiddleware",
    # Last: turns a lockout flagged during the view into a 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mission_control.urls"
WSGI_APPLICATION = "mission_control.wsgi.application"
ASGI_APPLICATION = "mission_control.asgi.application"

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
            ],
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Pinned: the console and the admin are pt-BR whatever the browser's Accept-Language
# (no LocaleMiddleware), so numbers, dates and messages never switch language.
LANGUAGE_CODE = "pt-br"
LANGUAGES = [("pt-br", "Português (Brasil)")]
TIME_ZONE = "America/Sao_Paulo"
USE_I18N = True
USE_TZ = True
LOCALE_PATHS = [BASE_DIR / "locale"]

STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# A mission of 100k URLs is about 4 MB of JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=32 * 1024 * 1024)
# Proxy imports (API JSON, text/csv, multipart, dashboard, import_proxies) are read as
# streams: at most this many bytes (413 past it) and entries (400), whatever the body.
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=DATA_UPLOAD_MAX_MEMORY_SIZE)
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=200_000)
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# Security: strict unless DEBUG; each can be overridden (e.g. TLS terminated upstream).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not (DEBUG or TESTING))
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not (DEBUG or TESTING))
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not (DEBUG or TESTING))
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG or TESTING else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=SECURE_HSTS_SECONDS > 0)
# Load balancers and the container HEALTHCHECK probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^healthz/orchestrator$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
# Content-Security-Policy on every response (django-csp). Everything is same-origin:
# fonts, app.js and the Swagger UI (drf-spectacular-sidecar) are self-hosted. The few
# inline <script>/<style> blocks carry the per-request nonce ({{ CSP_NONCE }});
# inline style="" attributes and eval are refused. data: images are the favicon and
# the icons inside the admin's and Swagger UI's CSS.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Hashed, expiring, revocable tokens (registry.tokens).
        "registry.tokens.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["mission_control.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "mission_control.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "mission_control.filters.FilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON with a depth limit and NUL/surrogate/number-range checks (mission_control.hardening).
    "DEFAULT_PARSER_CLASSES": [
        "mission_control.hardening.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "mission_control.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {"login": LOGIN_RATE, "connection_test": CONNECTION_TEST_RATE},
    # No NUM_PROXIES: the throttles (mission_control.throttling) key on
    # mission_control.clientip.client_ip, like the audit log and axes.
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Mission Control API",
    "DESCRIPTION": (
        "Orchestrates web-scraping missions over workers, writers and proxies. Every text"
        " field refuses NUL characters and lone surrogates (400, the field named)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs page need the viewer role, like the API itself.
    "SERVE_PERMISSIONS": ["mission_control.permissions.ViewerRole"],
    # Swagger UI from drf-spectacular-sidecar's static files, not a CDN (CSP: 'self').
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge image from the public validator (CSP img-src 'self').
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status`; the items' one gets a stable name.
    "ENUM_NAME_OVERRIDES": {"ItemStatusEnum": "orchestrator.states.ItemStatus"},
    # Request bodies are documented as JSON (the form parsers stay on for the browsable
    # API): nested fields such as `urls` have no faithful form encoding.
    "PARSER_WHITELIST": ["mission_control.hardening.JSONParser"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "mission_control.openapi.add_error_responses",
    ],
}

Q_CLUSTER: dict[str, object] = {
    "name": "mission-control",
    "workers": env.int("Q_WORKERS", default=2),
    # timeout < retry, or a slow task is handed out twice while still running.
    "timeout": env.int("Q_TIMEOUT", default=120),
    "retry": env.int("Q_RETRY", default=180),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "catch_up": False,
    "save_limit": 500,
    "ack_failures": True,
    "label": "Tarefas",
    "sync": TESTING,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "mission_control.logging.RedactSecretsFilter"},
        "quiet_health": {"()": "mission_control.logging.QuietHealthChecksFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "mission_control.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler would print each django.* record a second time
        # (the root handler prints it too): one handler, the root's.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # runserver's request lines, without the successful health checks.
        "django.server": {"filters": ["quiet_health"], "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
