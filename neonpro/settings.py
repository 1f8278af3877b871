"""NeonPro settings: one module, driven by environment variables.

The embedded default (no variables set) is what `make run` uses: SQLite, a local master key
file and a generated secret key under ``NEONPRO_DATA_DIR``, eager Celery, an in-memory
channel layer. ``NEONPRO_ENV=production`` refuses to boot on missing or default secrets.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from keys.secret import Secret

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value == "True":
        return True
    if value == "False":
        return False
    raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name: str) -> str | None:
    """A secret from ``NAME_FILE`` (preferred) or ``NAME``; a named file that is missing is fatal."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc.strerror}") from None
    return os.environ.get(name) or None


def _dev_secret_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


# -- Environment ---------------------------------------------------------------------------
NEONPRO_ENV = os.environ.get("NEONPRO_ENV", "development")
if NEONPRO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"NEONPRO_ENV must be development or production, not {NEONPRO_ENV!r}")
PRODUCTION = NEONPRO_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG=True is refused when NEONPRO_ENV=production")
# Masks ..._PIN settings and keys.secret.Secret values on error pages and in error e-mails.
DEFAULT_EXCEPTION_REPORTER_FILTER = "keys.debug.NeonProExceptionReporterFilter"
NEONPRO_DATA_DIR = Path(os.environ.get("NEONPRO_DATA_DIR", BASE_DIR / "var"))

SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or ""
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set in production")
    SECRET_KEY = _dev_secret_key(NEONPRO_DATA_DIR)
elif PRODUCTION and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is too weak for production (50+ random characters)")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", ["https://localhost:8443", "https://127.0.0.1:8443"])

# -- Applications --------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "django_celery_beat",
    "django_otp",
    "axes",
    "keys",
    "neonpro.accounts",
    "neonpro.audit",
    "neonpro.security",
    "certificates",
    "patients",
    "records",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "neonpro.security.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "neonpro.accounts.session_middleware.SessionGuardMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Agents' tokens and client certificates (/api/ only): replace the session's user before
    # anything looks at it (django-otp, the second-factor check, the request identity), so a
    # session cookie beside a credential never counts, verified or not.
    "neonpro.accounts.agent_auth.AgentAuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "neonpro.accounts.signin_middleware.SecondFactorRequiredMiddleware",
    "neonpro.accounts.middleware.PasswordChangeRequiredMiddleware",
    "neonpro.security.middleware.RequestContextMiddleware",
    # One audit event per agent request, inside the request's context.
    "neonpro.accounts.agent_auth.AgentRequestAuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes wants: turns a lock-out flagged during the request into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "neonpro.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "neonpro.asgi.application"
AUTH_USER_MODEL = "accounts.User"
# Flash messages live in the (encrypted, server-side) session, never in a cookie of their own.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "neonpro" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "neonpro.security.web_context.ui",
            ],
        },
    },
]

# -- Database ------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{NEONPRO_DATA_DIR / 'neonpro.sqlite3'}",
        conn_max_age=0,
    )
}
POSTGRESQL = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if POSTGRESQL:
    # Django's backend, plus batching below the protocol's 65,535-parameter limit (see
    # neonpro/db/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "neonpro.db.postgresql"
    # Parameters travel separately from the SQL (never interpolated client-side), and bytea
    # ciphertext is sent in binary instead of being escaped into the query text.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env_bool(
        "NEONPRO_DB_SERVER_SIDE_BINDING", True
    )
# Connection pools (Django's, psycopg_pool): a process keeps at most NEONPRO_DB_POOL_SIZE
# connections for requests and NEONPRO_DB_POOL_AUX_SIZE each for the audit and keys aliases,
# and a request waits at most NEONPRO_DB_POOL_TIMEOUT seconds for one (then a 503). Sizing rule
# (docs/database.md): processes x (POOL_SIZE + 2 x POOL_AUX_SIZE) <= max_connections minus
# superuser_reserved_connections minus what admins, migrations and workers need.
NEONPRO_DB_POOL = POSTGRESQL and env_bool("NEONPRO_DB_POOL", True)
NEONPRO_DB_POOL_SIZE = env_int("NEONPRO_DB_POOL_SIZE", 10)
NEONPRO_DB_POOL_AUX_SIZE = env_int("NEONPRO_DB_POOL_AUX_SIZE", 3)
NEONPRO_DB_POOL_TIMEOUT = float(env_int("NEONPRO_DB_POOL_TIMEOUT", 5))


