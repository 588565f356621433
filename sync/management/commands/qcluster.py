"""`qcluster`: django-q2's cluster of workers, plus zkbridge's dispatcher in the cluster's main process.

Same options as django-q2's own command. After the worker processes have started, the main process (which
otherwise only waits) runs sync.workers.dispatcher's loop: due retries start within a second or two of
their time, and a record whose worker died resumes as soon as its lease lapses.
"""

from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

from sync.workers import dispatcher


class Command(DjangoQCommand):
    help = "Start the workers (django-q2) and the dispatcher of due retries and abandoned records."

    def handle(self, *args, **options):
        import os

        from django.conf import settings

        settings.SECRET_KEY  # noqa: B018 - the cluster signs its tasks with it: fail early without it
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = Cluster()
        cluster.start()  # forks the workers before this process opens any database connection
        if options.get("run_once"):
            cluster.stop()
            return
        dispatcher.run(keep_going=lambda: cluster.sentinel.is_alive())
