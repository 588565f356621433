from django.conf import settings
from django.contrib import admin
from django.http import HttpResponseNotFound
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sync.ops import health, metrics
from sync.usage.views import UsageFeedView
from sync.webhooks.views import KommoWebhookView, ZuoraCalloutView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/kommo/<str:token>/", KommoWebhookView.as_view(), name="kommo-webhook"),
    path("webhooks/zuora/", ZuoraCalloutView.as_view(), name="zuora-callout"),
    path("api/usage/", UsageFeedView.as_view(), name="usage-feed"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

if settings.ZKBRIDGE_SANDBOX:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
else:
    urlpatterns.append(re_path(r"^sandbox/", lambda request: HttpResponseNotFound("sandbox is off")))