def _pool(size: int) -> dict[str, object]:
    return {"min_size": 1, "max_size": size, "timeout": NEONPRO_DB_POOL_TIMEOUT, "max_idle": 300}


# Server-side limits for every connection of the app (milliseconds; 0 = none): no statement
# runs, waits for a lock, or idles in a transaction past them. `keys reencrypt` and `migrate`
# raise statement_timeout for their own long statements. Sent as startup options, which a
# transaction-mode pooler does not pass on: there, set them on the role (`manage.py db
# create-roles` does).
NEONPRO_DB_STATEMENT_TIMEOUT_MS = env_int("NEONPRO_DB_STATEMENT_TIMEOUT_MS", 15_000)
NEONPRO_DB_LOCK_TIMEOUT_MS = env_int("NEONPRO_DB_LOCK_TIMEOUT_MS", 5_000)
NEONPRO_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = env_int("NEONPRO_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000)
DB_SESSION_LIMITS = {
    "statement_timeout": NEONPRO_DB_STATEMENT_TIMEOUT_MS,
    "lock_timeout": NEONPRO_DB_LOCK_TIMEOUT_MS,
    "idle_in_transaction_session_timeout": NEONPRO_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
}
if POSTGRESQL and os.environ.get("NEONPRO_DB_POOLER") != "transaction":
    DATABASES["default"]["OPTIONS"]["options"] = " ".join(f"-c {k}={v}" for k, v in DB_SESSION_LIMITS.items())
if POSTGRESQL and os.environ.get("NEONPRO_DB_POOLER") == "transaction":
    # Behind a transaction-mode pooler: no server-side cursors (Django already disables named
    # prepared statements). The identity is transaction-local already (set_config(..., true)).
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
if POSTGRESQL:
    # Audit events travel on their own connection, so each append commits on its own and
    # holds the chain lock for one insert (see neonpro/audit/routers.py).
    DATABASES["audit"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
    # Encryption-count reservations commit on their own too (keys/keyring.py).
    DATABASES["keys"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
if NEONPRO_DB_POOL:
    for _alias, _size in (
        ("default", NEONPRO_DB_POOL_SIZE),
        ("audit", NEONPRO_DB_POOL_AUX_SIZE),
        ("keys", NEONPRO_DB_POOL_AUX_SIZE),
    ):
        DATABASES[_alias]["OPTIONS"] = {**DATABASES[_alias]["OPTIONS"], "pool": _pool(_size)}
        # A pooled connection broken by a database restart is replaced at checkout (psycopg_pool's
        # check), not handed to a request.
        DATABASES[_alias]["CONN_HEALTH_CHECKS"] = True
# Requests one process works on at once (neonpro/security/admission.py): by default the
# request pool's size, so a burst queues (up to NEONPRO_ADMISSION_WAIT seconds) instead of
# waiting on connections.
NEONPRO_MAX_IN_FLIGHT = env_int("NEONPRO_MAX_IN_FLIGHT", NEONPRO_DB_POOL_SIZE if NEONPRO_DB_POOL else 8)
NEONPRO_ADMISSION_WAIT = float(env_int("NEONPRO_ADMISSION_WAIT", 10))
DATABASE_ROUTERS = ["neonpro.audit.routers.AuditRouter"]
NEONPRO_DB_APP_ROLE = os.environ.get("NEONPRO_DB_APP_ROLE", "neonpro_app")
NEONPRO_DB_OWNER_ROLE = os.environ.get("NEONPRO_DB_OWNER_ROLE", "neonpro_owner")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- Cache, Celery, Channels ---------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_ACCEPT_CONTENT = ["json"]

# -- Keys / KMS ----------------------------------------------------------------------------
NEONPRO_KEY_PROVIDER = os.environ.get("NEONPRO_KEY_PROVIDER", "local")
# The key itself (base64), for platforms that inject secrets as variables. NEONPRO_MASTER_KEY_FILE is
# deliberately not read here: the local provider reads it and refuses a file others can read.
NEONPRO_MASTER_KEY = Secret(os.environ["NEONPRO_MASTER_KEY"]) if os.environ.get("NEONPRO_MASTER_KEY") else None
NEONPRO_MASTER_KEY_FILE = os.environ.get("NEONPRO_MASTER_KEY_FILE") or str(NEONPRO_DATA_DIR / "master.key")
NEONPRO_KEY_CACHE_TTL = env_int("NEONPRO_KEY_CACHE_TTL", 300)
# Longest transaction that encrypts (enforce it in PostgreSQL): `keys retire`/`destroy` wait TTL + this.
NEONPRO_KEY_MAX_TRANSACTION_SECONDS = env_int("NEONPRO_KEY_MAX_TRANSACTION_SECONDS", 600)
NEONPRO_KEY_PROVIDER_FALLBACKS = env_list("NEONPRO_KEY_PROVIDER_FALLBACKS", [])
NEONPRO_MASTER_KEY_PREVIOUS_FILES = env_list("NEONPRO_MASTER_KEY_PREVIOUS_FILES", [])
NEONPRO_KEY_ROTATION: dict[str, dict[str, int]] = {}  # per purpose: max_age_days, max_encryptions
# Clinical rows written before row seals (keys.integrity) read until this is False; set it
# False once `keys reencrypt` has upgraded them, so an unsealed row is refused (docs/encryption.md).
NEONPRO_LEGACY_ROWS_READABLE = env_bool("NEONPRO_LEGACY_ROWS_READABLE", True)
# Provider settings come straight from the environment when present (modules hold defaults).
for _name in (
    "NEONPRO_PKCS11_LIB",
    "NEONPRO_PKCS11_TOKEN",
    "NEONPRO_PKCS11_PIN_FILE",
    "NEONPRO_PKCS11_KEY_LABEL",
    "NEONPRO_PKCS11_REFUSAL_DIR",
    "NEONPRO_AWS_KMS_KEY_ID",
    "NEONPRO_AWS_KMS_REGION",
    "NEONPRO_AWS_KMS_ENDPOINT_URL",
):
    if os.environ.get(_name):
        globals()[_name] = os.environ[_name]
if os.environ.get("NEONPRO_PKCS11_PIN"):
    # Masked in diffsettings and on error pages (keys.secret); the provider reads *_PIN_FILE itself (0600 check).
    NEONPRO_PKCS11_PIN = Secret(os.environ["NEONPRO_PKCS11_PIN"])
NEONPRO_PKCS11_PREVIOUS_LABELS = env_list("NEONPRO_PKCS11_PREVIOUS_LABELS", [])
NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS = env_list("NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS", [])
# Maintenance jobs in keys (re-encryption, usage counts) act through the RLS system identity.
NEONPRO_KEYS_SYSTEM_CONTEXT = "neonpro.security.context.system_context"
# ... and record who ran a `keys` command (--operator/--reason/--ticket) in the audit log.
NEONPRO_KEYS_OPERATOR_CONTEXT = "neonpro.audit.operator.operator_from_options"
# Re-encryption batches may run longer than a request (SET LOCAL statement_timeout).
NEONPRO_KEYS_LONG_TRANSACTION = "neonpro.db.limits.long_statements"
# Crypto-shredding a patient erases their structured records too (keys shred-patient).
NEONPRO_KEYS_SUBJECT_ERASER = "patients.erasure.erase_patient_records"
# Subject-epoch key files (every process must see the same directory): docs/keys.md.
NEONPRO_SUBJECT_KEY_DIR = os.environ.get("NEONPRO_SUBJECT_KEY_DIR") or str(NEONPRO_DATA_DIR / "subject-keys")
NEONPRO_SUBJECT_EPOCH_DAYS = env_int("NEONPRO_SUBJECT_EPOCH_DAYS", 7)
NEONPRO_SUBJECT_EPOCH_KEEP_DAYS = env_int("NEONPRO_SUBJECT_EPOCH_KEEP_DAYS", 21)

# -- Access --------------------------------------------------------------------------------
NEONPRO_BREAK_GLASS_MINUTES = env_int("NEONPRO_BREAK_GLASS_MINUTES", 60)
# Ceilings per clinician (attempts on unknown patients count too), and when administrators are alerted.
NEONPRO_BREAK_GLASS_PER_HOUR = env_int("NEONPRO_BREAK_GLASS_PER_HOUR", 3)
NEONPRO_BREAK_GLASS_PER_DAY = env_int("NEONPRO_BREAK_GLASS_PER_DAY", 6)
NEONPRO_BREAK_GLASS_ALERT_AFTER = env_int("NEONPRO_BREAK_GLASS_ALERT_AFTER", 3)
# Seconds an audit append waits for the chain lock before the request is refused with a 503.
NEONPRO_AUDIT_LOCK_TIMEOUT = env_int("NEONPRO_AUDIT_LOCK_TIMEOUT", 10)

# -- Certificates / TLS --------------------------------------------------------------------
NEONPRO_TLS_DIR = Path(os.environ.get("NEONPRO_TLS_DIR", NEONPRO_DATA_DIR / "tls"))
NEONPRO_TLS_CERT = os.environ.get("NEONPRO_TLS_CERT", "")
NEONPRO_TLS_KEY = os.environ.get("NEONPRO_TLS_KEY", "")

# -- Security headers and cookies ----------------------------------------------------------
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = 63072000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# same-origin: other sites never see our URLs, while our own pages keep sending Referer and a
# real Origin. "no-referrer" made browsers send "Origin: null" on form posts, which Django's
# CSRF check (rightly) refuses: nobody could sign in (tests/browser).
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if env_bool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_NAME = "__Host-sessionid"
SESSION_COOKIE_AGE = 12 * 60 * 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
CSRF_COOKIE_NAME = "__Host-csrftoken"
CSRF_FAILURE_VIEW = "neonpro.security.errors.csrf_failure"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

# -- Sign-in ------------------------------------------------------------------------------
# Who a person is (docs/sign-in.md): Argon2id hashes (older ones upgraded at the next sign-in),
# lock-out per account and per IP (django-axes), TOTP second factor (django-otp) required for
# clinicians and administrators, re-authentication before sensitive operations.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# Password hashing never starves clinical requests (neonpro/accounts/hashing.py): per process,
# at most NEONPRO_SIGNIN_HASH_CONCURRENCY hashes at once, on threads niced by
# NEONPRO_SIGNIN_HASH_NICE; a sign-in that waits NEONPRO_SIGNIN_WAIT seconds for a slot gets a
# 503 with Retry-After. Axes' backend comes first: a locked-out client is refused before any hash.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "neonpro.accounts.backends.BoundedHashingBackend",
]
NEONPRO_SIGNIN_HASH_CONCURRENCY = env_int("NEONPRO_SIGNIN_HASH_CONCURRENCY", 1)
NEONPRO_SIGNIN_HASH_NICE = env_int("NEONPRO_SIGNIN_HASH_NICE", 10)
NEONPRO_SIGNIN_WAIT = float(env_int("NEONPRO_SIGNIN_WAIT", 10))
# Posts that hash a password queue in their own admission lane of that width (neonpro/security/admission.py).
NEONPRO_SIGNIN_PATHS = env_list(
    "NEONPRO_SIGNIN_PATHS", ["/accounts/login/", "/admin/login/", "/accounts/reauth/", "/api/v1/reauth/"]
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "neonpro.accounts.breached.BreachedPasswordValidator"},
]
# An operator's full "Pwned Passwords" SHA-1 download (sorted by hash, lines HASH:count);
# empty: the small list bundled in neonpro/accounts/data/.
NEONPRO_BREACHED_PASSWORDS_FILE = os.environ.get("NEONPRO_BREACHED_PASSWORDS_FILE", "")

# Lock-out (neonpro/accounts/lockout.py): NEONPRO_SIGNIN_FAILURE_LIMIT failures on one account,
# or NEONPRO_SIGNIN_IP_FAILURE_LIMIT from one address (a ward's NAT is many people), lock that
# account or address for NEONPRO_SIGNIN_LOCKOUT_MINUTES. Wrong passwords and wrong second
# factors both count. Usernames are stored only as a keyed hash.
NEONPRO_SIGNIN_FAILURE_LIMIT = env_int("NEONPRO_SIGNIN_FAILURE_LIMIT", 5)
NEONPRO_SIGNIN_IP_FAILURE_LIMIT = env_int("NEONPRO_SIGNIN_IP_FAILURE_LIMIT", 50)
NEONPRO_SIGNIN_LOCKOUT_MINUTES = env_int("NEONPRO_SIGNIN_LOCKOUT_MINUTES", 15)
AXES_HANDLER = "neonpro.accounts.lockout.LockoutHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = "neonpro.accounts.lockout.failure_limit"
AXES_COOLOFF_TIME = "neonpro.accounts.lockout.cool_off"
AXES_RESET_ON_SUCCESS = True  # the account's own failures only (LockoutHandler)
AXES_USERNAME_CALLABLE = "neonpro.accounts.lockout.keyed_username_of"
AXES_CLIENT_IP_CALLABLE = "neonpro.security.middleware.client_ip"
AXES_CLIENT_STR_CALLABLE = "neonpro.accounts.lockout.client_str"
AXES_LOCKOUT_CALLABLE = "neonpro.accounts.lockout.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # successes are in the audit chain, keyed; axes would keep names in clear
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_SENSITIVE_PARAMETERS = [
    "username",
    "ip_address",
    "password",
    "otp_token",
    "token",
    "csrfmiddlewaretoken",
    "new_password1",
    "new_password2",
]
AXES_VERBOSE = False

# Second factor: who must have one, how long the step between password and code may take,
# and how long a re-authentication stays good for sensitive operations.
NEONPRO_MFA_REQUIRED_ROLES = env_list("NEONPRO_MFA_REQUIRED_ROLES", ["clinician", "admin"])
NEONPRO_SIGNIN_STEP_SECONDS = env_int("NEONPRO_SIGNIN_STEP_SECONDS", 300)
NEONPRO_REAUTH_SECONDS = env_int("NEONPRO_REAUTH_SECONDS", 300)
# The key inventory's admin actions (rotate, re-encrypt, retire) need a recent re-authentication.
NEONPRO_KEYS_ADMIN_ACTION_GUARD = "neonpro.accounts.reauth.reauth_required_action"
NEONPRO_RECOVERY_CODES = env_int("NEONPRO_RECOVERY_CODES", 10)
OTP_TOTP_ISSUER = os.environ.get("NEONPRO_TOTP_ISSUER", "NeonPro Records")
# Seconds of wait after each wrong code, doubling (django-otp's throttling).
NEONPRO_TOTP_THROTTLE_FACTOR = env_int("NEONPRO_TOTP_THROTTLE_FACTOR", 1)

# -- Sessions ------------------------------------------------------------------------------
# Our own store (docs/sessions.md): the database holds a keyed hash of each session token and
# the session data encrypted. A session ends after NEONPRO_SESSION_IDLE_MINUTES without a
# request or NEONPRO_SESSION_ABSOLUTE_HOURS after sign-in, whichever comes first; a change of
# user agent (and, when NEONPRO_SESSION_BIND_IP, of address beyond the prefixes) ends it too.
# At sign-in a user keeps at most NEONPRO_SESSION_MAX_PER_USER sessions (the oldest end).
SESSION_ENGINE = "neonpro.accounts.sessions"
NEONPRO_SESSION_IDLE_MINUTES = env_int("NEONPRO_SESSION_IDLE_MINUTES", 15)
# Seconds, when set (not 0), take the place of the minutes (short idle times for tests, kiosks).
NEONPRO_SESSION_IDLE_SECONDS = env_int("NEONPRO_SESSION_IDLE_SECONDS", 0)
# The web UI warns this many seconds before an idle session ends ("Stay signed in").
NEONPRO_SESSION_WARN_SECONDS = env_int("NEONPRO_SESSION_WARN_SECONDS", 120)
NEONPRO_SESSION_ABSOLUTE_HOURS = env_int("NEONPRO_SESSION_ABSOLUTE_HOURS", 12)
NEONPRO_SESSION_BIND_USER_AGENT = env_bool("NEONPRO_SESSION_BIND_USER_AGENT", True)
NEONPRO_SESSION_BIND_IP = env_bool("NEONPRO_SESSION_BIND_IP", False)
NEONPRO_SESSION_BIND_IPV4_PREFIX = env_int("NEONPRO_SESSION_BIND_IPV4_PREFIX", 32)
NEONPRO_SESSION_BIND_IPV6_PREFIX = env_int("NEONPRO_SESSION_BIND_IPV6_PREFIX", 64)
NEONPRO_SESSION_MAX_PER_USER = env_int("NEONPRO_SESSION_MAX_PER_USER", 5)
for _name, _low, _high in (
    ("NEONPRO_SESSION_IDLE_MINUTES", 1, 24 * 60),
    ("NEONPRO_SESSION_IDLE_SECONDS", 0, 24 * 3600),
    ("NEONPRO_SESSION_WARN_SECONDS", 5, 3600),
    ("NEONPRO_SESSION_ABSOLUTE_HOURS", 1, 7 * 24),
    ("NEONPRO_SESSION_BIND_IPV4_PREFIX", 0, 32),
    ("NEONPRO_SESSION_BIND_IPV6_PREFIX", 0, 128),
    ("NEONPRO_SESSION_MAX_PER_USER", 1, 100),
):
    if not _low <= globals()[_name] <= _high:
        raise ImproperlyConfigured(f"{_name} must be from {_low} to {_high}, not {globals()[_name]}")
if 0 < NEONPRO_SESSION_IDLE_SECONDS < 10:
    raise ImproperlyConfigured(
        f"NEONPRO_SESSION_IDLE_SECONDS must be 0 (use the minutes) or at least 10, not {NEONPRO_SESSION_IDLE_SECONDS}"
    )

# -- Email (telling people about changes to their own account) ----------------------------
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 587)
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", True)
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("DJANGO_EMAIL_HOST_PASSWORD") or ""
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "NeonPro Records <no-reply@localhost>")

