"""The RevOps journey in a real browser: dashboard → a needs-attention deal → fix its mapping → retry →
the deal is synced."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from sync.groups import REVOPS
from sync.models import SyncRecord
from tests.browser import ARTIFACTS, browser_page, login, pick_rate_plan, requires_chromium

UMBRELLA = 24312350


@requires_chromium
def test_revops_fixes_a_needs_attention_deal_from_the_dashboard(catalog):
    catalog.win(UMBRELLA)  # plan "Platinum" has no mapping yet
    record = SyncRecord.objects.get(key=f"deal_won:{UMBRELLA}")
    assert record.status == "needs_attention"
    user = User.objects.create_user("rita", password="rita-password", is_staff=True)
    user.groups.add(Group.objects.get(name=REVOPS))
    base = catalog.url
    with browser_page() as page:
        login(page, base, "rita", "rita-password")
        dashboard = page.locator("#zk-dashboard")
        assert "no plan mapping for plan 'Platinum'" in dashboard.inner_text()
        page.screenshot(path=str(ARTIFACTS / "journey-1-dashboard.png"), full_page=True)

        dashboard.get_by_role("link", name="Umbrella platinum").click()
        assert "no plan mapping for plan 'Platinum'" in page.locator("#content").inner_text()
        page.screenshot(path=str(ARTIFACTS / "journey-2-needs-attention.png"), full_page=True)

        page.goto(f"{base}/admin/catalog/planmapping/add/")
        page.fill("#id_kommo_value", "Platinum")
        page.fill("#id_label", "Platinum (sold as Starter)")
        pick_rate_plan(page, "Starter", "Starter")
        page.click("input[name=_save]")
        page.wait_for_url(f"{base}/admin/catalog/planmapping/")
        page.screenshot(path=str(ARTIFACTS / "journey-3-mapping-fixed.png"), full_page=True)

        page.goto(f"{base}/admin/sync/syncrecord/?status__exact=needs_attention")
        page.locator(f"input[name=_selected_action][value='{record.id}']").check()
        page.select_option("select[name=action]", "retry")
        page.click("button[name=index]")
        assert "1 record(s) queued for retry" in page.locator(".messagelist").inner_text()
        page.goto(f"{base}/admin/sync/syncrecord/{record.id}/change/")
        assert "Succeeded" in page.locator("#content").inner_text()
        page.screenshot(path=str(ARTIFACTS / "journey-4-synced.png"), full_page=True)
    record.refresh_from_db()
    assert record.status == "succeeded" and len(catalog.subscriptions(UMBRELLA)) == 1
    assert "Starter" in catalog.notes(UMBRELLA)[0] or "Platinum" in catalog.notes(UMBRELLA)[0]
