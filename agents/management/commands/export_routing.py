"""Write the routing in the database as YAML that `load_routing` loads back to the same state."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agents.config_io import FILE_NAMES, merged_document, routing_config_export
from routing.config.dump import yaml_text

HEADER = "# Exported by `python manage.py export_routing` on {when:%Y-%m-%d %H:%M} UTC; load with `load_routing`.\n"
LOCAL_HEADER = "# The local provider's connection details; its priority and capabilities are in llm_routing.yaml.\n"


class Command(BaseCommand):
    help = "Export providers, models, prices, the routing policy, rules and agents as YAML (stdout by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output-dir", type=Path, help="Write llm_routing.yaml and local_provider.yaml into this directory."
        )

    def handle(self, *args, output_dir: Path | None, **options) -> None:
        routing_doc, local_doc = routing_config_export()
        header = HEADER.format(when=timezone.now())
        if output_dir is None:
            self.stdout.write(yaml_text(merged_document(routing_doc, local_doc), header=header), ending="")
            return
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            routing_path, local_path = (output_dir / name for name in FILE_NAMES)
            routing_path.write_text(yaml_text(routing_doc, header=header), encoding="utf-8")
            local_path.write_text(yaml_text(local_doc, header=header + LOCAL_HEADER), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write to {output_dir}: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"wrote {routing_path} and {local_path}"))
