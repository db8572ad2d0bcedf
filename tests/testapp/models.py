"""Models of the test app: sources, outputs, and outputs derived from outputs."""

import uuid

from django.db import models


class SourceItemQuerySet(models.QuerySet):
    def get_default_pipe_name(self):
        return "flow"


class SourceItem(models.Model):
    """An input row. ``behaviour`` tells the ``flow`` pipeline what to do with it."""

    number = models.IntegerField(default=0)
    behaviour = models.CharField(max_length=30, default="ok")
    touched = models.IntegerField(default=0)

    objects = SourceItemQuerySet.as_manager()

    def __repr__(self):
        return f"<SourceItem {self.pk} {self.behaviour}>"


class ResultItem(models.Model):
    """An output of ``flow`` (and of ``discount_sum``)."""

    number = models.FloatField(default=0)
    source = models.ForeignKey(SourceItem, null=True, on_delete=models.CASCADE)
    unique_key = models.CharField(max_length=50, null=True, unique=True)


class Derived(models.Model):
    """An output of the triggered ``flow.derived``: no foreign key, so only reparse removes it."""

    result_ref = models.BigIntegerField()
    number = models.FloatField(default=0)


class Note(models.Model):
    """A second output model, pointing at a buffered ResultItem."""

    result = models.ForeignKey(ResultItem, on_delete=models.CASCADE)
    text = models.CharField(max_length=100)


class UUIDItem(models.Model):
    """An input with a UUID primary key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    number = models.IntegerField(default=0)


class CodeItem(models.Model):
    """An input with a text primary key."""

    code = models.CharField(max_length=20, primary_key=True)
    number = models.IntegerField(default=0)


# The news example (news.import triggering news.link.tags): lineage ------------------------


class RawNews(models.Model):
    """A news item as imported: ``tags`` is a comma-separated list."""

    title = models.CharField(max_length=200)
    tags = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "raw news"

    def __str__(self):
        return f"raw: {self.title}"


class News(models.Model):
    """What ``news.import`` makes of a RawNews (no foreign key: only trackers link them)."""

    title = models.CharField(max_length=200)
    tags = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "news"

    def __str__(self):
        return self.title


class Tag(models.Model):
    """What ``news.link.tags`` makes of a News: one per name in its ``tags``."""

    news = models.ForeignKey(News, on_delete=models.CASCADE, related_name="tag_set")
    name = models.CharField(max_length=50)

    def __str__(self):
        return f"#{self.name}"


# add_to_update: a column of each type its arrays carry ------------------------------------


class Tally(models.Model):
    """A row that ``add_to_update`` tests update: text, JSON, a time, a UUID, a foreign key,
    a unique label and a count the database keeps from going negative."""

    label = models.CharField(max_length=10, null=True, unique=True)
    count = models.IntegerField(default=0)
    data = models.JSONField(default=dict)
    seen_at = models.DateTimeField(null=True)
    token = models.UUIDField(null=True)
    result = models.ForeignKey(ResultItem, null=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(count__gte=0), name="tally_count_not_negative"
            )
        ]
