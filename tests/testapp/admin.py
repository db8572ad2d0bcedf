"""The admin of the test app: SourceItem has a page, so error rows link to their item."""

from django.contrib import admin

from .models import SourceItem

admin.site.register(SourceItem)