# -- Internationalisation and static files -------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = NEONPRO_DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "neonpro" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# -- REST framework ------------------------------------------------------------------------
REST_FRAMEWORK = {
    # The agents' class first: DRF asks it for WWW-Authenticate, so unauthenticated calls are 401s.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "neonpro.accounts.agent_auth.AgentAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "neonpro.security.throttles.AgentRateThrottle",
        "neonpro.security.throttles.UserRateThrottle",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["neonpro.security.api.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "neonpro.security.api.exception_handler",
}

# -- Agents --------------------------------------------------------------------------------
# AI agents call the API with a token (Authorization: Bearer npa_...) or with a client
# certificate the TLS terminator verified (docs/agents.md). The terminator's headers
# (X-SSL-Client-Cert, X-SSL-Client-Verify) are believed only from these addresses or networks,
# or over the server's unix socket if the list says "unix" (the docker/ topology).
NEONPRO_TRUSTED_PROXIES = env_list("NEONPRO_TRUSTED_PROXIES", [])
for _proxy in NEONPRO_TRUSTED_PROXIES:
    try:
        if _proxy != "unix":
            ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"NEONPRO_TRUSTED_PROXIES: {_proxy!r} is not an address, network or unix") from None
# Requests per principal, "N/s", "N/min", "N/hour" or "N/day" (or "off"): each agent, each other account.
NEONPRO_API_RATE_AGENT = os.environ.get("NEONPRO_API_RATE_AGENT", "600/min")
NEONPRO_API_RATE_USER = os.environ.get("NEONPRO_API_RATE_USER", "1200/min")
for _name in ("NEONPRO_API_RATE_AGENT", "NEONPRO_API_RATE_USER"):
    if not re.fullmatch(r"off|[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", globals()[_name]):
        raise ImproperlyConfigured(f"{_name} must look like 600/min (or be off), not {globals()[_name]!r}")
