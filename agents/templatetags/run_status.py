"""The one status badge for runs and workflows, on every page that shows a status."""

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("agents/_status.html")
def status_badge(item: Any) -> dict[str, Any]:
    """A run or workflow's status; a run that succeeded but failed its quality check is amber, with the reason."""
    check_failed = getattr(item, "check_failed", False)
    return {
        "status": item.status,
        "label": getattr(item, "status_label", item.status),
        "check_failed": check_failed,
        "reason": item.quality_detail if check_failed else "",
    }
