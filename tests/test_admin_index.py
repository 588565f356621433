"""RevOps' view of the admin index: the dashboard first and full width, the workers' machinery (Django Q) and
the API tokens for superusers only, whatever permissions a staff group was given."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from sync.groups import REVOPS


@pytest.fixture
def rita(db) -> Client:
    user = User.objects.create_user("rita", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=REVOPS))
    # Even a staff member somebody granted django-q2's and the tokens' permissions sees none of them.
    machinery = Permission.objects.filter(content_type__app_label="django_q") | Permission.objects.filter(
        codename__endswith="_apitoken"
    )
    user.user_permissions.add(*machinery)
    client = Client()
    client.force_login(user)
    return client


def test_the_dashboard_comes_first_and_machinery_is_hidden_from_revops(rita):
    page = rita.get("/admin/").content.decode()
    assert page.index('id="zk-dashboard"') < page.index("Catalog and plan map")
    assert 'class="colM"' in page and "recent-actions-module" not in page and 'id="zk-my-actions"' in page
    assert "Django Q" not in page and "Scheduled tasks" not in page and "API tokens" not in page
    for url in ("/admin/django_q/schedule/", "/admin/django_q/failure/", "/admin/sync/apitoken/"):
        assert rita.get(url).status_code == 403, url


def test_superusers_still_manage_the_queues_and_tokens(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "Django Q" in page and "Scheduled tasks" in page and "API tokens" in page
    assert admin_client.get("/admin/django_q/schedule/").status_code == 200
    assert admin_client.get("/admin/sync/apitoken/").status_code == 200


def test_staff_without_a_group_see_no_dashboard(db):
    user = User.objects.create_user("sam", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    page = client.get("/admin/").content.decode()
    assert 'id="zk-dashboard"' not in page and "Sync records" not in page


def test_every_page_has_its_icon_and_asking_for_it_logs_nothing(admin_client, caplog):
    assert 'rel="icon" type="image/svg+xml" href="/favicon.svg"' in admin_client.get("/admin/").content.decode()
    for url in ("/favicon.ico", "/favicon.svg"):
        answer = admin_client.get(url)
        assert answer.status_code == 200 and answer["Content-Type"] == "image/svg+xml", url
        assert answer.content.startswith(b"<svg") and "max-age" in answer["Cache-Control"]
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "favicon" in r.getMessage()]