# The largest request body the API parses (bytes): a larger one is a 413.
NEONPRO_API_MAX_BODY_BYTES = env_int("NEONPRO_API_MAX_BODY_BYTES", 1024 * 1024)
# -- The API: OpenAPI schema and interactive docs (docs/api.md) ----------------------------
# drf-spectacular describes every operation (neonpro/security/schema.py adds the security
# schemes, the error body on each 4xx/5xx and the shared headers); the sidecar serves Swagger
# UI's assets from our own static files, so the docs load nothing from a CDN.
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "neonpro.security.schema.NeonProAutoSchema"
SPECTACULAR_SETTINGS = {
    "TITLE": "NeonPro Records API",
    "DESCRIPTION": "Patients, medical records and appointments, for clinicians, patients and agents (docs/api.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SCHEMA_PATH_PREFIX_TRIM": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"SearchableFieldEnum": "patients.serializers.SEARCHABLE_CHOICES"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "displayOperationId": True},
}

# -- Logging -------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "redact_phi": {"()": "neonpro.audit.logging.RedactPHIFilter"},
        "quiet_unavailable": {"()": "neonpro.security.unavailable.QuietUnavailable"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_phi"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("NEONPRO_LOG_LEVEL", "INFO")},
    # botocore logs request bodies (data keys!) at DEBUG: never below INFO.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "botocore": {"level": "INFO"},
        "django.request": {"filters": ["quiet_unavailable"]},
    },
}
