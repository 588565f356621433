from django.contrib.admin.apps import AdminConfig


class ZkbridgeAdminConfig(AdminConfig):
    default_site = "zkbridge.admin_site.ZkbridgeAdminSite"
