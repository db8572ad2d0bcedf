"""``@pipeline(..., schedule=...)``: the beat schedule, scheduled runs and their lease."""

import time
from datetime import timedelta

import pytest
from celery import Celery
from celery.schedules import crontab
from django.utils import timezone

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines)
from datapipe import Pipe, pipeline, signals
from datapipe.celery import schedule_pipelines
from datapipe.exceptions import PipelineDefinitionError
from datapipe.models import PipelineLease, PipelineRun
from datapipe.scheduled import lease_name, listing, run_scheduled
from tests.testapp.models import ResultItem, SourceItem


@pytest.fixture
def scheduled(isolated_registry):
    """``every.minute`` (cron) and ``every.hour`` (timedelta), over SourceItems."""

    @pipeline("every.minute", schedule="* * * * *")
    class EveryMinute(Pipe):
        def source(self):
            return SourceItem.objects.all()

    @pipeline("every.hour", schedule=timedelta(hours=1))
    class EveryHour(EveryMinute):
        pass


def test_configure_puts_each_scheduled_pipeline_in_the_beat_schedule(scheduled):
    app = Celery("schedules-test")
    app.conf.beat_schedule = {"mine": {"task": "x", "schedule": 5.0}}
    schedule_pipelines(app, queue="ops")
    entries = app.conf.beat_schedule
    assert entries["mine"]["task"] == "x"  # the project's own entries are kept
    minute = entries["datapipe:every.minute"]
    assert (minute["task"], minute["args"], minute["options"]) == (
        "datapipe.scheduled", ["every.minute"], {"queue": "ops"})
    assert isinstance(minute["schedule"], crontab)
    assert entries["datapipe:every.hour"]["schedule"].run_every == timedelta(hours=1)


@pytest.mark.parametrize("value, message", [
    ("*/15 * * *", r"'\*/15 \* \* \*' is not a cron string: five fields are needed"),
    ("99 * * * *", r"'99 \* \* \* \*' is not a valid cron string"),
    (timedelta(0), r"must be a positive timedelta"),
    (15, r"schedule must be a cron string, a timedelta or a Celery schedule, not 15"),
])
def test_a_bad_schedule_is_refused_when_the_pipeline_is_declared(isolated_registry, value,
                                                                 message):
    with pytest.raises(PipelineDefinitionError, match=r"Pipeline 'bad.schedule': .*" + message):
        @pipeline("bad.schedule", schedule=value)
        class Bad(Pipe):
            pass


@pytest.mark.django_db
def test_listing_says_when_each_schedule_is_due(scheduled):
    now = timezone.now()
    rows = {row["pipeline"]: row for row in listing(now)}
    assert {"every.minute", "every.hour"} <= set(rows)
    assert rows["every.minute"]["schedule"] == "* * * * *"
    assert rows["every.hour"]["schedule"] == "every 3600 seconds"
    assert now <= rows["every.minute"]["next_due"] <= now + timedelta(minutes=1)
    assert rows["every.hour"]["last_run"] is None
    assert rows["every.hour"]["running"] is False


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_run_processes_the_source_and_frees_its_lease(scheduled):
    SourceItem.objects.create(number=1)
    outcome = run_scheduled("every.hour")
    assert (outcome["skipped"], outcome["processed"]) == (False, 1)
    assert PipelineRun.objects.get(pk=outcome["run_id"]).status == "done"
    lease = PipelineLease.objects.get(name=lease_name("every.hour"))
    assert (lease.holder, lease.expires_at <= timezone.now()) == ("", True)  # given back


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_run_is_skipped_while_the_lease_is_held_and_runs_once_it_expired(
        scheduled):
    skipped = []

    def receiver(sender, pipeline, **kwargs):
        skipped.append(pipeline)

    assert PipelineLease.acquire(lease_name("every.hour"), "a worker that died", 0.5)
    signals.scheduled_run_skipped.connect(receiver)
    try:
        assert run_scheduled("every.hour") == {"pipeline": "every.hour", "skipped": True}
    finally:
        signals.scheduled_run_skipped.disconnect(receiver)
    assert skipped == ["every.hour"]
    assert PipelineLease.objects.get().skipped == 1
    assert not PipelineRun.objects.exists()
    time.sleep(0.6)  # the holder never renewed it
    assert run_scheduled("every.hour")["skipped"] is False


@pytest.mark.postgresql
@pytest.mark.slow
def test_beat_runs_a_pipeline_every_second_skipping_while_the_previous_run_runs(
        monkeypatch, start_worker, celery_queue, transactional_db):
    """A worker with beat (-B) and ``dist.scheduled`` every second: each run takes 2.5 s,
    so beat's sends in between are skipped, and no two runs overlap."""
    SourceItem.objects.create(behaviour="scheduled")
    monkeypatch.setenv("DATAPIPE_TEST_SCHEDULE", "1")
    worker = start_worker(celery_queue, beat=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = PipelineRun.objects.filter(pipeline_name="dist.scheduled", status="done")
        lease = PipelineLease.objects.filter(name=lease_name("dist.scheduled")).first()
        if runs.count() >= 2 and lease is not None and lease.skipped >= 2:
            break
        time.sleep(0.5)
    worker.stop()
    runs = list(PipelineRun.objects.filter(pipeline_name="dist.scheduled").order_by("started_at"))
    assert len(runs) >= 2, worker.log_path.read_text()[-3000:]
    assert PipelineLease.objects.get(name=lease_name("dist.scheduled")).skipped >= 2
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at
    # Each run processed the one item again: reparse kept the latest run's output only.
    assert list(ResultItem.objects.values_list("source__behaviour", flat=True)) == ["scheduled"]
