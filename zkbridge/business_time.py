"""Business dates: the one place that turns "now" and Kommo's timestamps into the dates Zuora sees.

Zuora bills on dates, not instants; a deal closed at 23:30 in Berlin is billed from that Berlin day, not
from the UTC one. Every module that needs "today" or "the date of this moment" calls these functions,
which read ZKBRIDGE_TIME_ZONE (both `catalog` and `sync` use them: they know nothing of either).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def business_zone() -> ZoneInfo:
    return ZoneInfo(settings.ZKBRIDGE_TIME_ZONE)


def business_date(moment: dt.datetime) -> dt.date:
    """The business date of an aware moment."""
    return moment.astimezone(business_zone()).date()


def business_today() -> dt.date:
    return business_date(timezone.now())


def date_of_timestamp(stamp: int | float) -> dt.date:
    """The business date of a Unix timestamp (Kommo's closed_at, updated_at…)."""
    return dt.datetime.fromtimestamp(stamp, tz=business_zone()).date()


def start_of_business_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=business_zone())


def end_of_business_day(day: dt.date) -> dt.datetime:
    """23:59 on `day` in the business time zone (when a task "due that day" falls due)."""
    return dt.datetime.combine(day, dt.time(23, 59), tzinfo=business_zone())
