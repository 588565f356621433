from django.contrib.admin.apps import AdminConfig


class ZkbridgeAdminConfig(AdminConfig):
    default_site = "zkbridge.admin_site.ZkbridgeAdminSite"

    def ready(self) -> None:
        super().ready()  # autodiscovers every app's admin
        from django.contrib import admin

        admin.site.superusers_only()  # type: ignore[attr-defined]
