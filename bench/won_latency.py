"""Won deal → Kommo note: latency (p50/p95) and API calls per deal, with emulated network latency.

    .venv/bin/python bench/won_latency.py [--deals 30] [--zuora-ms 300] [--kommo-ms 100] [--redis]

A real zkbridge (runserver + qcluster, 2 workers) on a fresh SQLite database. Each deal is moved to Won
in the Kommo emulator, which posts its web hook the way Kommo does; the clock stops when the note
appears on the lead. Deals are won one after another (latency, not throughput). Every call is priced as
production prices it: --zuora-ms on every Zuora call (reads, previews and the token included), --kommo-ms on
every Kommo API call. "Round trips" counts the calls one after another on a deal's critical path: calls
whose time on the wire overlaps (sent together) count once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

from harness import bench_env, django_setup, manage, percentile, running_zkbridge

FIRST_LEAD = 90_000_001


def arrange(count: int, zuora_ms: int, kommo_ms: int) -> list[int]:
    from sandbox.models import Fault, KCompany, KContact, KLead, RequestLog

    template = KLead.objects.get(id=24312346)
    leads = []
    for n in range(count):
        company = KCompany.objects.create(
            id=80_000_000 + n, name=f"Bench Co {n}", updated_at=0, custom_fields_values=None
        )
        contact = KContact.objects.create(
            id=70_000_000 + n,
            name=f"Pat Bench{n}",
            first_name="Pat",
            last_name=f"Bench{n}",
            company=company,
            updated_at=0,
            custom_fields_values=[
                {
                    "field_id": 100201,
                    "field_code": "EMAIL",
                    "values": [{"value": f"pat{n}@bench.example", "enum_code": "WORK"}],
                }
            ],
        )
        lead = KLead.objects.create(
            id=FIRST_LEAD + n,
            name=f"Bench deal {n}",
            price=3600,
            status_id=39402112,
            pipeline_id=4520110,
            created_at=0,
            updated_at=0,
            company=company,
            custom_fields_values=template.custom_fields_values,
            contacts=[{"id": contact.id, "is_main": True}],
        )
        leads.append(lead.id)
    # 300 ms per Zuora call, reads included; 100 ms per Kommo call (the API, not the demo pages).
    Fault.objects.create(service="zuora", kind="latency", path_prefix="/", latency_ms=zuora_ms)
    Fault.objects.create(service="kommo", kind="latency", path_prefix="/api/v4/", latency_ms=kommo_ms)
    RequestLog.objects.all().delete()
    return leads


def round_trips(record) -> tuple[int, int, int]:
    """Calls one after another in this record's flow: overlapping calls (sent together) count once; a round
    counts for Zuora when a Zuora call is in it (Zuora is the slower of the two)."""
    import datetime as dt

    calls = sorted(
        (c.at, c.at + dt.timedelta(milliseconds=c.duration_ms), c.provider)
        for c in record.api_calls.exclude(path__startswith="/oauth")
    )
    rounds: list[list] = []
    for start, end, provider in calls:
        if rounds and start < rounds[-1][1]:
            rounds[-1][1] = max(rounds[-1][1], end)
            rounds[-1][2].add(provider)
        else:
            rounds.append([start, end, {provider}])
    zuora = sum(1 for r in rounds if "zuora" in r[2])
    return len(rounds), zuora, len(rounds) - zuora


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deals", type=int, default=30)
    parser.add_argument("--zuora-ms", type=int, default=300, help="latency of every Zuora call")
    parser.add_argument("--kommo-ms", type=int, default=100)
    parser.add_argument("--redis", action="store_true", help="django-q2 on Redis (127.0.0.1:6379) instead of the ORM")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    extra = {"ZKBRIDGE_REDIS_URL": "redis://127.0.0.1:6379/5"} if args.redis else {}
    env = bench_env(args.port, **extra)
    with running_zkbridge(env) as base:
        manage(env, "demo_setup", "--connect")
        django_setup(env)
        from sandbox.models import KNote
        from sync.models import SyncRecord

        time.sleep(5)  # the schedules that run once at start (catalog sync, polling Kommo) finish first
        leads = arrange(args.deals, args.zuora_ms, args.kommo_ms)
        latencies = []
        for lead_id in leads:
            started = time.monotonic()
            request = urllib.request.Request(
                f"{base}/sandbox/control/kommo/leads/{lead_id}/status",
                data=json.dumps({"status_id": 142}).encode(),
                method="POST",
            )
            urllib.request.urlopen(request, timeout=30).read()
            while not KNote.objects.filter(entity_id=lead_id).exists():
                if time.monotonic() - started > 60:
                    raise SystemExit(f"no note on lead {lead_id} after 60 s")
                time.sleep(0.01)
            latencies.append(time.monotonic() - started)
        deadline = time.monotonic() + 10  # the last record finishes just after its note
        while SyncRecord.objects.filter(status__in=["pending", "running"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        ok = SyncRecord.objects.filter(status="succeeded").count()
        from sandbox.models import KWebhookDelivery

        answers = [d.duration_ms / 1000 for d in KWebhookDelivery.objects.filter(status=200)]
        from sync.models import ApiCall

        calls = {}
        for service in ("zuora", "kommo"):
            logs = ApiCall.objects.filter(provider=service, sync_record__kind="deal_won")
            calls[service] = {
                "total": logs.count() / len(leads),
                "writes": logs.filter(method="POST", path="/v1/orders").count() / len(leads)
                if service == "zuora"
                else logs.exclude(method="GET").count() / len(leads),
            }
        rounds = [round_trips(record) for record in SyncRecord.objects.filter(kind="deal_won")]
    print(
        f"deals: {len(leads)} (succeeded {ok}); broker: {'redis' if args.redis else 'orm'}; "
        f"latency: every Zuora call {args.zuora_ms} ms, every Kommo call {args.kommo_ms} ms"
    )
    print(
        f"webhook → note: p50 {percentile(latencies, 50):.2f} s, p95 {percentile(latencies, 95):.2f} s, "
        f"mean {statistics.mean(latencies):.2f} s, max {max(latencies):.2f} s"
    )
    print(
        f"web hook answered in (seen by Kommo, {len(answers)} deliveries): p50 "
        f"{percentile(answers, 50) * 1000:.0f} ms, p95 {percentile(answers, 95) * 1000:.0f} ms"
    )
    print(
        f"per deal: Zuora {calls['zuora']['total']:.1f} calls ({calls['zuora']['writes']:.1f} write), "
        f"Kommo {calls['kommo']['total']:.1f} calls ({calls['kommo']['writes']:.1f} writes); "
        f"round trips on the critical path: {statistics.mean(r[0] for r in rounds):.1f} "
        f"(Zuora {statistics.mean(r[1] for r in rounds):.1f}, Kommo {statistics.mean(r[2] for r in rounds):.1f})"
    )


if __name__ == "__main__":
    main()
