from django.db import migrations, models


class Migration(migrations.Migration):
    """Names that say what things are: a catalog sync run is not a sync record's run, and a mapping's
    rate plans are its mapped plans (product rate plans are the catalog's)."""

    dependencies = [("catalog", "0002_history")]

    operations = [
        migrations.RenameModel("SyncRun", "CatalogSyncRun"),
        migrations.AlterField(
            model_name="mappedrateplan",
            name="mapping",
            field=models.ForeignKey(
                on_delete=models.deletion.CASCADE, related_name="mapped_plans", to="catalog.planmapping"
            ),
        ),
    ]
