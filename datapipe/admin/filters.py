"""A list filter whose default choice is named (and filters), rather than "All"."""

from __future__ import annotations

from django.contrib import admin

__all__ = ["ChoiceFilter"]


class ChoiceFilter(admin.SimpleListFilter):
    """A filter whose first choice (no parameter) is a named default, not "All"."""

    default_label = ""

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": self.default_label,
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }
