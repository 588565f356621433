"""A RevOps user, in a real browser: finds a plan, edits a mapping, sees the retire-soon warning."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.core.management import call_command

from catalog.models import PlanMapping
from sync.groups import REVOPS
from tests.browser import ARTIFACTS, browser_page, login, pick_rate_plan, requires_chromium


@requires_chromium
def test_revops_edits_a_mapping_and_sees_the_retire_soon_warning(catalog):
    user = User.objects.create_user("rita", password="rita-password", is_staff=True)
    user.groups.add(Group.objects.get(name=REVOPS))
    base = catalog.url
    with browser_page() as page:
        login(page, base, "rita", "rita-password")
        # Find a plan in the catalog browser.
        page.goto(f"{base}/admin/catalog/productrateplan/?q=scale")
        assert page.locator("#result_list").get_by_text("Scale (retiring)").count() == 1
        assert "retires" in page.locator("#result_list").inner_text()
        page.screenshot(path=str(ARTIFACTS / "plan-map-1-catalog.png"), full_page=True)
        # Edit the Starter mapping: point it at the plan that retires in 20 days.
        mapping = PlanMapping.objects.get(normalized_value="starter", currency="USD")
        page.goto(f"{base}/admin/catalog/planmapping/{mapping.id}/change/")
        pick_rate_plan(page, "Scale", "Scale (retiring)")
        page.fill("#id_label", "Starter (moving to Scale)")
        page.click("input[name=_save]")
        page.wait_for_url(f"{base}/admin/catalog/planmapping/")
        warning = page.locator(".messagelist .warning").inner_text()
        assert "retires on" in warning
        page.screenshot(path=str(ARTIFACTS / "plan-map-2-retire-soon-warning.png"), full_page=True)
    mapping.refresh_from_db()
    assert mapping.label == "Starter (moving to Scale)"
    assert mapping.mapped_plans.get().product_rate_plan.name == "Scale (retiring)"
    call_command("check")
