"""``manage.py rundemo``: run the airports demo end to end and say what happened."""

from django.core.management.base import BaseCommand

from airports.demo import Demo


class Command(BaseCommand):
    help = "Load the airports of vega_datasets, import them, reprocess the failures."

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout", type=float, default=600,
            help="Seconds to wait for the Celery workers (with CELERY_BROKER_URL).",
        )

    def handle(self, *args, timeout, **options):
        Demo(self.stdout.write, celery_timeout=timeout).run()
