import json

from django.core.management.base import BaseCommand, CommandError

from metrics.reports.formats import report_csv, report_json, report_table
from metrics.reports.services import report_get_or_store, report_regenerate


class Command(BaseCommand):
    help = "Print the savings report for a UTC month (YYYY-MM) as a table, CSV or JSON."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--month", required=True, help="The month, like 2026-03.")
        parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
        parser.add_argument(
            "--regenerate",
            action="store_true",
            help="Rebuild from the current ledger and replace the stored snapshot of a finished month.",
        )

    def handle(self, *args, month: str, format: str, regenerate: bool, **options) -> None:
        try:
            report = report_regenerate(month=month) if regenerate else report_get_or_store(month=month)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if format == "json":
            self.stdout.write(json.dumps(report_json(report), indent=2))
        elif format == "csv":
            self.stdout.write(report_csv(report), ending="")
        else:
            self.stdout.write(report_table(report), ending="")
