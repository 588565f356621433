"""Kommo web hook intake: requests a second and the answer's p50/p99 with nothing lost.

    .venv/bin/python bench/webhook_intake.py --database-url postgres://postgres@127.0.0.1:5432/zkbridge_bench \\
        [--rate 300] [--seconds 20] [--connections 16] [--web-workers 3]

zkbridge's web process runs as production runs it (gunicorn) on PostgreSQL; this process drives
`POST /webhooks/kommo/<token>/` from outside it, each request a Won web hook for a new lead, sent on a
fixed schedule (`--rate` a second) over keep-alive connections. A request's time is counted from when it
was due, so a server that falls behind shows it in the percentiles instead of slowing the sender down.
No workers run: every request must leave its body in the inbox, its sync record, and the record's task in
the broker (or, past the per-source budget, its record scheduled for the dispatcher) — counted at the end.
With `--rate 0` the senders go as fast as the server answers (the most it takes).
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from urllib.parse import urlencode, urlsplit

from harness import bench_env, django_setup, percentile, running_zkbridge

FIRST_LEAD = 50_000_001


def body(lead_id: int) -> bytes:
    entity = "leads[status][0]"
    fields = {
        f"{entity}[id]": lead_id,
        f"{entity}[name]": f"Intake deal {lead_id}",
        f"{entity}[status_id]": 142,
        f"{entity}[old_status_id]": 39402112,
        f"{entity}[pipeline_id]": 4520110,
        f"{entity}[price]": 3600,
        f"{entity}[responsible_user_id]": 7720001,
        f"{entity}[updated_at]": 1763800000,
        f"{entity}[custom_fields][0][id]": 881234,
        f"{entity}[custom_fields][0][name]": "Plan",
        f"{entity}[custom_fields][0][values][0][value]": "Growth",
        "account[subdomain]": "acme",
        "account[id]": 29000001,
    }
    return urlencode(fields).encode()


def drive(url: str, rate: float, seconds: float, connections: int) -> tuple[list[float], dict[int, int], float]:
    parts = urlsplit(url)
    total = int(rate * seconds) if rate else 10**9
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    next_index = [0]
    started = time.monotonic() + 0.5
    stop_at = started + seconds

    def sender() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= total:
                break
            due = started + index / rate if rate else time.monotonic()
            if not rate and due > stop_at:
                break
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            payload = body(FIRST_LEAD + index)
            try:
                conn.request("POST", parts.path, payload, {"Content-Type": "application/x-www-form-urlencoded"})
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                status = 0
            done = time.monotonic()
            with lock:
                latencies.append(done - due)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True, help="PostgreSQL, as production runs it")
    parser.add_argument("--rate", type=float, default=300, help="requests a second (0: as fast as answered)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    env = bench_env(args.port, args.database_url)
    web = ["--workers", str(args.web_workers), "--worker-class", "gthread", "--threads", str(args.threads)]
    with running_zkbridge(env, workers=False, web_args=web) as base:
        django_setup(env)
        from django_q.models import OrmQ

        from sync.installation import kommo_webhook_token
        from sync.models import SyncRecord, WebhookEvent

        url = f"{base}/webhooks/kommo/{kommo_webhook_token()}/"
        for _ in range(50):  # warm every worker process and connection
            drive(url, 0, 0.2, args.connections)
        WebhookEvent.objects.all().delete()
        SyncRecord.objects.all().delete()
        OrmQ.objects.all().delete()
        latencies, statuses, elapsed = drive(url, args.rate, args.seconds, args.connections)
        sent = len(latencies)
        stored = WebhookEvent.objects.filter(valid=True).count()
        records = SyncRecord.objects.count()
        queued = OrmQ.objects.count()
        scheduled = SyncRecord.objects.filter(next_attempt_at__isnull=False).count()
    print(
        f"sent {sent} web hooks in {elapsed:.1f} s: {sent / elapsed:.0f} requests/s "
        f"({'as fast as answered' if not args.rate else f'{args.rate:.0f}/s scheduled'}, "
        f"{args.connections} connections; gunicorn {args.web_workers} × {args.threads} threads)"
    )
    print(
        f"answer time: p50 {percentile(latencies, 50) * 1000:.1f} ms, p95 {percentile(latencies, 95) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; statuses {statuses}"
    )
    lost = sent - min(stored, records)
    print(
        f"stored: {stored} bodies, {records} sync records; {queued} tasks in the broker, {scheduled} records "
        f"scheduled past the per-source budget; lost: {lost}"
    )


if __name__ == "__main__":
    main()
