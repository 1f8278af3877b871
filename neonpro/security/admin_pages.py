"""Admin changelists of big tables as keyset pages: no COUNT, no OFFSET, no free sorting.

Django's changelist counts the filtered rows (and, unless told not to, the whole table) and
pages with OFFSET, so page 10,000 of the audit log reads 1,000,000 rows first. A
``KeysetModelAdmin`` shows ``list_per_page`` rows in its fixed ``keyset_order`` (which ends
in the primary key and should match an index), fetched with the API's paginator
(``neonpro.security.pagination``): the next page is a cursor carried in the admin's own page
parameter, so filters and search keep working and change nothing else. Column sorting is
off (``sortable_by = ()``): sorting by an encrypted column orders ciphertext, and sorting by
an unindexed one reads the whole table. A bad cursor is the admin's "invalid lookup"
answer (a redirect to ``?e=1``), never a 500.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from neonpro.security.context import ANONYMOUS, current_identity
from neonpro.security.pagination import PageRequest, paginate


class KeysetChangeList(ChangeList):
    model_admin: KeysetModelAdmin

    def get_results(self, request: HttpRequest) -> None:
        cursor = request.GET.get(PAGE_VAR)
        try:
            page = paginate(
                self.queryset,
                order=self.model_admin.keyset_order,
                # An old page number ("?p=3") starts again at the first page.
                page=PageRequest(size=self.list_per_page, cursor=cursor if cursor and not cursor.isdigit() else None),
                scope=f"admin:{self.opts.label_lower}",
                identity=current_identity() or ANONYMOUS,
            )
        except ValidationError:
            raise IncorrectLookupParameters from None
        self.result_list = page.items
        self.result_count = len(page.items)  # of this page: nothing is counted
        self.full_result_count = None
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.can_show_all = False
        self.multi_page = page.next_cursor is not None or page.from_cursor
        self.paginator = None
        self.next_page_url = self.get_query_string({PAGE_VAR: page.next_cursor}) if page.next_cursor else None
        self.first_page_url = self.get_query_string(remove=[PAGE_VAR]) if page.from_cursor else None


class KeysetModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For a big table; set ``keyset_order`` (indexed, ending in the primary key)."""

    keyset_order: tuple[str, ...] = ("-id",)
    show_full_result_count = False
    sortable_by = ()
    change_list_template = "admin/keyset_change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return KeysetChangeList


RECENT_ROWS = 5000  # how many of the newest rows a value filter reads to offer its choices


def recent_values_filter(field: str, title: str) -> type[admin.SimpleListFilter]:
    """A list filter on ``field`` offering the values among the newest ``RECENT_ROWS`` rows
    (in the admin's keyset order, along its index), where Django's own filter for a plain
    column reads ``SELECT DISTINCT`` over the whole table on every page. Any other value
    still filters through the URL (``?<field>=<value>``)."""

    class RecentValues(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            newest = model_admin.get_queryset(request).order_by(*model_admin.keyset_order)[:RECENT_ROWS]
            return [(value, value or "(none)") for value in sorted(set(newest.values_list(field, flat=True)))]

        def queryset(self, request: HttpRequest, queryset: Any) -> Any:
            value = self.value()
            return queryset if value is None else queryset.filter(**{field: value})

    RecentValues.title = title
    RecentValues.__name__ = f"Recent{field.title().replace('_', '')}Filter"
    return RecentValues
