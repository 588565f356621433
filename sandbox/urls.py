"""/sandbox/…: the Zuora and Kommo emulators, their pages and their control API."""

from django.urls import path, re_path

from sandbox import (
    control,
    kommo,
    kommo_activity,
    kommo_fields,
    kommo_webhooks,
    pages,
    zuora,
    zuora_orders,
    zuora_query,
    zuora_subscriptions,
    zuora_usage,
    zuora_zoql,
)

z = [
    path("zuora/", pages.zuora_home, name="sandbox-zuora-home"),
    path("zuora/oauth/token", zuora.oauth_token),
    path("zuora/v1/catalog/products", zuora.catalog_products),
    path("zuora/v1/rateplan/<str:product_key>/productRatePlan", zuora.product_rate_plans),
    path("zuora/v1/orders", zuora_orders.orders),
    path("zuora/v1/orders/preview", zuora_orders.orders_preview),
    path("zuora/v1/orders/subscription/<str:number>", zuora_subscriptions.orders_of_subscription),
    path("zuora/v1/orders/<str:order_number>", zuora_subscriptions.order_detail),
    path("zuora/v1/subscriptions/<str:key>", zuora_subscriptions.subscription_detail),
    path(
        "zuora/v1/subscriptions/<str:number>/versions/<int:version>/customFields",
        zuora_subscriptions.version_custom_fields,
    ),
    path("zuora/v1/accounts/<str:key>", zuora_subscriptions.update_account),
    path("zuora/object-query/accounts", zuora_query.query_accounts),
    path("zuora/object-query/accounts/<str:key>", zuora_query.query_accounts),
    path("zuora/object-query/subscriptions", zuora_query.query_subscriptions),
    path("zuora/object-query/subscriptions/<str:key>", zuora_query.query_subscriptions),
    path("zuora/v1/action/query", zuora_zoql.query),
    path("zuora/v1/describe/<str:object_name>", zuora_zoql.describe),
    path("zuora/v1/action/queryMore", zuora_zoql.query_more),
    path("zuora/v1/usage", zuora_usage.usage_import),
    path("zuora/v1/usage/<str:import_id>/status", zuora_usage.usage_status),
]
k = [
    path("kommo/", pages.kommo_home, name="sandbox-kommo-home"),
    path("kommo/demo/leads/<int:lead_id>/move/", pages.kommo_move),
    path("kommo/demo/leads/<int:lead_id>/plan/", pages.kommo_plan),
    path("kommo/oauth2/access_token", kommo.oauth_token),
    path("kommo/oauth", kommo.consent),
    path("kommo/api/v4/account", kommo.account),
    path("kommo/api/v4/leads", kommo.leads),
    path("kommo/api/v4/leads/pipelines", kommo.pipelines),
    re_path(r"^kommo/api/v4/(?P<entity_type>leads|contacts|companies)/custom_fields$", kommo_fields.custom_fields),
    re_path(
        r"^kommo/api/v4/(?P<entity_type>leads|contacts|companies)/custom_fields/(?P<field_id>[0-9]+)$",
        kommo_fields.custom_field,
    ),
    path("kommo/api/v4/leads/notes", kommo_activity.notes, {"entity_type": "leads"}),
    path("kommo/api/v4/leads/<int:lead_id>", kommo.lead_detail),
    path("kommo/api/v4/leads/<int:lead_id>/notes", kommo_activity.lead_notes),
    path("kommo/api/v4/contacts", kommo.contacts),
    path("kommo/api/v4/contacts/notes", kommo_activity.notes, {"entity_type": "contacts"}),
    path("kommo/api/v4/contacts/<int:contact_id>", kommo.contact_detail),
    path("kommo/api/v4/companies", kommo.companies),
    path("kommo/api/v4/companies/notes", kommo_activity.notes, {"entity_type": "companies"}),
    path("kommo/api/v4/companies/<int:company_id>", kommo.company_detail),
    path("kommo/api/v4/catalogs", kommo.catalogs),
    path("kommo/api/v4/catalogs/<int:catalog_id>/elements", kommo.catalog_elements),
    path("kommo/api/v4/tasks", kommo_activity.tasks),
    path("kommo/api/v4/tasks/<int:task_id>", kommo_activity.task_detail),
    path("kommo/api/v4/webhooks", kommo_webhooks.webhooks),
]
c = [
    path("control/reset", control.reset),
    path("control/faults", control.faults),
    path("control/settings", control.settings),
    path("control/state", control.state),
    path("control/kommo/leads/<int:lead_id>/status", control.lead_status),
    path("control/kommo/leads", control.generate_leads),
    path("control/zuora/subscriptions/<str:number>/bill", control.bill_subscription),
]
urlpatterns = z + k + c
