from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync"

    def ready(self) -> None:
        from sync.registry import load_flows

        load_flows()  # every kind's flow, from the explicit list in sync/registry.py
        from sync.billing.rules import ensure_default_rules
        from sync.installation import announce_webhook_token
        from sync.ops.logs import install_record_factory

        install_record_factory()
        from catalog.hooks import contributions
        from sync.catalog_sync import deals_billed, start_in_background

        contributions.deals_billed = deals_billed
        contributions.start_catalog_sync = start_in_background
        from sync.migration.run import migration_status

        contributions.migration_status = migration_status
        from sync.groups import ensure_groups
        from sync.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
        post_migrate.connect(ensure_default_rules, sender=self)
        post_migrate.connect(announce_webhook_token, sender=self)
        # catalog's permissions exist by now (it migrates first); auth creates sync's just before this runs.
        post_migrate.connect(ensure_groups, sender=self)
