"""The one settings module. Everything deployment-specific comes from the environment through
the typed helpers in `chestnet_site.env`; defaults are safe for a local checkout (SQLite,
DEBUG off unless the local run command turns it on, and then for local host names only).
With CHESTNET_ENV=production the site refuses to start with DEBUG on, without a strong
SECRET_KEY or with `*` in ALLOWED_HOSTS, and the web process (chestnet_site.wsgi) refuses to
start on any warning of `manage.py check --deploy`."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chestnet_site import secret_key
from chestnet_site.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_path,
    env_str,
)
from chestnet_site.project_apps import PROJECT_APPS

BASE_DIR = Path(__file__).resolve().parent.parent
ENVIRONMENT = env_choice("CHESTNET_ENV", ("development", "production"), "development")
PRODUCTION = ENVIRONMENT == "production"
# Database (SQLite), media and logs of a local run live here; ignored by git.
CHESTNET_HOME = env_path("CHESTNET_HOME", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
# docker/.env.example's placeholder; any key estimated below secret_key.MIN_BITS (256) of
# entropy is refused too (Django's own check, security.W009, passes `password` x 7).
_PLACEHOLDER_SECRET_KEYS = {"replace-with-a-long-random-string"}
_LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured(
            "DEBUG must be off when CHESTNET_ENV=production: its error pages show settings "
            "and code to whoever reaches the site."
        )
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when CHESTNET_ENV=production.")
    if (
        SECRET_KEY in _PLACEHOLDER_SECRET_KEYS
        or SECRET_KEY.startswith("django-insecure-")
        or secret_key.estimated_bits(SECRET_KEY) < secret_key.MIN_BITS
    ):
        raise ImproperlyConfigured(
            "SECRET_KEY is a placeholder or too weak for CHESTNET_ENV=production (under "
            f"{secret_key.MIN_BITS} bits of estimated entropy): generate one with "
            'python3 -c "import secrets; print(secrets.token_urlsafe(50))".'
        )
elif not SECRET_KEY:
    SECRET_KEY = "django-insecure-chestnet-local-development-only"  # noqa: S105
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else _LOCAL_HOSTS)
if PRODUCTION and any("*" in host for host in ALLOWED_HOSTS):
    # `*` answers any Host header: password-reset links and absolute URLs could then name
    # a host the attacker chose.
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS may not contain '*' when CHESTNET_ENV=production: name the host "
        "names the site answers to, e.g. ALLOWED_HOSTS=chestnet.example.org."
    )
if DEBUG and not set(ALLOWED_HOSTS) <= set(_LOCAL_HOSTS):
    # The server binds to loopback (`make run`); local host names also keep a page from
    # another site (DNS rebinding) from reaching the debug pages.
    raise ImproperlyConfigured(
        f"With DEBUG on, ALLOWED_HOSTS may only name {', '.join(_LOCAL_HOSTS)}: debug pages "
        "must not reach another host. Turn DEBUG off to serve other host names."
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens, stored as digests (the model: accounts.ApiToken)
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally (no CDN)
    "axes",
    "csp",  # django-csp: the Content-Security-Policy header (CONTENT_SECURITY_POLICY)
    *PROJECT_APPS,
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # before WhiteNoise: static files carry it too
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.middleware.SessionActivityMiddleware",
    "chestnet_site.middleware.UnavailableMiddleware",  # a database or image store that is down: 503
    "chestnet_site.middleware.ApiErrorsMiddleware",  # JSON, never an HTML (debug) page, for the API
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a refused login into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chestnet_site.urls"
WSGI_APPLICATION = "chestnet_site.wsgi.application"
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
                "diagnosis.context_processors.roles",
                "monitoring.context_processors.alerts",
            ],
        },
    },
]

_SQLITE_URL = f"sqlite:///{CHESTNET_HOME / 'chestnet.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", _SQLITE_URL) or _SQLITE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    CHESTNET_HOME.mkdir(parents=True, exist_ok=True)
    # A file, not :memory:, so a Celery worker process in the tests can share the test DB.
    DATABASES["default"]["TEST"] = {"NAME": str(CHESTNET_HOME / "test.sqlite3")}
    # Write-ahead log: the web processes and the worker read while one of them writes, and a
    # commit appends to one file instead of creating and deleting a journal. Durability is
    # unchanged (synchronous stays FULL). The -wal and -shm files beside the database
    # belong to it.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Access (docs/operations.md, "Access"). django-axes checks every password login (the form,
# the admin, the API token endpoint) before Django's own backend does.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# CHESTNET_LOGIN_FAILURE_LIMIT failures for one username from one address, each within
# CHESTNET_LOGIN_LOCKOUT_MIN of the last, lock that pair out for CHESTNET_LOGIN_LOCKOUT_MIN
# (counted from the locking failure; attempts meanwhile do not extend it).
AXES_FAILURE_LIMIT = env_int("CHESTNET_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("CHESTNET_LOGIN_LOCKOUT_MIN", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.addresses.client_address"
AXES_DISABLE_ACCESS_LOG = True  # logins and logouts are in the audit trail (AuditEvent)
AXES_VERBOSE = False  # no banner at every process start; failures are still logged
# Reverse proxies in front that append the client's address to X-Forwarded-For; 0: the
# connection's address (REMOTE_ADDR) is the client's, and the header is ignored.
CHESTNET_PROXY_COUNT = env_int("CHESTNET_PROXY_COUNT", 0, minimum=0)
# API tokens stop working this long after they were issued (a person's, an integration's);
# an API logout revokes the token it is sent with, and only that one.
CHESTNET_API_TOKEN_TTL_H = env_int("CHESTNET_API_TOKEN_TTL_H", 12, minimum=1)
CHESTNET_INTEGRATION_TOKEN_TTL_D = env_int("CHESTNET_INTEGRATION_TOKEN_TTL_D", 365, minimum=1)
# Live tokens one account may hold: a script that logs in at every run cannot pile up rows.
CHESTNET_API_TOKENS_PER_USER = env_int("CHESTNET_API_TOKENS_PER_USER", 20, minimum=1)
# django-rest-knox: tokens hashed (SHA-512) in accounts.ApiToken, several per user, sent as
# `Authorization: Token <secret>`; each gets its lifetime when issued (accounts.tokens).
KNOX_TOKEN_MODEL = "accounts.ApiToken"
REST_KNOX = {"AUTH_HEADER_PREFIX": "Token", "AUTO_REFRESH": False}
# knox's own migrations create its default table even when KNOX_TOKEN_MODEL replaces it (they
# do not mark it swappable): an unused table holding a key to auth_user, which PostgreSQL's
# TRUNCATE of the users then refuses. Without them nothing of knox's reaches the database.
MIGRATION_MODULES = {"knox": None}
# Web sessions end after CHESTNET_SESSION_IDLE_MIN without an action (background polls do
# not count: accounts.middleware.SessionActivityMiddleware) and, by default, with the browser.
CHESTNET_SESSION_IDLE_MIN = env_int("CHESTNET_SESSION_IDLE_MIN", 30, minimum=1)
SESSION_COOKIE_AGE = CHESTNET_SESSION_IDLE_MIN * 60
SESSION_SAVE_EVERY_REQUEST = False  # the middleware above renews sessions on activity only
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("CHESTNET_SESSION_AT_BROWSER_CLOSE", True)
# Requests per minute to the API, per signed-in user and per address for anonymous ones.
CHESTNET_API_USER_RATE_PER_MIN = env_int("CHESTNET_API_USER_RATE_PER_MIN", 600, minimum=1)
CHESTNET_API_ANON_RATE_PER_MIN = env_int("CHESTNET_API_ANON_RATE_PER_MIN", 60, minimum=1)
# /metrics for Prometheus (docs/operations.md, "Metrics"): read with this bearer token
# (empty: no token opens it), or from these addresses or networks ("none": from none),
# matched against the connection's own address; a request relayed by a proxy needs the token.
CHESTNET_METRICS_TOKEN = env_str("CHESTNET_METRICS_TOKEN", "") or ""
if CHESTNET_METRICS_TOKEN and len(CHESTNET_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("CHESTNET_METRICS_TOKEN must be at least 32 characters.")
CHESTNET_METRICS_ALLOWED_IPS = env_list("CHESTNET_METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
if CHESTNET_METRICS_ALLOWED_IPS == ["none"]:
    CHESTNET_METRICS_ALLOWED_IPS = []
for _network in CHESTNET_METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"CHESTNET_METRICS_ALLOWED_IPS must list addresses or networks (10.0.0.0/8), "
            f"got {_network!r}."
        ) from None

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", CHESTNET_HOME / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Radiographs are never served from MEDIA_URL: only through views that check the user.
MEDIA_ROOT = env_path("MEDIA_ROOT", CHESTNET_HOME / "media")
# Where every stored file lives (originals, previews, heatmaps, dataset images, imports,
# model artifacts, evaluation plots): MEDIA_ROOT on a local (or mounted) file system, or a
# private bucket of an S3-compatible object store (docs/operations.md, "Object storage").
CHESTNET_STORAGE = env_choice("CHESTNET_STORAGE", ("local", "s3"), "local")
_S3_REQUIRED = (
    "AWS_S3_ENDPOINT_URL",
    "AWS_STORAGE_BUCKET_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
# A request whose body is larger than this writes its files to temporary files (in
# FILE_UPLOAD_TEMP_DIR; empty: the system's temporary folder) as they arrive, and they are
# checked and stored from there in chunks: 20 files of 45 MB cost the web process a few
# MB, not a gigabyte (docs/benchmarks.md). Django's default handlers (memory, then
# temporary file) apply the limit to the whole request, so no request keeps more than this
# in memory. STOW-RS bodies are spooled to the same folder (dicomnet.stow).
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None
# Files read back from the object store larger than this spill to disk (django-storages'
# default would keep a whole 4 GB import zip in memory).
_S3_READ_MEMORY_SIZE = 5 * 1024 * 1024


def storage_from_env(kind: str) -> dict[str, Any]:
    """STORAGES["default"] for CHESTNET_STORAGE `kind`, the rest from the environment."""
    if kind == "local":
        # Django's, but a write that fails (a full disk) leaves no partial file behind.
        return {"BACKEND": "chestnet_site.storage.FileSystemStorage"}
    missing = [name for name in _S3_REQUIRED if not env_str(name)]
    if missing:
        raise ImproperlyConfigured(
            f"CHESTNET_STORAGE=s3 needs {', '.join(missing)} (the object store's URL, the "
            "bucket, and the access key and secret ChestNet signs its requests with)."
        )
    endpoint = env_str("AWS_S3_ENDPOINT_URL") or ""
    if not re.fullmatch(r"https?://[^/\s]+/?", endpoint):
        raise ImproperlyConfigured(
            f"AWS_S3_ENDPOINT_URL must read http(s)://host[:port], got {endpoint!r}."
        )
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "endpoint_url": endpoint,
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME"),
            "access_key": env_str("AWS_ACCESS_KEY_ID"),
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY"),
            "region_name": env_str("AWS_S3_REGION_NAME"),
            # Private objects: no ACL (the bucket's own, private, applies), and url() gives
            # an unsigned URL the bucket refuses (the admin renders links to FileFields):
            # files reach people only through the views that check access and audit.
            "default_acl": None,
            "querystring_auth": False,
            "file_overwrite": False,
            "max_memory_size": _S3_READ_MEMORY_SIZE,
            "client_config": _s3_client_config(),
        },
    }


def _s3_client_config() -> Any:
    """Bounded waits (5 s to connect, 30 s per read, 4 attempts with botocore's standard
    retries): a store that is down or hangs fails the request with a connection or timeout
    error instead of hanging a web or worker process. Checksums only where S3 requires them:
    not every S3-compatible store accepts botocore's default CRC32 trailers. Path-style
    addressing by default, as SeaweedFS and MinIO want."""
    from botocore.config import Config

    style = env_choice("AWS_S3_ADDRESSING_STYLE", ("path", "virtual", "auto"), "path")
    return Config(
        s3={"addressing_style": style},
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 4, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


STORAGES = {
    "default": storage_from_env(CHESTNET_STORAGE),
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns when it is missing

# Uploads: one limit per file, checked before decoding; larger files spill to disk
# (FILE_UPLOAD_MAX_MEMORY_SIZE, above).
CHESTNET_MAX_UPLOAD_MB = env_int("CHESTNET_MAX_UPLOAD_MB", 50, minimum=1)
CHESTNET_MAX_FILES_PER_CASE = env_int("CHESTNET_MAX_FILES_PER_CASE", 20, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = CHESTNET_MAX_FILES_PER_CASE
# Empty: the shipped default artifact (ml/artifacts/chestnet-default.keras).
CHESTNET_MODEL_PATH = env_str("CHESTNET_MODEL_PATH", "") or ""
# A queued image with no progress for this long is enqueued again (lost publish, broker down).
CHESTNET_REQUEUE_AFTER_S = env_int("CHESTNET_REQUEUE_AFTER_S", 60, minimum=1)
# A stored file no row names (left by a process that died between writing it and committing
# its row) is removed by beat's sweep once it is this old (diagnosis.orphans); the sweep runs
# every half of it. Longer than any upload or analysis takes between the two.
CHESTNET_ORPHAN_GRACE_S = env_int("CHESTNET_ORPHAN_GRACE_S", 3600, minimum=60)
# When images queue up, one inference task takes up to this many and runs them through the
# model as one batch (each keeps its own claim, attempts and result); 1 turns batching off.
CHESTNET_INFERENCE_BATCH = env_int("CHESTNET_INFERENCE_BATCH", 8, minimum=1)

# Model operations (mlops): dataset imports and training runs.
CHESTNET_IMPORT_MAX_FILES = env_int("CHESTNET_IMPORT_MAX_FILES", 20_000, minimum=1)
CHESTNET_IMPORT_MAX_MB = env_int("CHESTNET_IMPORT_MAX_MB", 4_096, minimum=1)  # uncompressed
CHESTNET_IMPORT_MAX_RATIO = env_int("CHESTNET_IMPORT_MAX_RATIO", 100, minimum=2)  # zip bombs
CHESTNET_TRAINING_TIME_LIMIT_S = env_int("CHESTNET_TRAINING_TIME_LIMIT_S", 12 * 3600, minimum=60)
# Keys the new UIDs of DICOM copies leaving the clinical record (dataset imports, feedback,
# exports; ml.deidentify): one source UID always gets the same new UID, so a study stays one
# study and a file imported twice is recognised. Derived from SECRET_KEY unless set: set it
# before rotating SECRET_KEY, or later copies of the same files get other UIDs and bytes.
CHESTNET_DEID_SALT = (
    env_str("CHESTNET_DEID_SALT")
    or hmac.new(
        str(SECRET_KEY).encode(), b"chestnet-deidentification-salt", hashlib.sha256
    ).hexdigest()
)
# Local copies of model artifacts when the storage is not a local file system.
CHESTNET_MODEL_CACHE = env_path("CHESTNET_MODEL_CACHE", CHESTNET_HOME / "model-cache")
CHESTNET_TRAINING_WORK_DIR = env_path("CHESTNET_TRAINING_WORK_DIR", CHESTNET_HOME / "training")
# Identical audit events (a page polling a case, a list refreshing) by the same user within
# this many seconds are recorded once.
CHESTNET_AUDIT_COALESCE_S = env_int("CHESTNET_AUDIT_COALESCE_S", 300, minimum=0)
# How often signed reports are pulled into the feedback dataset (mlops.execute.feedback).
CHESTNET_FEEDBACK_PULL_S = env_int("CHESTNET_FEEDBACK_PULL_S", 30, minimum=1)
# Activation floors (mlops.rollout): a version whose evidence (its latest test evaluation,
# else its card's validation) falls below them, or rests on fewer test images, is activated
# only with a recorded override reason.
CHESTNET_ACTIVATION_MIN_AUC = env_float("CHESTNET_ACTIVATION_MIN_AUC", 0.95, minimum=0, maximum=1)
CHESTNET_ACTIVATION_MIN_SENSITIVITY = env_float(
    "CHESTNET_ACTIVATION_MIN_SENSITIVITY", 0.95, minimum=0, maximum=1
)
CHESTNET_ACTIVATION_MIN_SPECIFICITY = env_float(
    "CHESTNET_ACTIVATION_MIN_SPECIFICITY", 0.80, minimum=0, maximum=1
)
CHESTNET_ACTIVATION_MIN_TEST_IMAGES = env_int("CHESTNET_ACTIVATION_MIN_TEST_IMAGES", 200, minimum=0)
# Site calibration (mlops.calibration): the share of the site's signed cases held back to
# evaluate the calibrated version (the rest fit it), the fewest images of each class the
# fitting part needs, and the sensitivity the new threshold is chosen for.
CHESTNET_CALIBRATION_HOLDOUT = env_float(
    "CHESTNET_CALIBRATION_HOLDOUT", 0.3, minimum=0.05, maximum=0.9
)
CHESTNET_CALIBRATION_MIN_PER_CLASS = env_int("CHESTNET_CALIBRATION_MIN_PER_CLASS", 50, minimum=1)
CHESTNET_CALIBRATION_TARGET_SENSITIVITY = env_float(
    "CHESTNET_CALIBRATION_TARGET_SENSITIVITY", 0.97, minimum=0.5, maximum=0.999
)
# Monitoring alerts (monitoring.alerts): the active version's last CHESTNET_ALERT_WINDOW
# images, judged once a figure counts CHESTNET_ALERT_MIN_IMAGES (positives for sensitivity,
# negatives for specificity); drift is the PSI of scores against the version's reference.
CHESTNET_ALERT_WINDOW = env_int("CHESTNET_ALERT_WINDOW", 200, minimum=1)
CHESTNET_ALERT_MIN_IMAGES = env_int("CHESTNET_ALERT_MIN_IMAGES", 20, minimum=1)
CHESTNET_ALERT_MIN_SENSITIVITY = env_float(
    "CHESTNET_ALERT_MIN_SENSITIVITY", 0.90, minimum=0, maximum=1
)
CHESTNET_ALERT_MIN_SPECIFICITY = env_float(
    "CHESTNET_ALERT_MIN_SPECIFICITY", 0.75, minimum=0, maximum=1
)
CHESTNET_ALERT_MAX_REFUSAL_RATE = env_float(
    "CHESTNET_ALERT_MAX_REFUSAL_RATE", 0.20, minimum=0, maximum=1
)
CHESTNET_ALERT_MAX_PSI = env_float("CHESTNET_ALERT_MAX_PSI", 0.25, minimum=0)
CHESTNET_ALERT_CHECK_S = env_int("CHESTNET_ALERT_CHECK_S", 300, minimum=5)

# The DICOM network (dicomnet). The listener (C-STORE SCP, C-ECHO) started by `make run`:
# port 0 turns it off; the address it binds (0.0.0.0 to take studies from other hosts) and
# where /healthz finds it. Calling AE titles allowed to send (empty: any).
CHESTNET_DICOM_PORT = env_int("CHESTNET_DICOM_PORT", 11112, minimum=0)
CHESTNET_DICOM_AET = env_str("CHESTNET_DICOM_AET", "CHESTNET") or "CHESTNET"
CHESTNET_DICOM_BIND = env_str("CHESTNET_DICOM_BIND", "127.0.0.1") or "127.0.0.1"
CHESTNET_DICOM_HOST = env_str("CHESTNET_DICOM_HOST", "127.0.0.1") or "127.0.0.1"
CHESTNET_DICOM_ALLOWED_AETS = env_list("CHESTNET_DICOM_ALLOWED_AETS")
for _aet in [CHESTNET_DICOM_AET, *CHESTNET_DICOM_ALLOWED_AETS]:
    if not re.fullmatch(r"[^\\\x00-\x1f]{1,16}", _aet) or not _aet.strip():
        raise ImproperlyConfigured(f"{_aet!r} is not an AE title (1 to 16 characters, no '\\').")
# The account network-received cases belong to (created inactive: it cannot log in).
# The implementation version name the listener sends in every association it accepts: the
# health check tells it from another DICOM service holding the port. Not a setting to change.
CHESTNET_DICOM_IMPLEMENTATION_NAME = "CHESTNET"
# The largest DICOM instance the listener and STOW-RS take (per instance, in MB); larger
# ones are refused with Out of Resources (0xA700), written to disk as they arrive, never
# held whole in memory.
CHESTNET_DICOM_MAX_MB = env_int("CHESTNET_DICOM_MAX_MB", CHESTNET_MAX_UPLOAD_MB, minimum=1)
CHESTNET_DICOM_OWNER = env_str("CHESTNET_DICOM_OWNER", "dicom-network") or "dicom-network"
# Where the AI's findings go back to: "AET@host:port" (empty: nothing is sent).
CHESTNET_PACS = env_str("CHESTNET_PACS", "") or ""
if CHESTNET_PACS and not re.fullmatch(r"[^@\\]{1,16}@[^@:\s]+:\d{1,5}", CHESTNET_PACS):
    raise ImproperlyConfigured("CHESTNET_PACS must read AET@host:port, e.g. PACS@10.0.0.5:104.")
# How often finished results are looked for and due sends retried; the longest wait between
# two attempts of one send (doubling from 2 s); how far back results are looked for.
CHESTNET_PACS_SWEEP_S = env_int("CHESTNET_PACS_SWEEP_S", 5, minimum=1)
CHESTNET_PACS_RETRY_MAX_S = env_int("CHESTNET_PACS_RETRY_MAX_S", 300, minimum=1)
# Tries of one object before it is marked failed (visible; an admin retries it): with the
# doubling backoff from 2 s, 10 tries span about 18 minutes.
CHESTNET_PACS_MAX_ATTEMPTS = env_int("CHESTNET_PACS_MAX_ATTEMPTS", 10, minimum=1)
CHESTNET_PACS_LOOKBACK_H = env_int("CHESTNET_PACS_LOOKBACK_H", 24, minimum=1)

# Celery: ids only, JSON only; late acks so a worker killed mid-task leaves it redelivered.
# `make run` records its private Redis there, so that management commands given the same
# CHESTNET_HOME publish to the same broker as the running workers.
_LOCAL_BROKER_FILE = CHESTNET_HOME / "redis" / "url"
_LOCAL_BROKER = _LOCAL_BROKER_FILE.read_text().strip() if _LOCAL_BROKER_FILE.is_file() else ""
REDIS_URL = env_str("REDIS_URL", "") or _LOCAL_BROKER or "redis://127.0.0.1:6379/0"
CELERY_BROKER_URL = REDIS_URL
# The default cache holds the API's rate counts (chestnet_site.throttling): in Redis whenever
# one is configured (REDIS_URL, `make run`'s own, and always in production), so that every
# web process counts the same requests; otherwise in each process's memory (a plain
# `manage.py runserver`, tests without Redis). A Redis that is down or hung costs a request
# at most a second: the throttles then let it pass, with a warning in the log.
if PRODUCTION or env_str("REDIS_URL") or _LOCAL_BROKER:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chestnet",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# Training, evaluation and dataset imports have their own queue and worker, so inference
# is never starved.
CELERY_TASK_ROUTES = {
    "diagnosis.tasks.inference_run_task": {"queue": "inference"},
    "mlops.tasks.training_run_task": {"queue": "training"},
    "mlops.tasks.evaluation_run_task": {"queue": "training"},
    "mlops.tasks.dataset_import_task": {"queue": "training"},
    "mlops.tasks.calibration_run_task": {"queue": "training"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A message a dead worker held (acks_late) goes back to the queue this long after delivery;
# a live worker's restore scan (every 10 s, not kombu's default 100 s) republishes it. The
# default exceeds the hard time limit plus the longest retry countdown (30 s), so a task that
# is merely slow is not handed to a second worker (that would be harmless, only wasted work:
# claiming stores one result). Tests shorten it to see a redelivery.
CELERY_BROKER_VISIBILITY_TIMEOUT_S = env_int(
    "CELERY_BROKER_VISIBILITY_TIMEOUT_S", CELERY_TASK_TIME_LIMIT * 2, minimum=1
)
# Publishing must not hang an upload when the broker is down or hung (socket_timeout: a
# stalled Redis accepts the connection and never answers): the requeue sweep catches up.
CELERY_BROKER_SOCKET_TIMEOUT_S = env_int("CELERY_BROKER_SOCKET_TIMEOUT_S", 5, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT_S,
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    "socket_timeout": CELERY_BROKER_SOCKET_TIMEOUT_S,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-images": {
        "task": "diagnosis.tasks.requeue_stale_task",
        "schedule": float(max(5, CHESTNET_REQUEUE_AFTER_S // 2)),
    },
    "remove-orphan-files": {
        "task": "diagnosis.tasks.orphans_sweep_task",
        "schedule": float(max(60, CHESTNET_ORPHAN_GRACE_S // 2)),
    },
    "pull-signed-reports-into-feedback": {
        "task": "mlops.tasks.feedback_pull_task",
        "schedule": float(CHESTNET_FEEDBACK_PULL_S),
    },
    "send-findings-to-pacs": {
        "task": "dicomnet.tasks.outbound_sweep_task",
        "schedule": float(CHESTNET_PACS_SWEEP_S),
    },
    "check-monitoring-alerts": {
        "task": "monitoring.tasks.alerts_check_task",
        "schedule": float(CHESTNET_ALERT_CHECK_S),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(CHESTNET_HOME / "celerybeat-schedule")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Counted in the default cache (CACHES: Redis, shared by every web process), atomically.
    "DEFAULT_THROTTLE_CLASSES": [
        "chestnet_site.throttling.AnonRateThrottle",
        "chestnet_site.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": f"{CHESTNET_API_ANON_RATE_PER_MIN}/min",
        "user": f"{CHESTNET_API_USER_RATE_PER_MIN}/min",
    },
    # Anonymous clients are counted by address, found as accounts.addresses.client_address
    # finds it (DRF's default would trust a client-written X-Forwarded-For).
    "NUM_PROXIES": CHESTNET_PROXY_COUNT,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "diagnosis.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ChestNet API",
    "DESCRIPTION": "Chest radiograph upload, AI pneumonia decision support and radiologist review.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the documentation page (/api/v1/docs/) need a signed-in user or a token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Air-gapped sites: Swagger UI from drf-spectacular-sidecar's static files, no CDN, and
    # no call to the online validator.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CaseStatusEnum": "diagnosis.models.Case.Status",
        "ImageStatusEnum": "diagnosis.models.Image.Status",
    },
}

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Every response (pages, API, static files) carries this policy (docs/operations.md,
# Security notes): scripts and styles only as files from this origin, so an
# injected <script>, style attribute or event handler does not run. 'wasm-unsafe-eval' lets
# the viewer's decoding worker (static/viewer/workers, which gets the policy of its own
# response) compile the codecs' WebAssembly; it allows no JavaScript eval. Images may be
# data: and blob: URLs (the viewer's cursors, Swagger UI's icons).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", "'wasm-unsafe-eval'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    if not SECURE_SSL_REDIRECT:
        # Turned off on purpose (the proxy redirects): not a warning that stops `migrate`,
        # which runs `check --deploy --fail-level WARNING`.
        SILENCED_SYSTEM_CHECKS = ["security.W008"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "filters": {"refusal_in_one_line": {"()": "chestnet_site.log_filters.RefusalInOneLine"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # A 403 is one line with its reason, not a traceback.
        "django.request": {"level": "WARNING", "filters": ["refusal_in_one_line"]},
        # pynetdicom logs every association at INFO (the health check's C-ECHO among them).
        "pynetdicom": {"level": "WARNING"},
    },
}
