"""WSGI entry point (gunicorn zkbridge.wsgi)."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zkbridge.settings")
try:
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    from zkbridge.warmup import warm

    warm()  # at the worker's start (gunicorn imports this module in each worker), not in its first request
except ImproperlyConfigured as exc:
    print(f"zkbridge: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
