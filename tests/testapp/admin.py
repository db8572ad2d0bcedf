"""The admin of the test app: SourceItem has a page, so error rows link to their item."""

from django.contrib import admin

from datapipe.admin import LineageMixin

from .models import News, RawNews, SourceItem, Tag

admin.site.register(SourceItem)


# The news example: each change page links to the object's lineage ---------------------------


@admin.register(RawNews, News, Tag)
class NewsAdmin(LineageMixin, admin.ModelAdmin):
    """RawNews, News and Tag pages, each with a "Lineage" link."""
