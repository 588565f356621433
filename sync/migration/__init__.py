"""Moving subscribers off retired plans without proration: the rules RevOps keep (models.MigrationRule,
rules.py validates them), the daily run that finds who is due in Zuora in bulk (run.py), the flow that
moves one subscriber (flow.py), and their admin pages (admin.py: dry run, CSV, run now)."""
