"""The staff groups RevOps needs, created (or corrected) after every migrate.

- "RevOps": edits the plan map, browses the catalog, reads and repairs sync records.
- "RevOps (read-only)": sees all of it, changes nothing.
Staff in neither group see nothing (Django's default for users without permissions).
"""

from __future__ import annotations

REVOPS = "RevOps"
READ_ONLY = "RevOps (read-only)"

VIEW = [
    "catalog.view_product",
    "catalog.view_productrateplan",
    "catalog.view_productrateplancharge",
    "catalog.view_catalogsyncrun",
    "catalog.view_planmapping",
    "catalog.view_mappedrateplan",
    "catalog.view_unitofmeasure",  # decimal places that convert negotiated tiers
    "sync.view_syncrecord",
    "sync.view_apicall",
    "sync.view_webhookevent",
    "sync.view_billingeventrule",
    "sync.view_reconciliationrun",
    "sync.view_discrepancy",
    "sync.view_subscription",  # renewals: subscriptions ending soon
    "sync.view_migrationrule",
    "sync.view_migrationrun",
    "sync.view_customeraccount",  # which Zuora account each Kommo customer is billed on
    "catalog.view_zuoraentity",  # the entities (changed by administrators: they hold OAuth secrets)
    "sync.view_entityroute",
]
EDIT = [
    "catalog.add_planmapping",
    "catalog.change_planmapping",
    "catalog.delete_planmapping",
    "catalog.add_mappedrateplan",
    "catalog.change_mappedrateplan",
    "catalog.delete_mappedrateplan",
    "catalog.add_catalogsyncrun",  # the catalog's "sync now" button
    "sync.change_syncrecord",  # retry, resolve, cancel
    "sync.change_billingeventrule",
    "sync.add_migrationrule",
    "sync.change_migrationrule",
    "sync.delete_customeraccount",  # forget a link: the customer's next deal asks Zuora again
    "sync.add_entityroute",  # which entity bills which deals
    "sync.change_entityroute",
    "sync.delete_entityroute",
]


def ensure_groups(**kwargs) -> None:
    from django.contrib.auth.models import Group, Permission

    def permissions(names: list[str]) -> list[Permission]:
        found = []
        for name in names:
            app, codename = name.split(".")
            found += list(Permission.objects.filter(content_type__app_label=app, codename=codename))
        return found

    revops, _ = Group.objects.get_or_create(name=REVOPS)
    revops.permissions.set(permissions(VIEW + EDIT))
    read_only, _ = Group.objects.get_or_create(name=READ_ONLY)
    read_only.permissions.set(permissions(VIEW))
