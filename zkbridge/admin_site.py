"""zkbridge's admin site: the RevOps dashboard on the index page, and the connection checks page."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path


class ZkbridgeAdminSite(admin.AdminSite):
    site_header = "zkbridge"
    site_title = "zkbridge admin"
    index_title = "Kommo ↔ Zuora"
    index_template = "admin/zkbridge_index.html"

    def index(self, request, extra_context=None):
        from sync.dashboard import dashboard

        extra = dict(extra_context or {})
        if request.user.has_perm("sync.view_syncrecord"):
            extra["dashboard"] = dashboard()
        return super().index(request, extra)

    def get_urls(self):
        return [path("connections/", self.admin_view(self.connections), name="connections"), *super().get_urls()]

    def connections(self, request):
        if not request.user.has_perm("sync.view_syncrecord"):
            raise PermissionDenied
        from sync.connections import check_connections

        context = {**self.each_context(request), "title": "Connections", "checks": check_connections()}
        return TemplateResponse(request, "admin/connections.html", context)
