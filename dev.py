#!/usr/bin/env python3
"""zkbridge's two commands, standard library only, so they work on a fresh machine with Python and git.

    python3 dev.py demo            set up and run zkbridge on SQLite with the built-in emulators
                                   (a restart keeps everything the user did)
    python3 dev.py demo --reset    the same, after forgetting all demo data (never a real setup's)
    python3 dev.py test            set up and run the whole test suite on several processes
                                   (extra arguments go to pytest, which then runs them as given)

Both create .venv/ and install the locked requirements (requirements.lock, requirements-dev.lock: every package
pinned with its hashes) the first time, and again when they change.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def say(text: str) -> None:
    print(f"[zkbridge] {text}", flush=True)


def ensure_venv(lock: str) -> None:
    """Install a lock file (every package pinned, with its hashes: pip refuses a file that does not match) into
    .venv/; the test environment also gets the referee's SDK (requirements-referee.txt, hashed, without its
    HTTP client's pins)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the machine has
        sys.exit(f"zkbridge needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        say("creating .venv/ …")
        venv.EnvBuilder(with_pip=True).create(VENV)
    files = [ROOT / lock]
    if lock == "requirements-dev.lock":
        files.append(ROOT / "requirements-referee.txt")
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    stamp = VENV / f".installed-{lock}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    say(f"installing {lock} (pinned, hashes checked) …")
    for file in files:
        pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes"]
        subprocess.run([*pip, "--no-deps", "-r", str(file)], check=True, cwd=ROOT)
    stamp.write_text(digest)


def manage(*args: str, env: dict | None = None, capture: bool = False) -> str:
    result = subprocess.run(
        [str(PY), "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def wait_for(url: str, instance: str, server: subprocess.Popen, seconds: float = 60) -> None:
    """Until /healthz answers from the web server this run started: its answer names the instance (a nonce
    handed to that process only), so another server on the port never passes for ours."""
    import json

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"zkbridge: the web server stopped before answering at {url} (see the lines above)")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and json.loads(response.read() or b"{}").get("instance") == instance:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"zkbridge did not answer at {url} within {seconds:.0f}s")


def port_taken(address: str) -> bool:
    """Whether something already listens where the demo's web server would (host:port)."""
    import socket

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            # As the web server binds (SO_REUSEADDR): a port the last run's connections linger on is free,
            # one a server listens on is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
    except OSError:
        return True
    return False


DEMO_ENV_KEYS = ("ZKBRIDGE_SECRET_KEY", "ZKBRIDGE_ENCRYPTION_KEYS", "ZKBRIDGE_URL", "DATABASE_URL")


def demo_environment() -> dict:
    """The demo's settings, written to <state dir>/demo.env so that manage.py in another terminal
    uses the same secret key, encryption key, URL and database without anyone exporting anything."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    state = Path(env.get("ZKBRIDGE_STATE_DIR") or ROOT / ".zkbridge")
    state.mkdir(parents=True, exist_ok=True)
    demo_env = state / "demo.env"
    saved = {}
    if demo_env.exists():
        for line in demo_env.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in DEMO_ENV_KEYS and value:
                saved[name] = value
    if not env.get("ZKBRIDGE_SECRET_KEY"):
        import secrets

        env["ZKBRIDGE_SECRET_KEY"] = saved.get("ZKBRIDGE_SECRET_KEY") or secrets.token_urlsafe(50)
    if not env.get("ZKBRIDGE_ENCRYPTION_KEYS"):
        # The demo's own key for the secrets it stores (a Fernet key: 32 random bytes, url-safe base64)
        import base64

        env["ZKBRIDGE_ENCRYPTION_KEYS"] = (
            saved.get("ZKBRIDGE_ENCRYPTION_KEYS") or base64.urlsafe_b64encode(os.urandom(32)).decode()
        )
    # What an earlier run used stays, unless this run's environment says otherwise.
    for name in ("ZKBRIDGE_URL", "DATABASE_URL"):
        if not env.get(name) and saved.get(name):
            env[name] = saved[name]
    env.setdefault("ZKBRIDGE_URL", "http://127.0.0.1:8000")
    # The demo's web server (runserver) starts a thread per request: a connection kept after it would wait for
    # the thread to be collected. gunicorn in production reuses its threads and keeps them.
    env.setdefault("ZKBRIDGE_DB_CONN_MAX_AGE", "0")
    lines = [f"{name}={env[name]}" for name in DEMO_ENV_KEYS if env.get(name)]
    demo_env.write_text("# written by python3 dev.py demo: manage.py reads it while no real Zuora or Kommo is set\n")
    with demo_env.open("a") as out:
        out.write("\n".join(lines) + "\n")
    demo_env.chmod(0o600)
    return env


def dotenv_names() -> set[str]:
    """Variable names set in the checkout's .env (read the way python-dotenv reads simple lines)."""
    path = ROOT / ".env"
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text(errors="replace").splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and value.strip().strip("'\"") and not name.startswith("#"):
            names.add(name.strip())
    return names


def real_endpoints() -> list[str]:
    in_dotenv = dotenv_names()
    return [n for n in ("ZUORA_BASE_URL", "KOMMO_BASE_URL") if os.environ.get(n, "").strip() or n in in_dotenv]


def demo(args: list[str]) -> None:
    unknown = [a for a in args if a != "--reset"]
    if unknown:
        sys.exit(f"unknown option(s) {' '.join(unknown)}; usage: python3 dev.py demo [--reset]")
    if real := real_endpoints():
        # The demo seeds and (with --reset) empties its database: never next to a real Zuora or Kommo.
        sys.exit(
            f"zkbridge: the demo runs on the built-in emulators, but {' and '.join(real)} "
            f"{'is' if len(real) == 1 else 'are'} set (environment or .env); nothing was changed. To run against "
            f"real accounts, see docs/operations.md."
        )
    env = demo_environment()
    base = env["ZKBRIDGE_URL"].rstrip("/")
    address = base.split("://", 1)[1].split("/", 1)[0]
    if ":" not in address.rsplit("]", 1)[-1]:
        address += ":80" if base.startswith("http://") else ":443"
    if port_taken(address):
        # Before anything is installed, migrated or started: a server already there would otherwise answer
        # for the demo (its health, its token, its catalog), and the demo would print someone else's URLs.
        port = int(address.rsplit(":", 1)[1])
        sys.exit(
            f"zkbridge: {address} is already in use (another server?); nothing was started. Choose another "
            f"port: ZKBRIDGE_URL=http://127.0.0.1:{port + 1 if port < 65535 else 8001} python3 dev.py demo"
        )
    ensure_venv("requirements.lock")
    say("migrating the database (SQLite by default) …")
    manage("migrate", "--noinput", "-v", "0", env=env)
    if "--reset" in args:
        say("--reset: forgetting the demo's data …")
        manage("demo_setup", "--reset", env=env)
    manage("collectstatic", "--noinput", "-v", "0", env=env)
    login = manage("demo_setup", "--seed", "--admin", env=env, capture=True).split()
    import secrets

    instance = secrets.token_hex(8)  # /healthz of this run's web server says it; nothing else knows it
    children = [
        subprocess.Popen(
            [str(PY), "manage.py", "runserver", address, "--noreload"],
            cwd=ROOT,
            env={**env, "ZKBRIDGE_INSTANCE": instance},
        ),
        subprocess.Popen([str(PY), "manage.py", "qcluster"], cwd=ROOT, env=env),
    ]

    def stop(*_, failure: str = ""):
        say("stopping …")
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        sys.exit(failure or 0)

    signal.signal(signal.SIGTERM, stop)
    try:
        try:
            wait_for(f"{base}/healthz", instance, children[0])
        except SystemExit as refused:  # the web server never answered as ours: stop the workers too
            stop(failure=str(refused.code))
        hook = manage("demo_setup", "--connect", env=env, capture=True).strip().splitlines()[-1]
        print(
            f"""
  zkbridge is running (SQLite, django-q2 workers, built-in Zuora and Kommo emulators).

  Admin:              {base}/admin/   login: {login[0]}  password: {login[1]}
  Kommo emulator:     {base}/sandbox/kommo/   ← press "Move to Won" on a lead
  Zuora emulator:     {base}/sandbox/zuora/
  Kommo web hook URL: {hook}

  Ctrl-C stops everything.
""",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        say("a process stopped; shutting down")
    except KeyboardInterrupt:
        pass
    stop()


def ensure_chromium() -> None:
    """Browser tests drive Debian's chromium (Playwright's own browser download is not used). Install it
    when we can (root with apt-get, as on CI); without it those tests skip and say why."""
    import shutil

    if shutil.which("chromium") or os.name == "nt" or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    say("installing chromium from Debian's packages for the browser tests …")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.call(["apt-get", "update", "-qq"], **quiet)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.call(["apt-get", "install", "-y", "-qq", "chromium"], env=env, **quiet) != 0:
        say("could not install chromium: the browser tests will be skipped")


FUZZ = "tests/test_fuzz_endpoints.py"


def test(args: list[str]) -> int:
    ensure_venv("requirements-dev.lock")
    ensure_chromium()
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "zkbridge.settings_test")
    say("ruff check …")
    if subprocess.call([str(PY), "-m", "ruff", "check", "--quiet", "."], cwd=ROOT) != 0:
        return 1
    say("mypy sync catalog …")
    if subprocess.call([str(PY), "-m", "mypy", "sync", "catalog"], cwd=ROOT, env=env) != 0:
        return 1
    if args:
        return subprocess.call([str(PY), "-m", "pytest", *args], cwd=ROOT, env=env)
    # The whole suite on several processes (pytest-xdist): its tests mostly wait on HTTP and on the processes
    # they start, so one more process than cores. A file's tests stay together in one process. The fuzzer runs
    # on its own afterwards: its generated tests share one node id, and pytest-xdist would run only the first.
    workers = max(2, min((os.cpu_count() or 1) + 1, 4))
    spread = ["-n", str(workers), "--dist", "loadfile", "--ignore", FUZZ]
    failed = subprocess.call([str(PY), "-m", "pytest", *spread], cwd=ROOT, env=env)
    return subprocess.call([str(PY), "-m", "pytest", FUZZ], cwd=ROOT, env=env) or failed


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        sys.exit(__doc__)
    if sys.argv[1] == "demo":
        try:
            demo(sys.argv[2:])
        except subprocess.CalledProcessError as exc:  # the command has said what went wrong already
            sys.exit(f"zkbridge: {' '.join(str(a) for a in exc.cmd[1:])} failed (exit {exc.returncode})")
    else:
        sys.exit(test(sys.argv[2:]))


if __name__ == "__main__":
    main()
