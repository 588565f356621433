"""zkbridge settings: everything comes from the environment (see ../shared/CONTRACT.md).

A `.env` file in the repository root is read too; the real environment wins.
"""

from __future__ import annotations

import datetime as dt
import sys
import warnings
from pathlib import Path

from dotenv import load_dotenv

from zkbridge import config

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)
# `python3 dev.py demo` writes the settings it runs with (secret key, URL, database) here, so that
# manage.py in a second terminal talks to the same demo. Only while no real Zuora or Kommo is named:
# a demo's file left in a checkout never configures a real deployment.
ZKBRIDGE_STATE_DIR = Path(config.string("ZKBRIDGE_STATE_DIR", str(BASE_DIR / ".zkbridge")))
DEMO_ENV = ZKBRIDGE_STATE_DIR / "demo.env"
_testing = config.raw("DJANGO_SETTINGS_MODULE") == "zkbridge.settings_test"  # tests never use the demo's file
if not (config.raw("ZUORA_BASE_URL") or config.raw("KOMMO_BASE_URL") or _testing):
    load_dotenv(DEMO_ENV, override=False)

# --- Django core -----------------------------------------------------------------------------------
_secret = config.string("ZKBRIDGE_SECRET_KEY")
if _secret is None:
    # A fixed dev key would let anyone forge sessions on a forgotten demo; a per-checkout file is
    # stable across restarts (queued django-q2 tasks are signed with it) and never committed.
    _key_file = ZKBRIDGE_STATE_DIR / "dev-secret-key"
    if _key_file.exists():
        _secret = _key_file.read_text().strip()
    else:
        import secrets

        _key_file.parent.mkdir(parents=True, exist_ok=True)
        _secret = secrets.token_urlsafe(50)
        _key_file.write_text(_secret)
    if "pytest" not in sys.modules:
        warnings.warn("ZKBRIDGE_SECRET_KEY is not set: using a generated development key", stacklevel=1)
SECRET_KEY = _secret
DEBUG = config.boolean("ZKBRIDGE_DEBUG", False)
ALLOWED_HOSTS = config.listing("ZKBRIDGE_ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "zkbridge.apps.ZkbridgeAdminConfig",  # django.contrib.admin with the RevOps dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # WhiteNoise serves the admin's CSS and JavaScript from every process (runserver with debug off,
    # gunicorn): without it the demo's admin has no styles and the rate-plan picker does not work.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",  # (its authtoken app is not installed: usage feeds' tokens are stored hashed, sync.ApiToken)
    "simple_history",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "catalog",
    "sync",  # before django_q: sync's `qcluster` (workers + dispatcher) stands in for django-q2's own
    "sandbox",
    "django_q",
]

MIDDLEWARE = [
    "sync.ops.logs.RequestId",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while a lockout holds
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "zkbridge.urls"
WSGI_APPLICATION = "zkbridge.wsgi.application"
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
            ]
        },
    }
]

