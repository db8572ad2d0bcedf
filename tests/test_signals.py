"""The signals ``run_started``, ``run_finished``, ``item_failed`` and the ``datapipe`` logger."""

import logging

import pytest

from datapipe import PipeError, registry, signals
from datapipe.models import PipelineRun
from tests.testapp.models import SourceItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    """Every signal datapipe sends during the test, as ``(signal name, kwargs)``."""
    calls = []

    def receiver(signal_name):
        def receive(sender, **kwargs):
            kwargs.pop("signal")
            calls.append((signal_name, sender, kwargs))
            if signal_name == "run_started":  # the record as the receiver saw it
                kwargs["status_then"] = kwargs["run"].status
        return receive

    receivers = {name: receiver(name) for name in ("run_started", "run_finished", "item_failed")}
    for name, function in receivers.items():
        getattr(signals, name).connect(function)
    yield calls
    for name, function in receivers.items():
        getattr(signals, name).disconnect(function)


def test_a_run_sends_started_then_one_item_failed_per_failure_then_finished(session, received):
    items = SourceItem.objects.bulk_create(
        [SourceItem(behaviour=b) for b in ("ok", "error", "ignore", "error")]
    )

    report = session.run(SourceItem.objects.all(), "flow.untracked")

    assert [name for name, _, _ in received] == [
        "run_started", "item_failed", "item_failed", "run_finished"]
    flow = registry.get("flow.untracked")
    assert all(sender is flow for _, sender, _ in received)
    started, first_failure, second_failure, finished = (kwargs for _, _, kwargs in received)
    run = PipelineRun.objects.get(pk=report.run_id)
    assert started["run"] == run and started["status_then"] == "running"
    assert list(started["items"]) == items
    assert [first_failure["item"], second_failure["item"]] == [items[1], items[3]]
    assert isinstance(first_failure["exception"], ValueError)
    assert first_failure["run"] == run
    assert finished["report"] is report and finished["run"].status == "done"


def test_run_finished_is_sent_for_a_run_that_raised(session, received):
    SourceItem.objects.create(behaviour="pipe_error")

    with pytest.raises(PipeError):
        session.run(SourceItem.objects.all(), "flow.untracked")

    name, _, kwargs = received[-1]
    assert name == "run_finished" and kwargs["run"].status == "failed"


def test_triggered_runs_send_their_own_signals(session, received):
    SourceItem.objects.create()

    session.run(SourceItem.objects.all(), "flow")

    started = [sender.__name__ for name, sender, _ in received if name == "run_started"]
    assert len(started) == 2
    assert [kwargs["run"].pipeline_name for name, _, kwargs in received
            if name == "run_finished"] == ["flow", "flow.derived"]


def test_the_datapipe_logger_tells_failures_at_info_and_a_run_with_errors_at_warning(session,
                                                                                    caplog):
    SourceItem.objects.bulk_create([SourceItem(), SourceItem(behaviour="error")])

    with caplog.at_level(logging.INFO, logger="datapipe"):
        report = session.run(SourceItem.objects.all(), "flow.untracked")

    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "datapipe"]
    assert records[0] == ("INFO", f"Run {report.run_id} of 'flow.untracked' started")
    assert records[1][0] == "INFO"  # one line per item: not at WARNING, so as not to flood
    assert "flow.untracked failed on <SourceItem" in records[1][1]
    assert "ValueError: bad item" in records[1][1]
    assert records[2] == ("WARNING", f"Run {report.run_id} finished: {report}")
