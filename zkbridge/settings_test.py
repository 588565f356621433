"""Test settings: the production settings plus django-q2 in sync mode.

django-q2 reads Q_CLUSTER at import time, so sync mode has to be set here rather than with
override_settings (see ../shared/reference/django-stack.md).
"""

import os

os.environ.setdefault("ZKBRIDGE_SECRET_KEY", "test-secret-key-not-for-production-use-0123456789")

from zkbridge.settings import *  # noqa: E402,F403
from zkbridge.settings import Q_CLUSTER  # noqa: E402

Q_CLUSTER = {**Q_CLUSTER, "sync": True}
ZKBRIDGE_SANDBOX = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Fast retries in tests: the flows are exercised, not the wall clock.
ZKBRIDGE_RETRY_BASE_SECONDS = 0
ZUORA_TIMEOUT_SECONDS = 3
ZKBRIDGE_FORBID_HTTP_IN_TRANSACTIONS = True
# Every test comes from 127.0.0.1 and many fail authentication on purpose; the flood limit has its own test.
ZKBRIDGE_AUTH_FAILURES_PER_MINUTE = 100_000
ZKBRIDGE_MAX_RECORDS_PER_MINUTE = 100_000  # likewise: the budget has its own test
KOMMO_TIMEOUT_SECONDS = 3
LOGGING = {"version": 1, "disable_existing_loggers": False}

from zkbridge.settings import BASE_DIR, DATABASES  # noqa: E402

# The tests serve static files from the apps' folders (no collectstatic): an empty STATIC_ROOT of their own
# keeps WhiteNoise from warning that the real one was never collected.
STATIC_ROOT = BASE_DIR / ".zkbridge" / "static-test"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

# The live server answers each request in a thread of its own: a connection kept after the request would stay
# open until the thread is collected (PostgreSQL runs out of them). Production's gunicorn reuses its threads.
DATABASES["default"]["CONN_MAX_AGE"] = 0

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:: the live server's threads then use their own connections, as in production.
    # .zkbridge/ is created here too: a fresh clone runs the tests before any demo has made it.
    (BASE_DIR / ".zkbridge").mkdir(exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".zkbridge" / "test.sqlite3")}

# Named locks on SQLite are files under ZKBRIDGE_STATE_DIR/locks. Each pytest-xdist worker gets a folder of its
# own: two workers' tests (whose emulators number subscriptions alike) otherwise took each other's locks —
# "another change to A-S00000001 is in flight" in a test that had no other change.
if os.environ.get("PYTEST_XDIST_WORKER"):
    from zkbridge.settings import ZKBRIDGE_STATE_DIR  # noqa: E402

    ZKBRIDGE_STATE_DIR = ZKBRIDGE_STATE_DIR / "test-workers" / os.environ["PYTEST_XDIST_WORKER"]

# The referee: every exchange with the emulators is judged against the vendors' own definitions (tests/referee/).
SANDBOX_OBSERVERS = ["tests.referee.observe"]
