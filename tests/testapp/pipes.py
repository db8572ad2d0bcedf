"""Pipelines of the test app, importable by test processes and Celery workers alike."""

from django.db.models import F

from datapipe import Pipe, PipeError, pipeline

from .models import Derived, News, Note, RawNews, ResultItem, SourceItem, Tag, UUIDItem

# The example of the design contract ---------------------------------------------------


class GradualSum(Pipe):
    def prepare(self, items):
        self.context.total = 0
        return super().prepare(items)

    def process(self):
        item = super().process()
        self.context.total += item.number
        self.total = self.context.total
        return item


class DiscountSum(GradualSum):
    discount = 0.99

    def process(self):
        item = super().process()
        self.context.total *= self.discount
        return item


@pipeline("discount_sum")
class Save(DiscountSum):
    def process(self):
        item = super().process()
        self.add_to_save(ResultItem(number=self.total))
        return item


# flow: one output per item, then what ``item.behaviour`` says -------------------------


class Flow(Pipe):
    """Outputs one ResultItem per SourceItem; ``behaviour`` picks the flow control.

    ``context.skip`` (list of pks) is filtered out by ``prepare``.
    """

    def prepare(self, items):
        skip = self.context.get("skip")
        if skip:
            items = items.exclude(pk__in=skip) if hasattr(items, "exclude") else [
                item for item in items if item.pk not in skip
            ]
        return super().prepare(items)

    def process(self):
        item = super().process()
        output = self.add_to_save(ResultItem(source=item, number=item.number))
        behaviour = item.behaviour
        if behaviour == "query":
            SourceItem.objects.filter(pk=item.pk).update(touched=F("touched") + 1)
        elif behaviour == "query_ignore":
            SourceItem.objects.filter(pk=item.pk).update(touched=F("touched") + 1)
            self.ignore("queried, then ignored")
        elif behaviour == "query_error":
            SourceItem.objects.filter(pk=item.pk).update(touched=F("touched") + 1)
            raise ValueError(f"failed after a query on {item.pk}")
        elif behaviour == "ignore":
            self.ignore("told to")
        elif behaviour == "break":
            self.break_()
        elif behaviour == "error":
            raise ValueError(f"bad item {item.pk}")
        elif behaviour == "pipe_error":
            raise PipeError("stop everything")
        elif behaviour == "continue":
            self.continue_(output)
        elif behaviour == "duplicate":
            output.unique_key = "always-the-same"
        elif behaviour == "note":
            self.add_to_save(Note(result=output, text=f"note {item.pk}"))
        elif behaviour == "direct":
            output.unique_key = f"direct-{item.pk}"
            self.add_to_save(output, direct=False)
        return output


@pipeline("flow")
class FlowPipeline(Flow):
    pass


@pipeline("flow.derived", trigger="flow")
class DerivedFromResult(Pipe):
    """Triggered by ``flow``: one Derived per ResultItem result."""

    def process(self):
        result = super().process()
        self.add_to_save(Derived(result_ref=result.pk, number=result.number * 2))
        return result


@pipeline("flow.untracked")
class Untracked(Flow):
    track = False


# depends, composition, containers ------------------------------------------------------


class Recorder(Pipe):
    """Appends ``(pipeline, hook, item pk)`` to ``context.log``."""

    label = "recorder"

    def prepare(self, items):
        self.context.setdefault("log", []).append([self.label, "prepare", None])
        return super().prepare(items)

    def process(self):
        self.context["log"].append([self.label, "process", self.item.pk])
        return super().process()

    def finish(self, results):
        self.context["log"].append([self.label, "finish", len(results)])
        super().finish(results)


@pipeline("recorder.first")
class First(Recorder):
    label = "first"


@pipeline("recorder.second")
class Second(Recorder):
    label = "second"
    depends = ["recorder.first"]


@pipeline("recorder.third")
class Third(Second):
    label = "third"
    depends = ["recorder.extra"]


@pipeline("recorder.extra")
class Extra(Recorder):
    label = "extra"


class Counting(Pipe):
    """Counts items in ``self.local`` and publishes the count in ``context`` at finish."""

    def prepare(self, items):
        self.local.count = 0
        return super().prepare(items)

    def process(self):
        self.local.count += 1
        self.per_item = getattr(self, "per_item", 0) + 1
        self.context.setdefault("per_item", []).append(self.per_item)
        return super().process()

    def finish(self, results):
        self.context.counted = self.local.count
        self.context.results = len(results)
        super().finish(results)


@pipeline("counting")
class CountingPipeline(Counting):
    pass


# Non-model items --------------------------------------------------------------------


@pipeline("values")
class Values(Pipe):
    """Items are dicts ``{"n": int}``; n < 0 fails, n == 0 is ignored."""

    def process(self):
        n = self.item["n"]
        if n < 0:
            raise ValueError(f"negative: {n}")
        if n == 0:
            self.ignore()
        self.add_to_save(ResultItem(number=n))
        return n * 10


@pipeline("uuid")
class UUIDPipe(Pipe):
    def process(self):
        self.add_to_save(ResultItem(number=self.item.number))
        return super().process()


__all__ = ["Derived", "Note", "ResultItem", "SourceItem", "UUIDItem"]


# news: an import and the trigger that links its tags (lineage) --------------------------


@pipeline("news.import")
class ImportNews(Pipe):
    """One News per RawNews; a RawNews titled "fail" raises."""

    def process(self):
        raw: RawNews = super().process()
        if raw.title == "fail":
            raise ValueError(f"cannot import raw news {raw.pk}")
        return self.add_to_save(News(title=raw.title, tags=raw.tags))


@pipeline("news.link.tags", trigger="news.import")
class LinkTags(Pipe):
    """Triggered by ``news.import``: one Tag per name in the News' ``tags``; "bad" raises."""

    def process(self):
        news: News = super().process()
        names = [name.strip() for name in news.tags.split(",") if name.strip()]
        if "bad" in names:
            raise ValueError(f"bad tag on news {news.pk}")
        for name in names:
            self.add_to_save(Tag(news=news, name=name))
        return news
