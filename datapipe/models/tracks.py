"""Reparse trackers: the outputs each item produced under each pipeline.

On PostgreSQL, migration 0005 adds a GIN index on ``outputs`` (``jsonb_path_ops``), so
that "which tracker lists this output" (:func:`datapipe.lineage.upstream`) is an index
look-up. It is not in ``Meta.indexes``: other databases have no such index.
"""

from django.contrib.contenttypes.models import ContentType
from django.db import models

__all__ = ["Lineage", "PipelineTrack"]


class PipelineTrack(models.Model):
    """The outputs one item produced under one pipeline, for reparse.

    ``outputs`` maps a model label (``app_label.model``) to the primary keys saved
    through ``add_to_save`` while processing the item. The item is a model row
    (``item_content_type``, ``item_id`` its pk) or a keyed record of
    :mod:`datapipe.sources` (no content type, ``item_id`` its key).
    """

    pipeline_name = models.CharField(max_length=200)
    # No database constraint and no index of its own: datapipe writes the content type
    # ids itself, and a constraint checked at commit cost a trigger per tracker (a
    # tenth of a first run's time); the unique constraint below leads with it.
    item_content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        db_constraint=False, db_index=False)
    item_id = models.CharField(max_length=255)
    outputs = models.JSONField(default=dict)
    triggered_by = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Item first: it also answers "what was derived from this object" (a delete's
            # cascade, lineage) and a batch's look-up probes it per item.
            models.UniqueConstraint(
                fields=["item_content_type", "item_id", "pipeline_name"],
                name="datapipe_track_unique_item",
            ),
            # NULLs are distinct in the constraint above: one tracker per keyed record.
            models.UniqueConstraint(
                fields=["pipeline_name", "item_id"],
                condition=models.Q(item_content_type__isnull=True),
                name="datapipe_track_unique_record",
            ),
        ]
        # A pipeline's trackers, by time: whether it has any, prune, the trackers a run wrote.
        indexes = [models.Index(fields=["pipeline_name", "updated_at"],
                                name="datapipe_track_pipeline_time")]

    def __str__(self):
        return f"{self.pipeline_name}: {self.item_content_type_id}/{self.item_id}"


class Lineage(PipelineTrack):
    """No table of its own: the admin's lineage pages (``/admin/datapipe/lineage/...``) hang
    on this proxy. It has no permissions of its own; the pages need ``view_pipelinetrack``."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "lineage"
        verbose_name_plural = "lineage"