# --- Production security (all off by default: the embedded demo runs on plain http://127.0.0.1) -----------
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto, Django must trust it to know a request is https.
_behind_proxy = config.boolean("ZKBRIDGE_BEHIND_TLS_PROXY", False)
if _behind_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies of ours append to X-Forwarded-For: the client's address is the entry that many from the right
# (zkbridge/network.py), for the login lockout and the endpoints' failure counters alike.
ZKBRIDGE_TRUSTED_PROXIES = config.integer("ZKBRIDGE_TRUSTED_PROXIES", 1 if _behind_proxy else 0, minimum=0)
SECURE_SSL_REDIRECT = config.boolean("ZKBRIDGE_SSL_REDIRECT", False)
# The machine endpoints are never redirected: Kommo and Zuora post to the URL they were given.
SECURE_REDIRECT_EXEMPT = [r"^webhooks/", r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = config.boolean("ZKBRIDGE_SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = config.integer("ZKBRIDGE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.boolean("ZKBRIDGE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = config.boolean("ZKBRIDGE_HSTS_PRELOAD", False)
# Origins the admin's forms may be posted from; by default the origin of ZKBRIDGE_URL (an admin login
# through a TLS proxy then passes Django's CSRF origin check).
_csrf_origins = config.listing("ZKBRIDGE_CSRF_TRUSTED_ORIGINS", "")
for _origin in _csrf_origins:
    if not _origin.startswith(("http://", "https://")):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"ZKBRIDGE_CSRF_TRUSTED_ORIGINS: {_origin!r} must start with https:// or http://")
# Admin logins: a username is locked out from an address after this many failures in a row, for a while.
AXES_FAILURE_LIMIT = config.integer("ZKBRIDGE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = dt.timedelta(minutes=config.integer("ZKBRIDGE_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # a stranger cannot lock the real admin out
AXES_CLIENT_IP_CALLABLE = "zkbridge.network.client_address"  # the client behind our proxy, not the proxy
AXES_RESET_ON_SUCCESS = True
AXES_ONLY_ADMIN_SITE = True
AXES_VERBOSE = False

# --- Database --------------------------------------------------------------------------------------
_db = config.database_url("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions + WAL: the web server and the workers write the same file without
    # "database is locked" on every second request.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Kept too: each new SQLite connection runs the PRAGMAs above (1,000 won deals: 66 s → 58 s).
    _db["CONN_MAX_AGE"] = config.integer("ZKBRIDGE_DB_CONN_MAX_AGE", 60, minimum=0)
else:
    # Connections are kept (health-checked before reuse): opening one costs PostgreSQL a process, and at
    # hundreds of web hooks a second that, not the work, was the ceiling. 0 closes each after its request.
    _db["CONN_MAX_AGE"] = config.integer("ZKBRIDGE_DB_CONN_MAX_AGE", 60, minimum=0)
    _db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Staff passwords: Django's validators — at least 12 characters, not one of the 20,000 most common, not close to
# the user's own name or e-mail, not digits only.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `collectstatic` gathers the files here (dev.py demo does it; production runs it at each upgrade).
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic also writes gzip copies, which WhiteNoise serves to browsers that accept them. No
    # manifest: a process started before collectstatic still renders every page.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Until collectstatic has run, WhiteNoise serves the files straight from the apps' folders, so even a
# forgotten collectstatic leaves a styled, working admin.
WHITENOISE_USE_FINDERS = not STATIC_ROOT.is_dir()

# Webhook bodies are read whole; Kommo's largest realistic body is far below this.
DATA_UPLOAD_MAX_MEMORY_SIZE = config.integer("ZKBRIDGE_MAX_BODY_BYTES", 1_048_576, minimum=1024)
# Usage feeds are read as they arrive (memory does not grow with the body), so they may be far larger: a
# million rows is about 100 MB. Unset, they share ZKBRIDGE_MAX_BODY_BYTES.
ZKBRIDGE_MAX_USAGE_BODY_BYTES = config.integer("ZKBRIDGE_MAX_USAGE_BODY_BYTES", None, minimum=1024)
# Amplification limits (additions): won leads one Kommo web hook may name (a body naming more is stored and
# refused), and failed authentications an address may make in a minute before it is answered 429.
ZKBRIDGE_MAX_LEADS_PER_WEBHOOK = config.integer("ZKBRIDGE_MAX_LEADS_PER_WEBHOOK", 100, minimum=1)
ZKBRIDGE_AUTH_FAILURES_PER_MINUTE = config.integer("ZKBRIDGE_AUTH_FAILURES_PER_MINUTE", 30, minimum=1)
# New sync records one source (address) may hand to the workers in a minute; the rest wait their turn.
ZKBRIDGE_MAX_RECORDS_PER_MINUTE = config.integer("ZKBRIDGE_MAX_RECORDS_PER_MINUTE", 600, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["sync.webhooks.auth.UsageFeedToken"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# The OpenAPI document of the machine endpoints, generated from the views (GET /api/schema/, browsable
# at /api/docs/ with Swagger UI served from our own static files: no CDN).
SPECTACULAR_SETTINGS = {
    "TITLE": "zkbridge",
    "DESCRIPTION": "Kommo web hooks, Zuora callouts and usage feeds into zkbridge (Kommo CRM ↔ Zuora billing).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "APPEND_COMPONENTS": {
        "securitySchemes": {"zuoraCalloutBasic": {"type": "http", "scheme": "basic"}},
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sync.webhooks.schema.add_plain_endpoints",
    ],
}

# --- zkbridge: where it is reachable and what it talks to ------------------------------------------
# The address this zkbridge is reachable at: used for the built-in emulators' base URLs and to print
# the webhook URL to paste into Kommo (an addition to CONTRACT.md's table).
ZKBRIDGE_URL = config.url("ZKBRIDGE_URL", "http://127.0.0.1:8000")
CSRF_TRUSTED_ORIGINS = _csrf_origins or ["/".join(ZKBRIDGE_URL.split("/")[:3])]

_zuora_url = config.url("ZUORA_BASE_URL")
_kommo_url = config.url("KOMMO_BASE_URL")
ZKBRIDGE_SANDBOX = config.boolean("ZKBRIDGE_SANDBOX", _zuora_url is None and _kommo_url is None)
# A name for this process that /healthz repeats (`dev.py demo` hands its web server a nonce and waits for it,
# so another server on the same port never passes for the demo's). Empty: /healthz does not say.
ZKBRIDGE_INSTANCE = (config.string("ZKBRIDGE_INSTANCE") or "")[:64]

ZUORA_BASE_URL = _zuora_url or f"{ZKBRIDGE_URL}/sandbox/zuora"
KOMMO_BASE_URL = _kommo_url or f"{ZKBRIDGE_URL}/sandbox/kommo"
ZUORA_USES_EMULATOR = _zuora_url is None
KOMMO_USES_EMULATOR = _kommo_url is None

# The emulators' demo credentials (sandbox/demo.py seeds the same values).
SANDBOX_ZUORA_CLIENT_ID = "2b7e1a90-5c3d-4f8e-9a6b-0d4c7e1f3a25"
SANDBOX_ZUORA_CLIENT_SECRET = "zkbridge-demo-secret"
SANDBOX_KOMMO_TOKEN = "kommo-demo-long-lived-token"

ZUORA_CLIENT_ID = config.string("ZUORA_CLIENT_ID", SANDBOX_ZUORA_CLIENT_ID if ZUORA_USES_EMULATOR else None)
ZUORA_CLIENT_SECRET = config.string("ZUORA_CLIENT_SECRET", SANDBOX_ZUORA_CLIENT_SECRET if ZUORA_USES_EMULATOR else None)
ZUORA_ENTITY_ID = config.string("ZUORA_ENTITY_ID")
ZUORA_ACCOUNT_CRM_FIELD = config.string("ZUORA_ACCOUNT_CRM_FIELD", "KommoId__c")
if not ZUORA_ACCOUNT_CRM_FIELD.endswith("__c"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"ZUORA_ACCOUNT_CRM_FIELD: a Zuora custom field name ends in __c, got {ZUORA_ACCOUNT_CRM_FIELD!r}"
    )
# Pinned: the create-order answer's subscriptions[] needs 223.0 or later.
ZUORA_VERSION = config.string("ZUORA_VERSION", "233.0")
ZUORA_TIMEOUT_SECONDS = config.integer("ZUORA_TIMEOUT_SECONDS", 30, minimum=1)
# Calls on the wire to Zuora at once, all workers on all machines together (an addition): below the tenant's
# concurrency limit (40 by default), leaving room for Zuora's UI and other integrations.
ZUORA_MAX_CONCURRENT_CALLS = config.integer("ZUORA_MAX_CONCURRENT_CALLS", 10, minimum=1)
# Whether the won flow previews MRR/TCV for the note (one extra Zuora read call per deal).
ZUORA_PREVIEW_ORDERS = config.boolean("ZUORA_PREVIEW_ORDERS", True)
# The usage file's UNIQUE_KEY column: Zuora documents it for Advanced Consumption Billing tenants only (a tenant
# without it may refuse the file). zkbridge de-duplicates usage on its own unique_key either way.
ZUORA_USAGE_UNIQUE_KEY = config.boolean("ZUORA_USAGE_UNIQUE_KEY", False)

KOMMO_ACCESS_TOKEN = config.string("KOMMO_ACCESS_TOKEN", SANDBOX_KOMMO_TOKEN if KOMMO_USES_EMULATOR else None)
KOMMO_CLIENT_ID = config.string("KOMMO_CLIENT_ID")
KOMMO_CLIENT_SECRET = config.string("KOMMO_CLIENT_SECRET")
KOMMO_REDIRECT_URI = config.url("KOMMO_REDIRECT_URI")
KOMMO_REFRESH_TOKEN = config.string("KOMMO_REFRESH_TOKEN")
# Kommo's consent page, where the admin's "Connect with Kommo" sends the operator (an addition).
KOMMO_OAUTH_URL = config.url("KOMMO_OAUTH_URL", None)
if KOMMO_USES_EMULATOR:
    # The emulator's own OAuth integration, so "Connect Kommo" works in the demo with no variables.
    KOMMO_CLIENT_ID = KOMMO_CLIENT_ID or "kommo-demo-client"
    KOMMO_CLIENT_SECRET = KOMMO_CLIENT_SECRET or "kommo-demo-client-secret"
    KOMMO_REDIRECT_URI = KOMMO_REDIRECT_URI or f"{ZKBRIDGE_URL}/kommo/oauth/callback"
KOMMO_OAUTH_URL = KOMMO_OAUTH_URL or (
    f"{KOMMO_BASE_URL}/oauth" if KOMMO_USES_EMULATOR else "https://www.kommo.com/oauth"
)
KOMMO_TIMEOUT_SECONDS = config.integer("KOMMO_TIMEOUT_SECONDS", 20, minimum=1)
KOMMO_REQUESTS_PER_SECOND = config.integer("KOMMO_REQUESTS_PER_SECOND", 7, minimum=1)
KOMMO_WEBHOOK_TOKEN = config.string("KOMMO_WEBHOOK_TOKEN")
if KOMMO_WEBHOOK_TOKEN is not None and len(KOMMO_WEBHOOK_TOKEN) < 16:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("KOMMO_WEBHOOK_TOKEN: must be at least 16 characters (it is the webhook's only secret)")
KOMMO_WON_STATUS_ID = config.integer("KOMMO_WON_STATUS_ID", 142)
KOMMO_LOST_STATUS_ID = config.integer("KOMMO_LOST_STATUS_ID", 143)
KOMMO_PLAN_FIELD_ID = config.integer("KOMMO_PLAN_FIELD_ID")
KOMMO_ACCOUNT_FIELD_ID = config.integer("KOMMO_ACCOUNT_FIELD_ID")
KOMMO_SUBSCRIPTION_FIELD_ID = config.integer("KOMMO_SUBSCRIPTION_FIELD_ID")
# Optional lead field naming the deal's currency (an addition); ZKBRIDGE_DEFAULT_CURRENCY otherwise.
KOMMO_CURRENCY_FIELD_ID = config.integer("KOMMO_CURRENCY_FIELD_ID")
# Optional lead field holding negotiated usage tiers in the CRM's form (0-185:0.10;185-999:0.08;999+:0.05):
# they override the plan map's tiers for that deal.
KOMMO_TIERS_FIELD_ID = config.integer("KOMMO_TIERS_FIELD_ID")

# Quote previews before Won (docs/configuration.md, "Quote previews"): the stages where a lead's sale is priced by
# Zuora's order preview, the lead fields that receive the figures, and the lead field of the expected close date
# (the day the plans must still be sellable; today when not set).
PREVIEW_FIGURES = ("mrr", "tcv", "first_invoice", "first_invoice_date", "term")
KOMMO_PREVIEW_STATUS_IDS = config.integers("KOMMO_PREVIEW_STATUS_IDS", "")
KOMMO_PREVIEW_FIELD_IDS = config.field_ids("KOMMO_PREVIEW_FIELD_IDS", PREVIEW_FIGURES)
KOMMO_CLOSE_DATE_FIELD_ID = config.integer("KOMMO_CLOSE_DATE_FIELD_ID")
# Kommo's products list kept in step with the plan map's product mappings (SKU, price, retired marked).
KOMMO_PRODUCTS_CATALOG_ID = config.integer("KOMMO_PRODUCTS_CATALOG_ID", minimum=1)
# The customer's billing health on its Kommo company (docs/configuration.md, "Billing health").
HEALTH_FIGURES = ("status", "mrr", "renewal", "balance", "overdue", "last_payment", "account_link")
KOMMO_COMPANY_HEALTH_FIELD_IDS = config.field_ids("KOMMO_COMPANY_HEALTH_FIELD_IDS", HEALTH_FIGURES)
# The same on the contact of a customer billed as a person (no company).
KOMMO_CONTACT_HEALTH_FIELD_IDS = config.field_ids("KOMMO_CONTACT_HEALTH_FIELD_IDS", HEALTH_FIGURES)

# After Won (docs/configuration.md, "Plan changes and cancellations").
CANCEL_POLICIES = ("EndOfCurrentTerm", "EndOfLastInvoicePeriod", "SpecificDate")
CHANGE_TIMINGS = ("immediately", "end_of_billing_period", "date_field")
ZKBRIDGE_CANCEL_POLICY = config.choice("ZKBRIDGE_CANCEL_POLICY", "EndOfCurrentTerm", CANCEL_POLICIES)
ZKBRIDGE_CHURN_STATUS_IDS = config.integers("ZKBRIDGE_CHURN_STATUS_IDS", str(KOMMO_LOST_STATUS_ID))
ZKBRIDGE_UPGRADE_TIMING = config.choice("ZKBRIDGE_UPGRADE_TIMING", "immediately", CHANGE_TIMINGS)
ZKBRIDGE_DOWNGRADE_TIMING = config.choice("ZKBRIDGE_DOWNGRADE_TIMING", "end_of_billing_period", CHANGE_TIMINGS)
KOMMO_CANCEL_DATE_FIELD_ID = config.integer("KOMMO_CANCEL_DATE_FIELD_ID")
KOMMO_CHANGE_DATE_FIELD_ID = config.integer("KOMMO_CHANGE_DATE_FIELD_ID")
# Plan migrations' quiet changes: the communication profile that sends no notifications.
ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID = config.string("ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID")
# How far ahead the admin's "ending soon" list of subscriptions looks by default.
ZKBRIDGE_RENEWAL_WINDOW_DAYS = config.integer("ZKBRIDGE_RENEWAL_WINDOW_DAYS", 30, minimum=1)
if KOMMO_WON_STATUS_ID in ZKBRIDGE_CHURN_STATUS_IDS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"ZKBRIDGE_CHURN_STATUS_IDS: names the Won status ({KOMMO_WON_STATUS_ID}); a won deal would cancel "
        f"its own subscription"
    )

if set(KOMMO_PREVIEW_STATUS_IDS) & {KOMMO_WON_STATUS_ID, *ZKBRIDGE_CHURN_STATUS_IDS}:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "KOMMO_PREVIEW_STATUS_IDS: names the Won status or a churn status; previews are for stages before Won"
    )

if KOMMO_USES_EMULATOR:
    # The built-in Kommo emulator's lead fields (sandbox/kommo.py), so the demo works with no variables.
    if config.raw("KOMMO_PREVIEW_STATUS_IDS") is None:
        KOMMO_PREVIEW_STATUS_IDS = [39402113]  # the emulator's "Proposal" stage
    KOMMO_PREVIEW_FIELD_IDS = KOMMO_PREVIEW_FIELD_IDS or {
        "mrr": 881290,
        "tcv": 881291,
        "first_invoice": 881292,
        "first_invoice_date": 881293,
        "term": 881294,
    }
    KOMMO_CLOSE_DATE_FIELD_ID = KOMMO_CLOSE_DATE_FIELD_ID or 881242
    KOMMO_PRODUCTS_CATALOG_ID = KOMMO_PRODUCTS_CATALOG_ID or 12001  # the emulator's products list
    if config.raw("KOMMO_COMPANY_HEALTH_FIELD_IDS") is None:  # the emulator's company fields
        KOMMO_COMPANY_HEALTH_FIELD_IDS = dict(zip(HEALTH_FIGURES, range(882001, 882008), strict=True))
    if config.raw("KOMMO_CONTACT_HEALTH_FIELD_IDS") is None:  # the emulator's contact fields
        KOMMO_CONTACT_HEALTH_FIELD_IDS = dict(zip(HEALTH_FIGURES, range(884001, 884008), strict=True))
    KOMMO_PLAN_FIELD_ID = KOMMO_PLAN_FIELD_ID or 881234
    KOMMO_ACCOUNT_FIELD_ID = KOMMO_ACCOUNT_FIELD_ID or 881250
    KOMMO_SUBSCRIPTION_FIELD_ID = KOMMO_SUBSCRIPTION_FIELD_ID or 881251
    KOMMO_CANCEL_DATE_FIELD_ID = KOMMO_CANCEL_DATE_FIELD_ID or 881270
    KOMMO_CHANGE_DATE_FIELD_ID = KOMMO_CHANGE_DATE_FIELD_ID or 881271
if ZUORA_USES_EMULATOR:
    ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID = ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID or "CP-SILENT"
if ZKBRIDGE_CANCEL_POLICY == "SpecificDate" and not KOMMO_CANCEL_DATE_FIELD_ID:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("KOMMO_CANCEL_DATE_FIELD_ID: required when ZKBRIDGE_CANCEL_POLICY is SpecificDate")
if "date_field" in (ZKBRIDGE_UPGRADE_TIMING, ZKBRIDGE_DOWNGRADE_TIMING) and not KOMMO_CHANGE_DATE_FIELD_ID:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "KOMMO_CHANGE_DATE_FIELD_ID: required when ZKBRIDGE_UPGRADE_TIMING or ZKBRIDGE_DOWNGRADE_TIMING is date_field"
    )

_has_long_lived = KOMMO_ACCESS_TOKEN is not None
# OAuth needs the integration's three keys; the first refresh token comes from KOMMO_REFRESH_TOKEN or from
# connecting Kommo in the admin (Connections: an authorization code exchanged by a worker).
_oauth = [KOMMO_CLIENT_ID, KOMMO_CLIENT_SECRET, KOMMO_REDIRECT_URI]
if (KOMMO_REFRESH_TOKEN or (not _has_long_lived and any(_oauth))) and not all(_oauth):
    from django.core.exceptions import ImproperlyConfigured

    _missing = [
        n
        for n, v in zip(["KOMMO_CLIENT_ID", "KOMMO_CLIENT_SECRET", "KOMMO_REDIRECT_URI"], _oauth, strict=True)
        if not v
    ]
    raise ImproperlyConfigured(
        f"{', '.join(_missing)}: Kommo OAuth needs the integration's client id, secret and redirect URI "
        "(or KOMMO_ACCESS_TOKEN)"
    )

# A real API needs its credentials, and with the emulators off both APIs need a real address; say so at
# start-up rather than on the first won deal. (ZKBRIDGE_SANDBOX=on with one real URL mixes the two.)
_required = []
if not ZKBRIDGE_SANDBOX:
    _required += [("ZUORA_BASE_URL", _zuora_url), ("KOMMO_BASE_URL", _kommo_url)]
if not ZUORA_USES_EMULATOR:
    _required += [("ZUORA_CLIENT_ID", ZUORA_CLIENT_ID), ("ZUORA_CLIENT_SECRET", ZUORA_CLIENT_SECRET)]
if not KOMMO_USES_EMULATOR and not _has_long_lived and not all(_oauth):
    _required.append(("KOMMO_ACCESS_TOKEN", None))
_missing_required = [name for name, value in _required if not value]
if _missing_required:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"{', '.join(_missing_required)}: required to talk to the real Zuora and Kommo "
        f"(or leave ZUORA_BASE_URL and KOMMO_BASE_URL unset to use the built-in emulators)"
    )

# Secrets stored in the database (OAuth tokens, entity client secrets, the web hook token) are encrypted with
# these Fernet keys, newest first (zkbridge/vault.py). Against a real Zuora or Kommo they are required; with the
# built-in emulators only, a key is derived from SECRET_KEY (the demo writes its own to demo.env).
ZKBRIDGE_ENCRYPTION_KEYS = config.fernet_keys("ZKBRIDGE_ENCRYPTION_KEYS")
if not ZKBRIDGE_ENCRYPTION_KEYS and ZUORA_USES_EMULATOR and KOMMO_USES_EMULATOR:
    ZKBRIDGE_ENCRYPTION_KEYS = [config.derived_fernet_key(SECRET_KEY)]

if not ZKBRIDGE_ENCRYPTION_KEYS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "ZKBRIDGE_ENCRYPTION_KEYS is required against a real Zuora or Kommo (it encrypts the tokens and secrets "
        'zkbridge stores): see docs/operations.md, "Encryption keys"'
    )

