"""1,000 deals won at once: time until every one is billed and noted, and Kommo's request rate meanwhile.

    .venv/bin/python bench/won_burst.py [--deals 1000] [--zuora-ms 300] [--kommo-ms 100] [--database-url URL]

A real zkbridge (gunicorn + qcluster, 2 workers) with the built-in emulators. The deals are Won in the Kommo
emulator, which allows 7 requests a second (a non-JSON 429 above) like Kommo; their web hooks are posted to
zkbridge at once from 8 connections, one lead each (--leads-per-hook to batch them as Kommo does for a mass
change). Every Zuora call costs --zuora-ms, every Kommo call --kommo-ms. The clock runs from the first web
hook sent until the last deal's record has succeeded. ZKBRIDGE_MAX_RECORDS_PER_MINUTE is raised to 5,000 (an
operator running a month-end import would: the default 600 makes deals past the 600th wait a minute).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import threading
import time
from urllib.parse import urlencode, urlsplit

from harness import bench_env, django_setup, manage, running_zkbridge

FIRST_LEAD = 60_000_001


def hook_body(lead_ids: list[int]) -> bytes:
    fields: dict[str, object] = {"account[subdomain]": "sandbox", "account[id]": 29000001}
    for n, lead_id in enumerate(lead_ids):
        entity = f"leads[status][{n}]"
        fields.update(
            {
                f"{entity}[id]": lead_id,
                f"{entity}[status_id]": 142,
                f"{entity}[old_status_id]": 39402112,
                f"{entity}[pipeline_id]": 4520110,
            }
        )
    return urlencode(fields).encode()


def post_all(url: str, bodies: list[bytes], connections: int = 8) -> None:
    parts = urlsplit(url)
    queue = collections.deque(bodies)
    guard = threading.Lock()
    failures = []

    def sender() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while True:
            with guard:
                if not queue:
                    break
                body = queue.popleft()
            conn.request("POST", parts.path, body, {"Content-Type": "application/x-www-form-urlencoded"})
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(answer.status)
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"web hooks refused: {collections.Counter(failures)}")


def peak_rate(times: list[float], window: float = 1.0) -> int:
    """The most requests in any `window` seconds."""
    times = sorted(times)
    best = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deals", type=int, default=1000)
    parser.add_argument("--zuora-ms", type=int, default=300, help="latency of every Zuora call")
    parser.add_argument("--kommo-ms", type=int, default=100, help="latency of every Kommo API call")
    parser.add_argument("--leads-per-hook", type=int, default=1)
    parser.add_argument("--database-url", help="PostgreSQL (default: a fresh SQLite file)")
    parser.add_argument("--port", type=int, default=8768)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes (zkbridge and the emulators)")
    parser.add_argument("--threads", type=int, default=32, help="threads per gunicorn process")
    args = parser.parse_args()
    env = bench_env(args.port, args.database_url, ZKBRIDGE_MAX_RECORDS_PER_MINUTE="5000")
    web = ["--workers", str(args.web_workers), "--worker-class", "gthread", "--threads", str(args.threads)]
    with running_zkbridge(env, web_args=web) as base:
        manage(env, "demo_setup", "--connect")
        django_setup(env)
        from sandbox import demo
        from sandbox.common import set_setting
        from sandbox.models import Fault, KLead, KNote, RequestLog
        from sync.installation import kommo_webhook_token
        from sync.models import SyncRecord

        time.sleep(5)  # the schedules that run once at start (catalog sync, polling Kommo) finish first
        set_setting("kommo_requests_per_second", 7)
        ids = demo.generate_leads(FIRST_LEAD, args.deals)
        KLead.objects.filter(id__in=ids).update(status_id=142, closed_at=int(time.time()), updated_at=int(time.time()))
        Fault.objects.create(service="zuora", kind="latency", path_prefix="/", latency_ms=args.zuora_ms)
        Fault.objects.create(service="kommo", kind="latency", path_prefix="/api/v4/", latency_ms=args.kommo_ms)
        RequestLog.objects.all().delete()
        url = f"{base}/webhooks/kommo/{kommo_webhook_token()}/"
        step = args.leads_per_hook
        bodies = [hook_body(ids[i : i + step]) for i in range(0, len(ids), step)]

        started = time.monotonic()
        wall_start = time.time()
        post_all(url, bodies)
        posted = time.monotonic() - started
        deals = SyncRecord.objects.filter(kind="deal_won", kommo_lead_id__in=ids)
        while deals.filter(status="succeeded").count() < len(ids):
            if deals.exclude(status__in=["pending", "running", "retrying", "succeeded"]).exists():
                stuck = list(deals.exclude(status__in=["pending", "running", "retrying", "succeeded"])[:3])
                raise SystemExit(f"a deal stopped: {[(r.key, r.status, r.reason) for r in stuck]}")
            if time.monotonic() - started > 1800:
                raise SystemExit("not drained after 30 minutes")
            time.sleep(0.2)
        drained = time.monotonic() - started
        notes = KNote.objects.filter(entity_id__in=ids).count()
        kommo = list(
            RequestLog.objects.filter(service="kommo", at__gte=wall_start).values_list("at", "status", "method", "path")
        )
        zuora = collections.Counter(
            f"{m} {p if not p.startswith('/object-query') else '/object-query/…'}"
            for m, p in RequestLog.objects.filter(service="zuora", at__gte=wall_start).values_list("method", "path")
        )
        retried = deals.filter(attempts__gt=1).count()
    kommo_calls = collections.Counter(f"{m} {p}" for _, _, m, p in kommo)
    print(
        f"{len(ids)} deals won at once ({len(bodies)} web hooks posted in {posted:.1f} s); every Zuora call "
        f"{args.zuora_ms} ms, every Kommo call {args.kommo_ms} ms; Kommo allows 7 requests/s"
    )
    print(f"drained (all succeeded) in {drained:.1f} s; notes {notes}; deals that needed a retry: {retried}")
    print(
        f"Kommo: {len(kommo)} requests, peak {peak_rate([a for a, *_ in kommo])} in any 1 s, "
        f"429s {sum(1 for _, s, *_ in kommo if s == 429)}; {dict(kommo_calls.most_common(8))}"
    )
    print(f"Zuora: {sum(zuora.values())} requests; {dict(zuora.most_common(6))}")


if __name__ == "__main__":
    main()
