"""The admin pages of datapipe are read-only: records change through runs, not forms."""

__all__ = ["ReadOnlyMixin"]


class ReadOnlyMixin:
    """A ModelAdmin mixin refusing add, change and delete (viewing stays permission-checked)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
