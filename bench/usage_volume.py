"""A million usage rows: intake (one POST), submission to Zuora (files under 4 MB, several uploads at
once), peak memory, and the admin's usage pages over them.

    .venv/bin/python bench/usage_volume.py --database-url postgres://postgres@127.0.0.1:5432/zkbridge_bench \\
        [--rows 1000000] [--workers 4]

zkbridge runs as production does (gunicorn; qcluster workers started for the submission only), with no
emulated latency. The feed is CSV for 100 subscriptions zkbridge billed, sent as one request of about
100 MB; one row in the middle is bad (a negative quantity) and must be named while the rest are stored.
Peak memory is each process's high-water mark (VmHWM): the web workers after the intake, the submitting
command and the workers after the submission.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from harness import ROOT, bench_env, django_setup, running_zkbridge

SUBSCRIPTIONS = 100


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().split()[3]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def arrange() -> list[tuple[str, str]]:
    from sandbox.models import ZAccount, ZSubscription
    from sync.models import SyncRecord

    pairs = []
    for n in range(SUBSCRIPTIONS):
        account = ZAccount.objects.create(
            account_number=f"A-BENCH{n:04}", name=f"Usage Co {n}", currency="USD", crm_id=f"company:{9_000_000 + n}"
        )
        sub = ZSubscription.objects.create(
            subscription_number=f"A-SBENCH{n:04}",
            account=account,
            contract_effective_date="2026-11-01",
            term_start_date="2026-11-01",
            order_number=f"O-BENCH{n:04}",
        )
        SyncRecord.objects.create(
            kind="deal_won",
            key=f"deal_won:{60_000_000 + n}",
            status="succeeded",
            kommo_lead_id=60_000_000 + n,
            zuora_account_number=account.account_number,
            zuora_subscription_number=sub.subscription_number,
        )
        pairs.append((account.account_number, sub.subscription_number))
    return pairs


def write_feed(path: Path, rows: int, pairs: list[tuple[str, str]]) -> int:
    bad = rows // 2
    with path.open("w") as out:
        out.write("subscription_number,uom,quantity,start_date,end_date,unique_key,description\n")
        for i in range(rows):
            _, sub = pairs[i % len(pairs)]
            quantity = "-1" if i == bad else str(i % 997)
            out.write(f"{sub},API call,{quantity},2026-11-01,2026-11-30,bench-{i:08},metered calls\n")
    return bad


def post_file(url: str, token: str, path: Path) -> tuple[int, dict, float]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    started = time.monotonic()
    with path.open("rb") as body:
        conn.request(
            "POST",
            "/api/usage/",
            body=body,
            headers={
                "Content-Type": "text/csv",
                "Authorization": f"Token {token}",
                "Content-Length": str(path.stat().st_size),
            },
        )
        answer = conn.getresponse()
        data = answer.read()
    return answer.status, json.loads(data), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4, help="qcluster workers uploading at once")
    parser.add_argument("--port", type=int, default=8768)
    parser.add_argument("--intake-only", action="store_true", help="stop after the intake and the admin pages")
    parser.add_argument("--zuora-import", choices=["at_poll", "background"], default="at_poll")
    args = parser.parse_args()
    env = bench_env(
        args.port,
        args.database_url,
        ZKBRIDGE_MAX_USAGE_BODY_BYTES=str(400 * 1024 * 1024),
        ZKBRIDGE_WORKERS=str(args.workers),
        ZKBRIDGE_MAX_CONCURRENT_CALLS="10",
    )
    web = ["--workers", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "600"]
    with running_zkbridge(env, workers=False, web_args=web) as base, tempfile.TemporaryDirectory() as folder:
        django_setup(env)
        from django.contrib.auth.models import User
        from django.test import Client

        from sandbox.models import RequestLog, ZUsageImport
        from sync.models import ApiToken, SyncRecord
        from sync.usage.models import UsageRecord

        pairs = arrange()
        user = User.objects.create_superuser("bench", password="bench-password-123")
        _, token = ApiToken.issue(user)  # (only its digest is stored)
        feed = Path(folder) / "usage.csv"
        bad = write_feed(feed, args.rows, pairs)
        size_mb = feed.stat().st_size / 1024 / 1024
        web_pid = int(
            subprocess.check_output(
                ["pgrep", "-f", f"gunicorn zkbridge.wsgi --bind 127.0.0.1:{args.port}"], text=True
            ).split()[0]
        )
        status, answer, ingest = post_file(base, token, feed)
        web_peak = max((peak_mb(p) for p in children_of(web_pid)), default=0.0)
        stored = UsageRecord.objects.count()
        print(
            f"intake: {args.rows:,} rows ({size_mb:.0f} MB CSV) in one POST: HTTP {status} in {ingest:.1f} s "
            f"({args.rows / ingest:,.0f} rows/s); accepted {answer.get('accepted'):,}, rejected "
            f"{[(r['index'], r['errors']) for r in answer.get('rejected', [])]} (the bad row is {bad}); "
            f"stored {stored:,}; web worker peak {web_peak:.0f} MB"
        )

        # Pages a RevOps person opens over a million rows (the admin, through Django's test client).
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        for path in (
            "/admin/sync/usagerecord/",
            "/admin/sync/usagerecord/?status__exact=pending",
            "/admin/sync/usagerecord/?q=bench-00500000",
            "/admin/sync/usagerecord/?p=500",
        ):
            client.get(path)
            started = time.monotonic()
            page = client.get(path)
            print(f"admin {path}: HTTP {page.status_code} in {(time.monotonic() - started) * 1000:.0f} ms")

        if args.intake_only:
            return
        RequestLog.objects.all().delete()
        from sandbox.common import set_setting

        # at_poll: the emulator imports a file while answering a status poll (that worker waits); background: in
        # a thread after the upload, as Zuora does, but on these same two cores, beside the uploads.
        set_setting("zuora_usage_import", args.zuora_import)
        # The workers run before the submission starts, as in production: each batch is taken and uploaded as
        # soon as submit_usage records it.
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(5)  # the cluster's start (imports, forking its workers) is not the submission's time
            started = time.monotonic()
            submit = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import resource, runpy, sys; sys.argv=['manage.py','submit_usage'];"
                    "runpy.run_path('manage.py', run_name='__main__');"
                    "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, 'MB')",
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            batching = time.monotonic() - started
            batches = SyncRecord.objects.filter(kind="usage_batch")
            while batches.exclude(steps__has_key="upload").exists():
                if time.monotonic() - started > 600:
                    raise SystemExit("the uploads did not finish within 10 minutes")
                time.sleep(0.2)
            uploaded = time.monotonic() - started
            # Zuora (here its emulator, on the same cores) imports each file in its own time; the batches look
            # again without holding a worker until it has.
            while batches.exclude(status="succeeded").exists():
                if time.monotonic() - started > 900:
                    raise SystemExit("the imports did not finish within 15 minutes")
                time.sleep(0.2)
            imported = time.monotonic() - started
            worker_peak = max((peak_mb(p) for p in children_of(cluster.pid)), default=0.0)
        finally:
            cluster.terminate()
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cluster.kill()
        files = list(ZUsageImport.objects.values_list("size", flat=True))
        uploads = RequestLog.objects.filter(service="zuora", method="POST", path="/v1/usage").count()
        print(
            f"submission: {batches.count()} batches made in {batching:.1f} s "
            f"({submit.stdout.split('peak')[-1].strip()} peak), all uploaded {uploaded:.1f} s and imported by Zuora "
            f"{imported:.1f} s after the start by "
            f"{args.workers} workers (peak {worker_peak:.0f} MB each at most); {uploads} uploads for "
            f"{len(files)} files of at most {max(files) / 1024 / 1024:.2f} MB "
            f"({sum(files) / 1024 / 1024:.0f} MB in all)"
        )


if __name__ == "__main__":
    main()
