"""Helpers of the error-collector tests: items that fail, and their error rows."""

from datapipe import get_session
from datapipe.models import PipelineError
from tests.testapp.models import SourceItem


def failed_items(*behaviours, pipeline="flow"):
    """Create SourceItems with ``behaviours``, run ``pipeline`` on them; return the items."""
    items = SourceItem.objects.bulk_create([SourceItem(behaviour=b) for b in behaviours])
    get_session(progress=False).run(
        SourceItem.objects.filter(pk__in=[item.pk for item in items]), pipeline
    )
    return items


def fix(items, behaviour="ok"):
    """"Fix the code": the items now behave as ``behaviour``."""
    SourceItem.objects.filter(pk__in=[item.pk for item in items]).update(behaviour=behaviour)


def open_rows(**filters):
    """The open error rows matching ``filters``."""
    return PipelineError.objects.filter(resolved=False, **filters)