ZUORA_CALLOUT_USERNAME = config.string("ZUORA_CALLOUT_USERNAME")
ZUORA_CALLOUT_PASSWORD = config.string("ZUORA_CALLOUT_PASSWORD")
ZUORA_CALLOUT_HMAC_KEY = config.string("ZUORA_CALLOUT_HMAC_KEY")
# Where the callout's HMAC signature travels (Zuora lets the admin name the header; an addition).
ZUORA_CALLOUT_HMAC_HEADER = config.string("ZUORA_CALLOUT_HMAC_HEADER", "X-Zuora-Signature")
# Account-level events (payments) go to the Kommo company instead of the account's latest deal.
ZKBRIDGE_ACCOUNT_EVENTS_TO_COMPANY = config.boolean("ZKBRIDGE_ACCOUNT_EVENTS_TO_COMPANY", False)

ZKBRIDGE_DEFAULT_CURRENCY = config.currency("ZKBRIDGE_DEFAULT_CURRENCY", "USD")
# Decimal places of units of measure the catalog sync could not read from Zuora (Seat=0, GB=2); the
# mirrored UnitOfMeasure wins where both name a unit.
ZKBRIDGE_UOM_DECIMAL_PLACES = config.places_by_unit("ZKBRIDGE_UOM_DECIMAL_PLACES")
ZKBRIDGE_TIME_ZONE = config.time_zone("ZKBRIDGE_TIME_ZONE", "UTC")
# Bounded retries of transient failures, then "failed" (an addition to CONTRACT.md's table).
ZKBRIDGE_MAX_ATTEMPTS = config.integer("ZKBRIDGE_MAX_ATTEMPTS", 6, minimum=1)
ZKBRIDGE_RETRY_BASE_SECONDS = config.integer("ZKBRIDGE_RETRY_BASE_SECONDS", 30, minimum=0)

