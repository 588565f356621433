"""zkbridge's admin site: the RevOps dashboard on the index page, and the connection checks page."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

# Machinery RevOps never needs: django-q2's queues and schedules, the usage feeds' API tokens.
SUPERUSER_APPS = ("django_q",)
SUPERUSER_MODELS = ("sync.apitoken",)
# On the index, the operators' pages sit apart from RevOps' (after them): who may sign in, lockouts, the
# workers' queues, and the raw traffic (API calls, deliveries, tokens).
OPERATOR_APPS = ("auth", "axes", "django_q")
OPERATOR_MODELS = ("sync.apicall", "sync.webhookevent", "sync.usagedelivery", "sync.apitoken")
REVOPS_ORDER = ("sync", "catalog")  # deals first, then the catalog and plan map


class ZkbridgeAdminSite(admin.AdminSite):
    site_header = "zkbridge"
    site_title = "zkbridge admin"
    index_title = "Kommo ↔ Zuora"
    index_template = "admin/zkbridge_index.html"
    # No navigation sidebar: lists and record pages get the whole width (the index lists every app, and every
    # page has its breadcrumbs). At 1280 px the sidebar left a 631 px box for the sync records' table.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        from sync.ops.dashboard import dashboard

        extra = dict(extra_context or {})
        if request.user.has_perm("sync.view_syncrecord"):
            from catalog.models import ZuoraEntity

            extra["dashboard"] = dashboard(ZuoraEntity.chosen(request.GET.get("entity", "")))
        extra["app_list"], extra["ops_app_list"] = self.split_apps(self.get_app_list(request))
        return super().index(request, extra)

    @staticmethod
    def split_apps(apps: list[dict]) -> tuple[list[dict], list[dict]]:
        """RevOps' apps (deals, then catalog) and, apart, the operators' (a model of a RevOps app that is
        machinery moves to an "<app>: traffic" group of its own)."""
        revops, ops = [], []
        for app in apps:
            if app["app_label"] in OPERATOR_APPS:
                ops.append(app)
                continue
            mine = [m for m in app["models"] if f"{app['app_label']}.{m['object_name'].lower()}" in OPERATOR_MODELS]
            kept = [m for m in app["models"] if m not in mine]
            if kept:
                revops.append({**app, "models": kept})
            if mine:
                ops.insert(0, {**app, "name": f"{app['name']}: traffic and tokens", "models": mine})
        order = {label: i for i, label in enumerate(REVOPS_ORDER)}
        revops.sort(key=lambda app: order.get(app["app_label"], len(order)))
        return revops, ops

    def get_app_list(self, request, app_label=None):
        """The dashboard comes first on the index; the workers' machinery is for superusers only."""
        apps = super().get_app_list(request, app_label)
        if request.user.is_superuser:
            return apps
        kept = []
        for app in apps:
            if app["app_label"] in SUPERUSER_APPS:
                continue
            models = [
                m for m in app["models"] if f"{app['app_label']}.{m['object_name'].lower()}" not in SUPERUSER_MODELS
            ]
            if models:
                kept.append({**app, "models": models})
        return kept

    def superusers_only(self) -> None:
        """Called once the admin is registered: django-q2's and the API tokens' pages answer superusers only,
        whatever permissions a staff group was given."""
        for model, model_admin in list(self._registry.items()):
            if model._meta.app_label not in SUPERUSER_APPS and model._meta.label_lower not in SUPERUSER_MODELS:
                continue
            restricted = type(f"SuperuserOnly{type(model_admin).__name__}", (SuperuserOnly, type(model_admin)), {})
            self.unregister(model)
            self.register(model, restricted)

    def autocomplete_view(self, request):
        from catalog.admin import RatePlanAutocomplete

        return RatePlanAutocomplete.as_view(admin_site=self)(request)

    def get_urls(self):
        return [path("connections/", self.admin_view(self.connections), name="connections"), *super().get_urls()]

    def connections(self, request):
        """The latest live check of Zuora and Kommo; "Check now" asks the workers for a new one (a web
        request never calls Zuora or Kommo itself)."""
        if not request.user.has_perm("sync.view_syncrecord"):
            raise PermissionDenied
        from sync.installation import kommo_webhook_url
        from sync.models import ConnectionCheck
        from sync.ops.connections import request_check

        if request.method == "POST":
            action = request.POST.get("action", "check")
            if action in ("connect_code", "connect_kommo", "disconnect_kommo"):
                return self.connect_kommo(request, action)
            if action == "create_fields":
                return self.create_kommo_fields(request)
            if not request.user.has_perm("sync.change_syncrecord"):
                raise PermissionDenied
            request_check(str(request.user))
            from zkbridge.audit import log_action

            log_action(request, ConnectionCheck, "asked for a connection check")
            return redirect("admin:connections")
        latest = ConnectionCheck.objects.first()
        context = {
            **self.each_context(request),
            "title": "Connections",
            "check": latest,
            "checks": latest.results if latest and latest.finished_at else None,
            "waiting": bool(latest and not latest.finished_at),
            # The token is the web hook's only secret: never shown, superusers included (`manage.py kommo_webhook`
            # prints the URL to the operator, `--register` subscribes it without anyone copying it).
            "webhook_url": kommo_webhook_url(masked=True),
            "can_check": request.user.has_perm("sync.change_syncrecord"),
            **self.kommo_connection_context(request),
        }
        return TemplateResponse(request, "admin/connections.html", context)

    @staticmethod
    def create_kommo_fields(request):
        """Connections → "Create missing fields": a worker creates them in Kommo, then checks again (superusers:
        it changes the Kommo account's setup)."""
        if not request.user.is_superuser:
            raise PermissionDenied
        from django.contrib import messages
        from django_q.tasks import async_task

        from sync.models import ConnectionCheck
        from zkbridge.audit import log_action

        async_task("sync.kommo_fields.create_missing", str(request.user), task_name=f"Kommo fields by {request.user}")
        log_action(request, ConnectionCheck, "asked to create the missing Kommo lead fields")
        messages.success(
            request, "Asked a worker to create the missing Kommo fields; the table shows them once checked."
        )
        return redirect("admin:connections")

    @staticmethod
    def kommo_connection_context(request) -> dict:
        from django.conf import settings

        from sync import kommo_connect

        latest = kommo_connect.latest()
        return {
            "kommo_connection": kommo_connect.current(),
            "kommo_attempt": latest,
            "kommo_exchanging": bool(latest and latest.status == latest.Status.EXCHANGING),
            "kommo_missing_keys": kommo_connect.missing_keys(),
            "kommo_long_lived": bool(settings.KOMMO_ACCESS_TOKEN),
            "kommo_redirect_uri": settings.KOMMO_REDIRECT_URI,
            "can_connect": request.user.is_superuser,
        }

    @staticmethod
    def connect_kommo(request, action: str):
        """Connect Kommo (a pasted code, or off to Kommo's consent page) or disconnect it: superusers only, since
        it changes whose Kommo zkbridge writes to. The exchange itself is a worker's."""
        from django.contrib import messages

        from sync import kommo_connect
        from sync.models import KommoConnection
        from zkbridge.audit import log_action

        if not request.user.is_superuser:
            raise PermissionDenied
        who = str(request.user)
        try:
            if action == "connect_code":
                kommo_connect.connect_with_code(request.POST.get("code", "")[:4000], who)
                log_action(request, KommoConnection, "connected Kommo with a pasted authorization code")
                messages.info(request, "The code was handed to the workers; this page shows the outcome.")
            elif action == "connect_kommo":
                _, url = kommo_connect.begin_consent(who)
                log_action(request, KommoConnection, "went to Kommo's consent page to connect Kommo")
                return redirect(url)
            elif kommo_connect.disconnect(who):
                log_action(request, KommoConnection, "disconnected Kommo")
                messages.info(request, "Disconnected: zkbridge uses the Kommo credentials of its environment again.")
        except kommo_connect.Refused as exc:
            messages.error(request, f"Kommo was not connected: {exc}.")
        return redirect("admin:connections")


class SuperuserOnly:
    """Mixed into a ModelAdmin: nobody but a superuser sees or changes it."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request, *args):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser
