"""Pipelines of the ``add_to_update`` tests, importable by test processes and Celery workers
(tests/celery_app.py imports them)."""

import datetime
import uuid

from datapipe import Pipe, pipeline

from .models import ResultItem, SourceItem, Tally

#: What ``update.tally`` writes in ``seen_at``.
SEEN_AT = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)


def token_of(tally: Tally) -> uuid.UUID:
    """What ``update.tally`` writes in ``token``."""
    return uuid.uuid5(uuid.NAMESPACE_OID, str(tally.pk))


@pipeline("update.items")
class UpdateItems(Pipe):
    """Adds 1 to each SourceItem's ``touched`` through ``add_to_update``; then what
    ``behaviour`` says: ``ignore``, ``break``, ``error`` (raise), ``null`` (also sets the
    NOT NULL ``behaviour`` to None, which fails at the flush)."""

    def process(self):
        item = super().process()
        item.touched += 1
        self.add_to_update(item, fields=["touched"])
        behaviour = item.behaviour
        if behaviour == "ignore":
            self.ignore("told to")
        elif behaviour == "break":
            self.break_()
        elif behaviour == "error":
            raise ValueError(f"bad item {item.pk}")
        elif behaviour == "null":
            item.behaviour = None
            self.add_to_update(item, fields=["behaviour"])
        return item


@pipeline("update.tally")
class UpdateTally(Pipe):
    """Per Tally: saves a ResultItem (``add_to_save``) and updates the tally to point to
    it, with a value of each type: ``count`` + 1, ``data``, ``seen_at``, ``token``.
    ``context.plan`` (``{str(pk): {field: value}}``) sets more fields of some tallies."""

    def process(self):
        tally = super().process()
        tally.result = self.add_to_save(ResultItem(number=tally.count))
        tally.count += 1
        tally.data = {"count": tally.count, "quote": 'a "quoted" \\ text'}
        tally.seen_at = SEEN_AT
        tally.token = token_of(tally)
        plan = self.context.get("plan", {}).get(str(tally.pk), {})
        for name, value in plan.items():
            setattr(tally, name, value)
        self.add_to_update(tally, fields=["result", "count", "data", "seen_at", "token", *plan])
        return tally


@pipeline("update.shared")
class UpdateShared(Pipe):
    """Each SourceItem writes its ``number`` in the count of the Tally labelled ``shared``,
    through an instance of its own."""

    def process(self):
        item = super().process()
        shared = Tally.objects.get(label="shared")
        shared.count = item.number
        self.add_to_update(shared, fields=["count"])
        return item


@pipeline("update.in_finish")
class UpdateInFinish(Pipe):
    """Counts the items in ``finish``, in the SourceItem labelled by ``behaviour="total"``."""

    def finish(self, results):
        total = SourceItem.objects.get(behaviour="total")
        total.number = len(results)
        self.add_to_update(total, fields=["number"])
        super().finish(results)
