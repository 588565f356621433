from django.core.management.base import BaseCommand, CommandError

from sync.ops.retention import prune


class Command(BaseCommand):
    help = (
        "Blank API call bodies, webhook payloads and usage bodies older than ZKBRIDGE_RETENTION_DAYS; keep the "
        "newest 1,000 successful task results (also scheduled)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="override the retention for this run")

    def handle(self, *args, days=None, **options):
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        result = prune(days)
        self.stdout.write(
            f"{result['api_calls']} API call(s), {result['webhook_events']} webhook(s) and "
            f"{result['usage_bodies']} usage body(ies) pruned; "
            f"{result['task_results']} old successful task result(s) deleted."
        )
