"""``datapipe run`` over a pipeline's source(), with --select and --dry-run, and
``datapipe schedule``."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from datapipe import Pipe, pipeline
from tests.testapp.models import ResultItem, SourceItem

pytestmark = pytest.mark.django_db


def datapipe(*args) -> str:
    out = StringIO()
    call_command("datapipe", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def sourced(isolated_registry):
    @pipeline("cli.sourced", schedule="*/15 * * * *")
    class Sourced(Pipe):
        def source(self):
            return SourceItem.objects.exclude(behaviour="skip")

        def process(self):
            self.add_to_save(ResultItem(source=self.item, number=self.item.number))
            return self.item

    @pipeline("cli.hourly", schedule=timedelta(hours=1))
    class Hourly(Pipe):
        pass


def test_run_without_model_processes_the_source_and_select_new_skips_done_items(sourced):
    SourceItem.objects.bulk_create([SourceItem(number=1), SourceItem(number=2, behaviour="skip")])
    assert "cli.sourced: 1 processed" in datapipe("run", "cli.sourced")
    SourceItem.objects.create(number=3)
    assert "cli.sourced: 1 processed" in datapipe("run", "cli.sourced", "--select", "new")
    assert ResultItem.objects.count() == 2


def test_run_dry_run_prints_the_changes_and_keeps_nothing(sourced):
    SourceItem.objects.bulk_create([SourceItem(number=1), SourceItem(number=2)])
    out = datapipe("run", "cli.sourced", "--dry-run")
    assert "Dry run: everything was rolled back. It would have:" in out
    assert "testapp.ResultItem: created 2, deleted 0" in out
    assert not ResultItem.objects.exists()


def test_run_refuses_select_values_it_does_not_know(sourced):
    with pytest.raises(CommandError, match=r"invalid choice: 'newest'"):
        datapipe("run", "cli.sourced", "--select", "newest")


def test_run_without_model_of_a_pipeline_without_source_is_a_usage_error(isolated_registry):
    @pipeline("cli.sourceless")
    class Sourceless(Pipe):
        pass

    with pytest.raises(CommandError, match=r"has no source\(\).*Or give --model"):
        datapipe("run", "cli.sourceless")


def test_schedule_lists_each_schedule_with_when_it_is_due(sourced):
    document = json.loads(datapipe("schedule", "--json"))
    rows = {row["pipeline"]: row for row in document["schedules"]}
    assert rows["cli.sourced"]["schedule"] == "*/15 * * * *"
    assert rows["cli.hourly"]["schedule"] == "every 3600 seconds"
    assert set(rows["cli.hourly"]) == {"pipeline", "schedule", "last_run", "next_due", "running"}
    assert rows["cli.hourly"]["running"] is False
    text = datapipe("schedule")
    assert "cli.sourced" in text and "*/15 * * * *" in text and "next due" in text
