"""Benchmark harness: a real zkbridge (runserver + qcluster) on a fresh database, built-in emulators.

Benchmarks are not tests: they measure and print; the numbers go into BENCHMARKS.md by hand, with the
command that reproduced them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(int(round(p / 100 * (len(ordered) - 1))), len(ordered) - 1)
    return ordered[index]


def bench_env(port: int, database_url: str | None = None, **extra: str) -> dict[str, str]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZUORA_", "KOMMO_"))}
    db = RESULTS / f"bench-{port}.sqlite3"
    if database_url is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    env.update(
        {
            "DATABASE_URL": database_url or f"sqlite:///{db}",
            "ZKBRIDGE_URL": f"http://127.0.0.1:{port}",
            "ZKBRIDGE_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "ZKBRIDGE_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "zkbridge.settings",
            **extra,
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, text=True, capture_output=True
    ).stdout


@contextlib.contextmanager
def running_zkbridge(env: dict[str, str], workers: bool = True, web_args: list[str] | None = None) -> Iterator[str]:
    """Migrate, seed the emulators, start the web server (and workers); yield the base URL."""
    if env["DATABASE_URL"].startswith("postgres"):
        manage(env, "flush", "--noinput")
    manage(env, "migrate", "--noinput")
    manage(env, "sandbox_seed", "--reset")
    base = env["ZKBRIDGE_URL"]
    address = base.split("://", 1)[1]
    log = open(RESULTS / "server.log", "w")  # noqa: SIM115 - closed below
    # The web process as production runs it (gunicorn, threads for the emulators' injected latency), or
    # Django's runserver with BENCH_SERVER=runserver.
    if os.environ.get("BENCH_SERVER", "gunicorn") == "runserver":
        web = [sys.executable, "manage.py", "runserver", address, "--noreload"]
        env = {**env, "ZKBRIDGE_DB_CONN_MAX_AGE": "0"}  # a thread per request: kept connections would pile up
    else:
        web = [sys.executable, "-m", "gunicorn", "zkbridge.wsgi", "--bind", address]
        web += web_args or ["--workers", "2", "--worker-class", "gthread", "--threads", "32"]
    children = [
        subprocess.Popen(
            web,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    if workers:
        children.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("zkbridge did not start; see bench/results/server.log") from None
                time.sleep(0.2)
        yield base
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        log.close()


def django_setup(env: dict[str, str]) -> None:
    """Use the benchmark's database from this process too (to arrange data and read results)."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
