from django.core.management.base import BaseCommand

from metrics.rollups import rollup_refresh


class Command(BaseCommand):
    help = "Bring the ledger rollups up to date (safe to run any time, and twice)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--full", action="store_true", help="Recompute every day, not only the changed ones.")

    def handle(self, *args, full: bool, **options) -> None:
        result = rollup_refresh(full=full)
        self.stdout.write(
            f"Recomputed {result.days} day(s), {result.rows} rollup row(s); "
            f"ledger covered up to #{result.last_ledger_id}."
        )
