"""Every admin list and change page zkbridge adds, looked at as a RevOps person would: at 1280 × 800 and at
1024 × 768, on the demo served as the README serves it (`python3 dev.py demo`), with data the test made. A table
wider than its container, or a record key or status badge broken mid-word, fails; each page's screenshot is kept
in test-artifacts/screens/."""

from __future__ import annotations

import requests

from tests.browser import ARTIFACTS, browser_page, login, requires_chromium
from tests.test_demo import ACME_EXPANSION, UMBRELLA, demo, record_status  # noqa: F401 - the fixture

ACME, GLOBEX, INITECH, SOLO = 24312345, 24312347, 24312348, 24312349
SIZES = [(1280, 800), (1024, 768)]
SHOTS = ARTIFACTS / "screens"

# What a page must not do: a table wider than the box it sits in; a key or badge drawn on two lines.
MEASURE = """() => {
  const problems = [];
  for (const table of document.querySelectorAll('#content table')) {
    const box = table.closest('.results, .module, fieldset, .zk-card, #content-main, #content') || table.parentElement;
    if (table.offsetParent !== null && table.scrollWidth > box.clientWidth + 1) {
      problems.push(`a table is ${table.scrollWidth}px wide in a ${box.clientWidth}px box`);
    }
  }
  for (const el of document.querySelectorAll('.zk-key, .zk-badge')) {
    if (el.offsetParent !== null && el.getClientRects().length > 1) problems.push(`"${el.textContent}" wraps`);
  }
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth + 1) problems.push(`the page is ${page.scrollWidth}px wide`);
  return problems;
}"""


def pages(demo) -> list[str]:  # noqa: F811
    """The admin pages zkbridge adds: every list, and a change page of each model that has a row."""
    lists = [
        "sync/syncrecord", "sync/apicall", "sync/webhookevent", "sync/billingeventrule", "sync/customeraccount",
        "sync/entityroute", "sync/usagerecord", "sync/usagedelivery", "sync/subscription", "sync/migrationrule",
        "sync/migrationrun",
        "sync/reconciliationrun", "sync/discrepancy", "catalog/product", "catalog/productrateplan",
        "catalog/planmapping", "catalog/zuoraentity", "catalog/unitofmeasure", "sync/quotepreview",
        "sync/planfieldrun", "sync/billinghealth",
    ]  # fmt: skip
    urls = ["/admin/", "/admin/connections/", "/admin/catalog/product/legacy/"]
    for name in lists:
        urls.append(f"/admin/{name}/")
        table = name.replace("/", "_")
        rows = demo.query(f"SELECT id FROM {table} ORDER BY id DESC LIMIT 1")
        if rows:
            urls.append(f"/admin/{name}/{rows[0][0]}/change/")
    urls.append("/admin/catalog/planmapping/add/")
    return urls


def make_data(demo) -> None:  # noqa: F811
    """What a working day leaves behind: billed deals, some needing attention, a reconciliation, a dry run."""
    for lead in (ACME_EXPANSION, GLOBEX, INITECH, UMBRELLA, SOLO):
        requests.post(f"{demo.url}/sandbox/control/kommo/leads/{lead}/status", json={"status_id": 142}, timeout=30)
    demo.wait_until(record_status(ACME_EXPANSION), [("succeeded",)])
    demo.wait_until(record_status(UMBRELLA), [("needs_attention",)])
    # A quote before Won, and a failed payment Zuora reports on ACME's account (its company's billing health).
    requests.post(f"{demo.url}/sandbox/control/kommo/leads/{ACME}/status", json={"status_id": 39402113}, timeout=30)
    demo.wait_until(f"SELECT count(*) FROM sync_quotepreview WHERE lead_id = {ACME} AND mrr IS NOT NULL", [(1,)])
    [(account,)] = demo.query(
        f"SELECT zuora_account_number FROM sync_syncrecord WHERE key = 'deal_won:{ACME_EXPANSION}'"
    )
    failed = {"eventType": "PaymentProcessingError", "accountNumber": account, "amount": "300", "currency": "USD"}
    assert requests.post(f"{demo.url}/webhooks/zuora/", json=failed, timeout=30).status_code == 200
    demo.wait_until(f"SELECT count(*) FROM sync_billinghealth WHERE account_number = '{account}'", [(1,)])
    assert demo.manage("reconcile").returncode in (0, 1)
    assert demo.manage("migrate_plans", "--dry-run").returncode == 0
    checked = demo.manage(
        "shell",
        "-c",
        "from sync.models import ConnectionCheck; from sync.ops.connections import run_check; "
        "run_check(ConnectionCheck.objects.create(requested_by='screens').id)",
    )
    assert checked.returncode == 0, checked.stderr
    made = demo.manage("drf_create_token", "admin")
    key = made.stdout.split("Generated token ")[1].split()[0]
    usage = [{"kommo_lead_id": ACME_EXPANSION, "uom": "API call", "quantity": "120", "start_date": "2026-11-01",
              "unique_key": f"screen-{n}"} for n in range(3)]  # fmt: skip
    answer = requests.post(f"{demo.url}/api/usage/", json=usage, headers={"Authorization": f"Token {key}"}, timeout=30)
    assert answer.status_code == 202, answer.text


@requires_chromium
def test_every_admin_page_reads_at_1280_and_1024_pixels(demo):  # noqa: F811
    make_data(demo)
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: dict[str, list[str]] = {}
    with browser_page() as page:
        login(page, demo.url, "admin", demo.password)
        for url in pages(demo):
            for width, height in SIZES:
                page.set_viewport_size({"width": width, "height": height})
                answer = page.goto(f"{demo.url}{url}")
                assert answer is not None and answer.status == 200, (url, answer and answer.status)
                name = url.strip("/").replace("/", "-") or "index"
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
                found = page.evaluate(MEASURE)
                if found:
                    problems[f"{url} at {width}px"] = found
    assert problems == {}, "\n".join(f"{where}: {'; '.join(what)}" for where, what in problems.items())
