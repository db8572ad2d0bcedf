"""Collected errors: one row per failing item and pipeline, open until it succeeds."""

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q

from .runs import PipelineRun

__all__ = ["PipelineError", "PipelineErrorOccurrence"]


class PipelineError(models.Model):
    """An unhandled exception on one item: kept until the item is reprocessed with success.

    ``item_key`` identifies the item (content type and pk, or a hash of its JSON value);
    one open (unresolved) row exists per pipeline and item.
    """

    pipeline_name = models.CharField(max_length=200, db_index=True)
    item_content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    item_id = models.CharField(max_length=255, null=True, blank=True)
    item_value = models.JSONField(null=True, blank=True)
    item_key = models.CharField(max_length=300)
    item_repr = models.TextField(blank=True)
    error_type = models.CharField(max_length=255)
    error_message = models.TextField(blank=True)
    error_args = models.JSONField(default=list)
    frames = models.JSONField(default=list)
    signature = models.CharField(max_length=40, db_index=True)
    traceback_html = models.TextField(blank=True)
    revision = models.CharField(max_length=64, blank=True)
    run = models.ForeignKey(PipelineRun, null=True, blank=True, on_delete=models.SET_NULL)
    attempts = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved = models.BooleanField(default=False, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    item_missing = models.BooleanField(
        default=False, help_text="The item no longer exists, so it cannot be reprocessed."
    )
    runs = models.ManyToManyField(
        PipelineRun, through="PipelineErrorOccurrence", related_name="error_rows", blank=True,
        help_text="Every run in which the item failed (``run`` is the latest).",
    )

    class Meta:
        ordering = ["-last_seen", "-id"]
        permissions = [("reprocess_pipelineerror", "Can reprocess pipeline errors")]
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline_name", "item_key"],
                condition=Q(resolved=False),
                name="datapipe_error_one_open_row_per_item",
            )
        ]
        # The error rows of given items (lineage) without reading the whole table.
        indexes = [
            models.Index(fields=["item_content_type", "item_id"], name="datapipe_error_item")
        ]

    def __str__(self):
        return f"{self.pipeline_name}: {self.error_type} on {self.item_repr[:60]}"


class PipelineErrorOccurrence(models.Model):
    """One run in which an error row's item failed: a run keeps the rows it produced
    after later runs take them over, and a group's failures can be counted per day."""

    error = models.ForeignKey(PipelineError, on_delete=models.CASCADE, related_name="occurrences")
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["error", "run"], name="datapipe_occurrence_unique")
        ]

    def __str__(self):
        return f"error {self.error_id} in run {self.run_id}"
