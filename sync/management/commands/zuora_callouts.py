"""Print the exact Zuora notification settings for each billing event: copy and paste into Zuora."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand

EVENTS = [
    ("PaymentProcessed", "Payment Processed (Payment → Processed)"),
    ("PaymentProcessingError", "Payment Declined / Payment Processing Error"),
    ("SubscriptionCanceled", "Subscription Cancelled (Order Processed with a CancelSubscription action)"),
    ("SubscriptionRenewed", "Subscription Renewed"),
    ("ContractRenewalReminder", "a scheduled event N days before the term end date (e.g. 30)"),
]


def body(event: str) -> str:
    return json.dumps(
        {
            "eventType": event,
            "accountNumber": "<Account.AccountNumber>",
            "crmId": "<Account.CrmId>",
            "subscriptionNumber": "<Subscription.Name>",
            "amount": "<Payment.Amount>",
            "currency": "<Account.Currency>",
        },
        indent=2,
    )


class Command(BaseCommand):
    help = "Print the Zuora notification and callout settings for every billing event zkbridge handles."

    def handle(self, *args, **options):
        url = f"{settings.ZKBRIDGE_URL}/webhooks/zuora/"
        user = settings.ZUORA_CALLOUT_USERNAME or "<set ZUORA_CALLOUT_USERNAME>"
        self.stdout.write("In Zuora: Settings → Extension Studio / Notifications → (event) → Callout.\n")
        for event, where in EVENTS:
            self.stdout.write(f"=== {event}  ({where})")
            self.stdout.write(f"  Method:         POST\n  URL:            {url}")
            self.stdout.write(
                f"  Authentication: Basic, user name {user}, the password in ZUORA_CALLOUT_PASSWORD"
                " (preemptive or challenge: both work)"
            )
            if settings.ZUORA_CALLOUT_HMAC_KEY:
                self.stdout.write(
                    f"  Signature:      HMAC-SHA256 of the body with ZUORA_CALLOUT_HMAC_KEY, "
                    f"in the header {settings.ZUORA_CALLOUT_HMAC_HEADER}"
                )
            self.stdout.write("  Content-Type:   application/json\n  Body:")
            for line in body(event).splitlines():
                self.stdout.write(f"    {line}")
            self.stdout.write("")
        self.stdout.write("Zuora-Notification-Id (sent by Zuora with every callout) de-duplicates its retries.")
