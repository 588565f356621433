"""What other apps contribute to the catalog's admin, without the catalog knowing them.

The catalog knows nothing of Kommo or of syncing. The app that bills deals (`sync`) registers, when it
starts, how many deals each plan or mapping billed and how a catalog sync is started; the catalog's
admin shows and offers those when they are registered, and nothing when they are not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Expression


@dataclass
class Contributions:
    # An annotation that counts the deals billed through a ProductRatePlan or a PlanMapping row.
    deals_billed: Callable[[], Expression] | None = None
    # Starts a catalog sync in the background; takes who asked.
    start_catalog_sync: Callable[[str], None] | None = None
    # For the legacy report: each rate plan id → how its subscribers' migration stands
    # ({"remaining", "scheduled", "moved_this_month", "failures": [(record id, text)], "rule"}).
    migration_status: Callable[[list[str]], dict[str, dict]] | None = None


contributions = Contributions()
