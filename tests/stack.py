"""A whole zkbridge in its own processes, for tests that kill and restart parts of it: the web process
(runserver, serving the emulators too) and any number of `qcluster` processes, on a database of their own
(a SQLite file, or a fresh PostgreSQL database when the suite runs on PostgreSQL).

With ZKBRIDGE_E2E_REDIS set (a redis:// URL whose database the tests may empty), the workers use django-q2's
Redis broker and two `qcluster` processes share the work, as several worker machines would."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, folder: Path, **env: str):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pg_name = ""
        if connection.vendor == "postgresql":
            self.pg_name = f"zkbridge_stack_{uuid.uuid4().hex[:10]}"
            self._admin(f'CREATE DATABASE "{self.pg_name}"')
            s = connection.settings_dict
            database_url = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{self.pg_name}"
        else:
            database_url = f"sqlite:///{folder / 'stack.sqlite3'}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ZUORA_", "KOMMO_"))}
        self.env = {
            **base,
            "DATABASE_URL": database_url,
            "ZKBRIDGE_URL": self.url,
            "ZKBRIDGE_SECRET_KEY": "stack-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "ZKBRIDGE_STATE_DIR": str(folder / "state"),
            "ZKBRIDGE_LOG_LEVEL": "INFO",
            # runserver answers each request in a new thread: connections are not kept (see docs/configuration.md)
            "ZKBRIDGE_DB_CONN_MAX_AGE": "0",
            # production's settings, with the referee judging what crosses the wire (tests/referee/)
            "DJANGO_SETTINGS_MODULE": "tests.referee.settings",
            **env,
        }
        self.redis = os.environ.get("ZKBRIDGE_E2E_REDIS", "")
        if self.redis:
            self.env["ZKBRIDGE_REDIS_URL"] = self.redis
            self._flush_redis()
        self.web: subprocess.Popen | None = None
        self.clusters: list[subprocess.Popen] = []
        self.cluster_count = 2 if self.redis else 1

    # --- processes ------------------------------------------------------------------------------------
    def manage(self, *args: str, **env: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "a")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, clusters: int | None = None) -> Stack:
        self.manage("migrate", "--noinput", "-v", "0")
        self.web = self._spawn("web", "runserver", f"127.0.0.1:{self.port}", "--noreload")
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (self.folder / "web.log").read_text()[-3000:]
            time.sleep(0.2)
        # Setting up is not what a test with short call timeouts measures: on a loaded machine the first OAuth
        # exchange can take longer than them.
        self.manage("demo_setup", "--seed", "--connect", ZUORA_TIMEOUT_SECONDS="30", KOMMO_TIMEOUT_SECONDS="30")
        self.cluster_count = clusters or self.cluster_count
        for _ in range(self.cluster_count):
            self.start_cluster()
        return self

    def restart_clusters(self) -> None:
        for _ in range(self.cluster_count):
            self.start_cluster()

    def start_cluster(self) -> subprocess.Popen:
        cluster = self._spawn(f"cluster-{len(self.clusters)}", "qcluster")
        self.clusters.append(cluster)
        return cluster

    def kill_clusters(self) -> None:
        """SIGKILL every qcluster process (main process, workers, all): no goodbye, no cleanup."""
        for cluster in self.clusters:
            if cluster.poll() is None:
                os.killpg(cluster.pid, signal.SIGKILL)
                cluster.wait()
        self.clusters = []

    def stop(self) -> None:
        for process in [*self.clusters, self.web]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.clusters, self.web]:
            if process is not None:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self.redis:
            self._flush_redis()
        if self.pg_name:
            self._admin(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.pg_name}'",
                f'DROP DATABASE IF EXISTS "{self.pg_name}"',
            )

    # --- talking to it -----------------------------------------------------------------------------
    def control(self, method: str, path: str, body: Any = None) -> requests.Response:
        answer = requests.request(method, f"{self.url}/sandbox/control/{path}", data=json.dumps(body), timeout=30)
        answer.raise_for_status()
        return answer

    def fault(self, **fault: Any) -> None:
        self.control("POST", "faults", fault)

    def win(self, lead_id: int) -> None:
        self.control("POST", f"kommo/leads/{lead_id}/status", {"status_id": 142})

    def query(self, sql: str) -> list[tuple]:
        if self.pg_name:
            import psycopg

            s = connection.settings_dict
            with psycopg.connect(
                host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], dbname=self.pg_name
            ) as db:
                return db.execute(sql).fetchall()
        with sqlite3.connect(self.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
            return db.execute(sql).fetchall()

    def wait_for(self, sql: str, check, seconds: float) -> float:
        """Poll `sql` until `check(rows)` holds; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if check(self.query(sql)):
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{sql} → {self.query(sql)} after {seconds} s; logs in {self.folder}")

    def _flush_redis(self) -> None:
        import redis

        redis.Redis.from_url(self.redis).flushdb()

    @staticmethod
    def _admin(*statements: str) -> None:
        import psycopg

        s = connection.settings_dict
        with psycopg.connect(
            host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], dbname="postgres", autocommit=True
        ) as db:
            for statement in statements:
                db.execute(statement)
