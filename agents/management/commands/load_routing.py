"""Load config/llm_routing.yaml and config/local_provider.yaml into the database, all or nothing."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.config_io import routing_config_load
from routing.config.loading import ConfigError
from routing.models import Provider


class Command(BaseCommand):
    help = (
        "Load routing as code: providers, models, prices, the routing policy, rules and agents. "
        "Checks everything first; on any error the database is left as it was."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "files",
            nargs="*",
            type=Path,
            help="YAML files (default: llm_routing.yaml and local_provider.yaml in config/)",
        )
        parser.add_argument(
            "--prune", action="store_true", help="Disable providers and agents that are not in the files."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check and show the changes without saving them.")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when providers exist already (first start of a deployment).",
        )

    def handle(self, *args, files: list[Path], prune: bool, dry_run: bool, if_empty: bool, **options) -> None:
        if if_empty and Provider.objects.exists():
            self.stdout.write("routing is configured already: nothing loaded (--if-empty)")
            return
        try:
            report = routing_config_load(paths=files or None, prune=prune, dry_run=dry_run)
        except ConfigError as exc:
            count = len(exc.messages)
            raise CommandError(
                f"routing not loaded, the database is unchanged; {count} problem{'s' * (count != 1)}:\n"
                + "\n".join(f"  {message}" for message in exc.messages)
            ) from None
        for warning in report.changes.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if not report.changes.made:
            self.stdout.write("routing is up to date: no changes")
            return
        for change in report.changes.made:
            self.stdout.write(f"  {change}")
        count = len(report.changes.made)
        verb = "would make" if dry_run else "made"
        self.stdout.write(
            self.style.SUCCESS(f"{verb} {count} change{'s' * (count != 1)} from {', '.join(report.files)}")
            + (" (dry run: nothing saved)" if dry_run else "")
        )
