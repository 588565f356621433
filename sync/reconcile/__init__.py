"""Reconciliation: compare Kommo's won deals, zkbridge's sync records and Zuora, and list every deal that
is not billed as sold, with the action that fixes it.

snapshot.py reads everything in bulk; checks.py holds one registered check per kind of discrepancy;
run.py keeps the report; fixes.py applies the one-click fixes; admin.py shows the report.
"""

from sync.reconcile.run import latest_report, report_csv, run_reconciliation, scheduled

__all__ = ["latest_report", "report_csv", "run_reconciliation", "scheduled"]
