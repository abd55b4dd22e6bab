"""Reads of the routing configuration that pages, APIs, commands and the router share."""

from __future__ import annotations

from routing.models import RoutingPolicy


def routing_policy() -> RoutingPolicy:
    """The team's routing policy: the stored row, or the defaults (unsaved) before anyone saved one.

    The one way to read the policy: it never writes, so a page or an API GET can call it.
    Writers (the admin, `load_routing`) save the singleton row themselves.
    """
    return RoutingPolicy.objects.select_related("baseline_model__provider").filter(pk=1).first() or RoutingPolicy()
