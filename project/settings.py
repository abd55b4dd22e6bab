"""Switchyard settings: everything comes from the environment, with defaults that just work.

With no environment at all Switchyard runs on a SQLite file and an embedded (filesystem)
Celery broker, so one machine needs neither PostgreSQL nor Redis. ``DATABASE_URL`` switches
to PostgreSQL, ``REDIS_URL`` (or ``CELERY_BROKER_URL``) to Redis. Any secret may also be read
from a file named by ``<NAME>_FILE`` (Docker and Kubernetes secrets).
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from project.env import PLACEHOLDER_SECRET_KEYS, env, env_bool, env_int, env_list, secret_key_kept

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("SWITCHYARD_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the SQLite file, file cache and embedded broker live here

# Off unless asked for: a debug page shows settings (DATABASE_URL with its password) to anyone.
DEBUG = env_bool("DEBUG", False)
# Without SECRET_KEY, one machine keeps a generated key under VAR_DIR (like bin/run's admin password).
SECRET_KEY = env("SECRET_KEY", "") or secret_key_kept(VAR_DIR / "secret-key")
if SECRET_KEY in PLACEHOLDER_SECRET_KEYS:
    raise ImproperlyConfigured("SECRET_KEY is still the placeholder from .env.example: set a long random one.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# HTTPS: all off by default (bin/run serves plain HTTP on localhost); README "Production settings".
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # a load balancer's plain-HTTP health check
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy: the header it sets (e.g. X-Forwarded-Proto) says the request was https.
if _proxy_header := env("SECURE_PROXY_SSL_HEADER", ""):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
CONTENT_SECURITY_POLICY = env(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, no CDN
    "axes",
    "core",
    "accounts",
    "routing",
    "agents",
    "metrics",
    "gateway",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "project.middleware.ApiTrailingSlashMiddleware",  # before CommonMiddleware's 301 to the slashed URL
    "project.middleware.NulInQueryMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into its 429 answer
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'switchyard.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# A pool of PostgreSQL connections for the web process under ASGI (bin/run sets it), where each
# request's sync work runs in a thread of its own: without it, every request connects anew.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 0)
if DATABASE_POOL_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_SIZE}
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django's rule: a pooled connection goes back at close
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A web server and a worker share the file: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Repeated login failures (the login page and the admin) lock that username from that address out
# for a while; the API's token and session users are throttled below instead.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies for WhiteNoise, with or without DEBUG. Not the manifest storage: its
    # {% static %} needs collectstatic first, which a test run or a fresh checkout has not done.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Redis serves the cache (cool-downs and in-flight slots shared by every worker) and the
# broker. Without it, a file cache and a filesystem broker do the same job on one machine.
REDIS_URL = env("REDIS_URL", "")
if REDIS_URL:
    # Short socket timeouts: a hung Redis costs a call seconds, not forever (routing.health then
    # works without the cache for a while).
    CACHES = {
        "default": {
            # One client and pool per process: Django's make one per request under ASGI (core.redis_pool).
            "BACKEND": "core.redis_pool.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "pool_class": "core.redis_pool.SharedConnectionPool",
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    _broker_dir.mkdir(exist_ok=True)
    (VAR_DIR / "broker-control").mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(VAR_DIR / "broker-control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task not acknowledged within this time is delivered again (a killed worker).
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 900),
        # A hung Redis must not hold a request: sending fails within seconds instead (the run is
        # committed as queued, and the sweeper sends it again).
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
    }
# Sending a task: connect within 2 s, try twice, then give up (agents.queue logs it).
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes the database connection around every task unless told to reuse it, and a new
# connection per run is a large part of a run's overhead. Each task still drops a broken or
# too old one first (project.celery.DatabaseTask).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 100)
CELERY_TIMEZONE = "UTC"
# Housekeeping (the sweeper, rollups, the monthly report) has its own queue, so a backlog of runs
# never delays it: every worker consumes both (`-Q celery,housekeeping`), and Redis hands a free
# worker process the next message from either queue in turn.
CELERY_TASK_ROUTES = {
    "agents.tasks.runs_sweep": {"queue": "housekeeping"},
    "metrics.tasks.*": {"queue": "housekeeping"},
}
CELERY_BEAT_SCHEDULE: dict = {
    # Re-enqueue runs whose message was lost, fail runs past the time limit, close workflows.
    "agents-runs-sweep": {"task": "agents.tasks.runs_sweep", "schedule": 60.0, "options": {"expires": 55}},
}

# Metrics: keep the rollups fresh; on the 1st (UTC) store and email last month's savings report.
CELERY_BEAT_SCHEDULE["metrics-rollup-refresh"] = {
    "task": "metrics.tasks.rollup_refresh_task",
    "schedule": 300.0,
    "options": {"expires": 240},
}
CELERY_BEAT_SCHEDULE["metrics-monthly-report"] = {
    "task": "metrics.tasks.monthly_report_send_task",
    "schedule": crontab(minute=0, hour=2, day_of_month=1),
    "options": {"expires": 6 * 3600},
}

# Switchyard's own knobs.
OLLAMA_HOST = env("OLLAMA_HOST", "http://localhost:11434")
# Provider API keys are read only from variables with these names (glob patterns allowed): a
# provider naming any other variable (SECRET_KEY, DATABASE_URL) is treated as having no key.
SWITCHYARD_API_KEY_ENV_ALLOWED = env_list("SWITCHYARD_API_KEY_ENV_ALLOWED", ["*_API_KEY"])
# Providers on internal addresses (loopback, private, link-local, ...) are refused unless their host
# (host, host:port, an address or a network) is listed here; OLLAMA_HOST's host and port always are.
SWITCHYARD_ALLOWED_PROVIDER_HOSTS = env_list("SWITCHYARD_ALLOWED_PROVIDER_HOSTS", [])
SWITCHYARD_CONFIG_DIR = Path(env("SWITCHYARD_CONFIG_DIR", str(BASE_DIR / "config")))
SWITCHYARD_MAX_PROMPT_CHARS = env_int("SWITCHYARD_MAX_PROMPT_CHARS", 100_000)
SWITCHYARD_RUN_TIME_LIMIT = env_int("SWITCHYARD_RUN_TIME_LIMIT", 600)
# A running run whose worker's heartbeat is older than this may be taken over (a killed worker).
SWITCHYARD_RUN_LEASE_SECONDS = env_int("SWITCHYARD_RUN_LEASE_SECONDS", 30)
# A run still queued this long after it was enqueued is enqueued again (a lost broker message).
SWITCHYARD_REQUEUE_AFTER_SECONDS = env_int("SWITCHYARD_REQUEUE_AFTER_SECONDS", 300)
SWITCHYARD_REPORT_RECIPIENTS = env_list("SWITCHYARD_REPORT_RECIPIENTS", [])
# Gateway calls a web process runs at once (each holds a thread, and a database connection while it
# runs); more wait for a free thread. The event loop's default pool would allow 6 on two cores.
SWITCHYARD_GATEWAY_CONCURRENCY = env_int("SWITCHYARD_GATEWAY_CONCURRENCY", 32)
# Each API key's rate limits at the gateway where the key sets none (accounts.ApiKey), per minute
# across every web process (gateway.rate_limits); 0: not limited. A user may lower them on their
# own keys; staff may raise them per key in the admin.
SWITCHYARD_KEY_RPM = env_int("SWITCHYARD_KEY_RPM", 120)
SWITCHYARD_KEY_TPM = env_int("SWITCHYARD_KEY_TPM", 200_000)

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "switchyard@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "project.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Request bodies are JSON only (the web UI posts Django forms, not through DRF); the parser
    # refuses documents nested too deeply with a 400.
    "DEFAULT_PARSER_CLASSES": ["project.parsers.JSONParser"],
    # One JSON error shape for every refusal (project/api_errors.py).
    "EXCEPTION_HANDLER": "project.api_errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # Per user (anonymous callers per address); over the rate the answer is a 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": [
        "project.throttling.AnonRateThrottle",
        "project.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", "60/minute"),
        "user": env("API_THROTTLE_USER", "600/minute"),
    },
    # Anonymous callers are counted per address: REMOTE_ADDR unless proxies are declared. Left
    # unset, DRF would count per X-Forwarded-For, which a caller writes itself (a new value each time).
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard API",
    "DESCRIPTION": "Submit agent runs and workflows, read providers and savings reports.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request and response shapes as separate components: generated clients get plain input classes.
    "COMPONENT_SPLIT_REQUEST": True,
    # Ids are matched as text (a bad one answers a JSON 404) but are integers: agents/api_urls.py.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "project.api_schema.postprocess_schema",
    ],
    # Two enums share the field name "status": name each after what it is.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "agents.models.RunStatus",
        "ProviderStateEnum": "routing.selectors.ProviderState",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
