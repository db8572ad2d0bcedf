"""Run records, reparse trackers and collected errors."""

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q


class PipelineRun(models.Model):
    """One run of a pipeline, local or distributed: status, counts and timings."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    pipeline_name = models.CharField(max_length=200, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    distributed = models.BooleanField(default=False)
    triggered_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="triggered"
    )
    processed = models.PositiveBigIntegerField(default=0)
    succeeded = models.PositiveBigIntegerField(default=0)
    continued = models.PositiveBigIntegerField(default=0)
    ignored = models.PositiveBigIntegerField(default=0)
    errored = models.PositiveBigIntegerField(default=0)
    broke = models.BooleanField(default=False)
    chunks_total = models.PositiveIntegerField(default=1)
    chunks_done = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Distributed runs: what every chunk is sent with (context, options, queue), so
    # that chunks can be re-sent; see datapipe.distributed.
    dispatch = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.pipeline_name} #{self.pk} ({self.status})"

    @property
    def elapsed(self):
        """Seconds from start to finish (or None while running)."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class PipelineTrack(models.Model):
    """The outputs one item produced under one pipeline, for reparse.

    ``outputs`` maps a model label (``app_label.model``) to the primary keys saved
    through ``add_to_save`` while processing the item.
    """

    pipeline_name = models.CharField(max_length=200)
    item_content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    item_id = models.CharField(max_length=255)
    outputs = models.JSONField(default=dict)
    triggered_by = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline_name", "item_content_type", "item_id"],
                name="datapipe_track_unique_item",
            )
        ]
        indexes = [models.Index(fields=["item_content_type", "item_id"])]

    def __str__(self):
        return f"{self.pipeline_name}: {self.item_content_type_id}/{self.item_id}"


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

    def __str__(self):
        return f"{self.pipeline_name}: {self.error_type} on {self.item_repr[:60]}"


class PipelineChunk(models.Model):
    """One chunk of a distributed run: its items, where it stands, and its counts.

    ``items`` is what the chunk's task is sent: ``{"content_type": id, "pks": [...]}``
    for model instances, ``{"values": [...]}`` for JSON values, ``{"refs": [...]}`` for
    a mix. The counts are written in the transaction that did the chunk's work, so a
    chunk delivered twice is counted once.
    """

    class Status(models.TextChoices):
        DISPATCHED = "dispatched", "dispatched"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        LOST = "lost", "lost"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DISPATCHED)
    items = models.JSONField()
    size = models.PositiveIntegerField()
    processed = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    continued = models.PositiveIntegerField(default=0)
    ignored = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    broke = models.BooleanField(default=False)
    deliveries = models.PositiveIntegerField(
        default=0, help_text="How many times a worker started the chunk (retries included)."
    )
    task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    context = models.JSONField(
        null=True, blank=True, help_text="The context as the chunk left it (when JSON-encodable)."
    )
    message = models.TextField(blank=True)
    dispatched_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="datapipe_chunk_unique_index")
        ]

    def __str__(self):
        return f"chunk {self.index} of run {self.run_id} ({self.status})"
