import json

from django.core.management.base import BaseCommand, CommandError

from metrics import reports


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
            data = reports.report_regenerate(month=month) if regenerate else reports.report_get(month=month)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if format == "json":
            self.stdout.write(json.dumps(data, indent=2))
        elif format == "csv":
            self.stdout.write(reports.report_csv(data), ending="")
        else:
            self.stdout.write(reports.report_table(data), ending="")
