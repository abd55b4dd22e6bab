"""The admin's date drill-down (`date_hierarchy`), safe at the end of the calendar."""

from __future__ import annotations

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest


class DateHierarchyBounds:
    """A ModelAdmin mixin. Django ends a date_hierarchy year, month or day at the next one, which
    does not exist after 9999-12-31: `?created_at__year=9999` raised OverflowError (a 500). Such a
    lookup gets the admin's answer to any bad lookup instead: the unfiltered list with ?e=1."""

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        try:
            return super().get_changelist_instance(request)  # type: ignore[misc]
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error
