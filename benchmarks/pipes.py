"""The pipelines measured: one output per item, with and without a query of their own."""

from django.db.models import F

from datapipe import Pipe, pipeline
from tests.testapp.models import ResultItem, SourceItem


@pipeline("benchmarks.outputs")
class Outputs(Pipe):
    """One buffered ResultItem per SourceItem; no query of its own (no savepoint)."""

    def process(self):
        item = super().process()
        self.add_to_save(ResultItem(source=item, number=item.number))
        return item


@pipeline("benchmarks.outputs_and_update")
class OutputsAndUpdate(Outputs):
    """As :class:`Outputs`, plus an UPDATE of the item: the item needs its savepoint."""

    def process(self):
        item = super().process()
        SourceItem.objects.filter(pk=item.pk).update(touched=F("touched") + 1)
        return item
