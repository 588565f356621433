"""Zuora's SubscriptionEndDate is a termed subscription's term end date (a cancellation sets it to the
cancellation date): versions an earlier emulator wrote without it get their term end."""

from django.db import migrations
from django.db.models import F


def term_end_as_end_date(apps, schema_editor):
    subscriptions = apps.get_model("sandbox", "ZSubscription")
    subscriptions.objects.filter(term_type="TERMED", subscription_end_date__isnull=True).exclude(
        status="Cancelled"
    ).update(subscription_end_date=F("term_end_date"))


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0011_fault_answer")]
    operations = [migrations.RunPython(term_end_as_end_date, migrations.RunPython.noop)]
