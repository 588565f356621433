"""The default billing-event texts in the house style (sync/kommo_texts.py): a rule still holding the earlier
default wording — never edited by RevOps — takes the new one; an edited rule is left as written."""

from django.db import migrations

CHANGES = [
    (
        "PaymentProcessingError",
        "note_template",
        "Zuora: payment of {amount} FAILED on account {account} ({date}).",
        "Zuora: payment of {amount} failed on account {account} on {date}.",
    ),
    (
        "PaymentProcessingError",
        "task_template",
        "Contact the client — payment failed ({amount}, account {account}).",
        "Zuora: payment of {amount} failed on account {account}. Contact the client about it.",
    ),
    (
        "SubscriptionCanceled",
        "note_template",
        "Zuora: subscription {subscription} was cancelled ({date}).",
        "Zuora: subscription {subscription} is cancelled, effective {date}.",
    ),
    (
        "SubscriptionRenewed",
        "note_template",
        "Zuora: subscription {subscription} renewed ({date}).",
        "Zuora: subscription {subscription} renewed on {date}.",
    ),
    (
        "ContractRenewalReminder",
        "task_template",
        "Contract ends in 30 days — discuss renewal (subscription {subscription}).",
        "Zuora: subscription {subscription} ends in 30 days. Discuss the renewal with the client.",
    ),
]


def forward(apps, schema_editor):
    rules = apps.get_model("sync", "BillingEventRule").objects
    for event_type, field, before, after in CHANGES:
        rules.filter(event_type=event_type, **{field: before}).update(**{field: after})


def backward(apps, schema_editor):
    rules = apps.get_model("sync", "BillingEventRule").objects
    for event_type, field, before, after in CHANGES:
        rules.filter(event_type=event_type, **{field: after}).update(**{field: before})


class Migration(migrations.Migration):
    dependencies = [("sync", "0026_subscription_mrr")]
    operations = [migrations.RunPython(forward, backward)]
