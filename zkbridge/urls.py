from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse, HttpResponseNotFound
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sync import kommo_connect
from sync.ops import health, metrics
from sync.usage.views import UsageFeedView
from sync.webhooks.views import KommoWebhookView, ZuoraCalloutView

# The tab icon: two linked rings (Kommo ↔ Zuora) in the admin's header colour. Browsers ask for
# /favicon.ico on every page; without an answer each page logged a 404 warning.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
    'fill="#417690"/><circle cx="12" cy="16" r="6.5" fill="none" stroke="#f5dd5d" stroke-width="3"/>'
    '<circle cx="20" cy="16" r="6.5" fill="none" stroke="#fff" stroke-width="3"/></svg>'
)


def favicon(request):
    answer = HttpResponse(FAVICON, content_type="image/svg+xml")
    answer["Cache-Control"] = "public, max-age=86400"
    return answer


urlpatterns = [
    path("favicon.ico", favicon),
    path("favicon.svg", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("webhooks/kommo/<str:token>/", KommoWebhookView.as_view(), name="kommo-webhook"),
    path("webhooks/zuora/", ZuoraCalloutView.as_view(), name="zuora-callout"),
    path("api/usage/", UsageFeedView.as_view(), name="usage-feed"),
    path("kommo/oauth/callback", kommo_connect.callback, name="kommo-oauth-callback"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

if settings.ZKBRIDGE_SANDBOX:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
else:
    urlpatterns.append(re_path(r"^sandbox/", lambda request: HttpResponseNotFound("sandbox is off")))