# A Zuora or Kommo call made inside a database transaction is logged as an error (the tests make it fail).
ZKBRIDGE_FORBID_HTTP_IN_TRANSACTIONS = False

# --- django-q2 ------------------------------------------------------------------------------------
_redis = config.string("ZKBRIDGE_REDIS_URL")
if _redis is not None and not _redis.startswith(("redis://", "rediss://")):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"ZKBRIDGE_REDIS_URL: expected redis://host:port/db, got {_redis!r}")
Q_CLUSTER = {
    "name": "zkbridge",
    "workers": config.integer("ZKBRIDGE_WORKERS", 2, minimum=1),
    # timeout < retry: a task is never handed out twice while it still runs; flows are idempotent
    # anyway, and our own retries (with backoff) live on SyncRecord, so django-q2 tries once.
    "timeout": 240,
    "retry": 300,
    "max_attempts": 1,
    "queue_limit": 20,
    "catch_up": False,
    # Successful task results are all kept here and trimmed to the newest 1,000 by the daily prune: django-q2's
    # own trimming reads and locks every kept row after every task (sync.ops.retention).
    "save_limit": 0,
    "ack_failures": True,
    # The ORM broker polls (an idle poll is one indexed SELECT): every 50 ms keeps a won deal's wait in the
    # queue small. Redis needs no polling.
    "poll": config.integer("ZKBRIDGE_QUEUE_POLL_MS", 50, minimum=10) / 1000,
    # django-q2's own logger ("django-q") would print a line for every task enqueued and run; zkbridge logs
    # each record's attempts itself. Warnings and errors still show.
    "log_level": "WARNING",
}
if _redis:
    Q_CLUSTER["redis"] = _redis
    # The web processes' shared counters (failed authentications, per-source budgets) live in Redis too.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis}}
else:
    Q_CLUSTER["orm"] = "default"

# Every line carries the sync record a flow works on; ZKBRIDGE_LOG_FORMAT=json gives one JSON object a line.
_log_format = config.string("ZKBRIDGE_LOG_FORMAT", "plain")
if _log_format not in ("plain", "json"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"ZKBRIDGE_LOG_FORMAT: expected plain or json, got {_log_format!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "sync_record": {"()": "sync.ops.logs.SyncRecordFilter"},
        "mask_tokens": {"()": "sync.ops.logs.MaskWebhookTokens"},
    },
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [sync_record=%(sync_record)s request=%(request_id)s] "
            "%(message)s"
        },
        "json": {"()": "sync.ops.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": _log_format,
            "filters": ["sync_record", "mask_tokens"],
        }
    },
    "loggers": {
        "zkbridge": {"handlers": ["console"], "level": config.string("ZKBRIDGE_LOG_LEVEL", "INFO")},
        "django_q": {"handlers": ["console"], "level": "WARNING"},
        # Every server error, with its traceback and the request's id (Django's own routing prints them
        # only with debug on); 4xx answers stay out of the log.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # runserver's access log (the demo): through the console handler, so the web hook token is masked.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# Operations: how long API call bodies and webhook payloads are kept (sync records are kept for good),
# and the bearer token /metrics wants (without one, /metrics answers only the machine itself).
ZKBRIDGE_RETENTION_DAYS = config.integer("ZKBRIDGE_RETENTION_DAYS", 90, minimum=1)
ZKBRIDGE_METRICS_TOKEN = config.string("ZKBRIDGE_METRICS_TOKEN")
# Lets another machine drive the emulators' control API (tests, benchmarks); without it, loopback only.
ZKBRIDGE_SANDBOX_TOKEN = config.string("ZKBRIDGE_SANDBOX_TOKEN")
