"""What makes a migration rule safe to save: every problem named, so RevOps fix it once."""

from __future__ import annotations

import datetime as dt

from catalog.models import ProductRatePlan
from catalog.sellable import sellable_on
from sync.lifecycle.models import Subscription
from sync.migration.models import MigrationRule
from zkbridge.business_time import business_today

HORIZON = dt.timedelta(days=366)  # a rule with no known subscribers still runs for at least one yearly term


def horizon(rule: MigrationRule, first: dt.date) -> dt.date:
    """The last day the rule will move someone: the latest term end (or cancellation) among the legacy
    plan's subscribers in the mirror, at least a year from its first day."""
    latest = first + HORIZON
    for row in Subscription.objects.filter(status="Active").only("term_end", "rate_plans"):
        if row.term_end and any(p.get("productRatePlanId") == rule.source_plan.zuora_id for p in row.rate_plans):
            latest = max(latest, row.term_end)
    return latest


def validate(rule: MigrationRule) -> None:
    """Raise ValidationError naming every problem of the rule (nothing when it is safe to save)."""
    from django.core.exceptions import ValidationError

    if rule.source_plan_id and rule.target_plan_id and rule.starts_on:
        found = problems(rule)
        if found:
            raise ValidationError(found)


def problems(rule: MigrationRule) -> list[str]:
    found: list[str] = []
    source, target = rule.source_plan, rule.target_plan
    if source.pk == target.pk:
        found.append("the target is the legacy plan itself: choose another rate plan")
    if rule.alternative_plan_id and rule.alternative_plan_id == source.pk:
        found.append("the alternative is the legacy plan itself")
    if rule.discount_plan_id and not rule.alternative_plan_id:
        found.append("a discount is added with the customer's alternative: choose the alternative too")
    if rule.alternative_plan_id and not (rule.choice_source and rule.choice_field.strip()):
        found.append("an alternative needs the field where the customer's choice is read")
    if rule.choice_source == MigrationRule.ChoiceSource.KOMMO and not rule.choice_field.strip().isdigit():
        found.append("a Kommo choice field is named by its field id (a number)")
    if rule.choice_source == MigrationRule.ChoiceSource.ZUORA and not rule.choice_field.strip().endswith("__c"):
        found.append("a Zuora custom field's name ends in __c (e.g. UpgradePlan__c)")
    for plan, role in ((target, "target"), (rule.alternative_plan, "alternative"), (rule.discount_plan, "discount")):
        if plan is not None and plan.product.entity_id != source.product.entity_id:
            found.append(
                f"the {role} '{plan}' is in {plan.product.entity or 'no entity'}'s catalog, the legacy plan in "
                f"{source.product.entity or 'no entity'}'s: a subscription moves within its Zuora entity"
            )
    first = max(rule.starts_on, business_today())
    last = horizon(rule, first)
    currencies = sorted(source.currencies()) or ["USD"]
    for plan, role in ((target, "target"), (rule.alternative_plan, "alternative"), (rule.discount_plan, "discount")):
        if plan is None or plan.pk == source.pk:
            continue
        found += plan_problems(plan, role, first, last, currencies)
    clash = MigrationRule.objects.filter(source_plan=source, active=True).exclude(pk=rule.pk)
    if rule.active and clash.exists():
        found.append(f"another active rule already moves subscribers of '{source}': {clash.first()}")
    return found


def plan_problems(plan: ProductRatePlan, role: str, first: dt.date, last: dt.date, currencies: list[str]) -> list[str]:
    """The plan must be sellable, in every currency the legacy plan bills, from the rule's first move to
    its last."""
    found = []
    for currency in currencies:
        verdict = sellable_on(plan, first, currency)
        if not verdict.ok:
            found.append(f"the {role} cannot be sold on {first}: {verdict.reason}")
            break
    else:
        end = min(plan.effective_end, plan.product.effective_end)
        if end < last:
            found.append(
                f"the {role} '{plan}' retires on {end}, before the rule's last move (subscribers renew until "
                f"{last}): choose a plan that outlives them"
            )
    return found
