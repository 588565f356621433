"""A web worker imports its URLconf and builds the reverse map when it starts (zkbridge/wsgi.py), so the first
person to open the dashboard does not wait for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wsgi_module_leaves_the_urlconf_imported_and_the_reverse_map_built():
    code = (
        "import sys, zkbridge.wsgi; from django.urls import get_resolver; r = get_resolver(); "
        "print('drf_spectacular.views' in sys.modules, r._populated)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
