"""Mails to the ADMINS for the events of ``DATAPIPE["NOTIFY"]``, and the signal
``error_group_opened``."""

import pytest
from django.test import override_settings

from datapipe import ErrorThresholdExceeded, Pipe, PipeError, get_session, pipeline, signals

ADMINS = [("Ops", "ops@example.com")]


def notify(*events, admin_url="https://ops.example.com/admin/"):
    return override_settings(ADMINS=ADMINS, DATAPIPE={"NOTIFY": list(events),
                                                      "ADMIN_URL": admin_url})


@pytest.fixture
def pipelines(isolated_registry):
    @pipeline("mail.fails")
    class Fails(Pipe):
        def process(self):
            if self.item == "stop":
                raise PipeError("stop everything")
            if self.item.startswith("bad"):
                raise ValueError(self.item)
            if self.item.startswith("key"):
                raise KeyError(self.item)
            return self.item

    @pipeline("mail.fragile")
    class Fragile(Fails):
        max_errors = 1


@pytest.mark.django_db
def test_a_failed_run_mails_the_admins_with_the_pipeline_the_counts_and_a_link(
        pipelines, mailoutbox):
    with notify("run_failed"), pytest.raises(PipeError):
        get_session(progress=False).run(["ok", "stop"], "mail.fails")
    [mail] = mailoutbox
    assert mail.to == ["ops@example.com"]
    assert mail.subject.startswith("[Django] [datapipe] run failed: mail.fails (run ")
    assert "Counts: 0 processed, 0 succeeded" in mail.body  # an atomic run keeps nothing
    assert "Why: PipeError: stop everything" in mail.body
    assert "https://ops.example.com/admin/datapipe/pipelinerun/" in mail.body


@pytest.mark.django_db
def test_a_run_over_its_threshold_mails_threshold_exceeded(pipelines, mailoutbox):
    with notify("threshold_exceeded"), pytest.raises(ErrorThresholdExceeded):
        get_session(progress=False).run(["bad1", "ok", "bad2", "ok"], "mail.fragile")
    [mail] = mailoutbox
    assert "error threshold exceeded: mail.fragile" in mail.subject
    assert "Why: error threshold exceeded: 2 of 3 items failed" in mail.body


@pytest.mark.django_db
def test_events_not_chosen_send_nothing(pipelines, mailoutbox):
    with notify("error_group_opened"), pytest.raises(PipeError):
        get_session(progress=False).run(["stop"], "mail.fails")
    with notify(), pytest.raises(ErrorThresholdExceeded):
        get_session(progress=False).run(["bad1", "bad2"], "mail.fragile")
    assert mailoutbox == []


@pytest.mark.django_db(transaction=True)
def test_a_new_kind_of_failure_opens_a_group_once(pipelines, mailoutbox):
    opened = []

    def receiver(sender, pipeline, signature, error, **kwargs):
        opened.append((pipeline, error.error_type))

    signals.error_group_opened.connect(receiver)
    try:
        with notify("error_group_opened"):
            session = get_session(progress=False)
            session.run(["bad1", "bad2", "key1"], "mail.fails")  # two groups open
            session.run(["bad3", "key2"], "mail.fails")  # the same two: nothing new
    finally:
        signals.error_group_opened.disconnect(receiver)
    assert sorted(opened) == [("mail.fails", "KeyError"), ("mail.fails", "ValueError")]
    assert sorted(mail.subject for mail in mailoutbox) == [
        "[Django] [datapipe] new failure in mail.fails: KeyError",
        "[Django] [datapipe] new failure in mail.fails: ValueError",
    ]
    assert "Errors: https://ops.example.com/admin/datapipe/pipelineerror/?signature=" in (
        mailoutbox[0].body)


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_mails_nothing(pipelines, mailoutbox):
    with notify("run_failed", "error_group_opened"):
        get_session(progress=False).run(["bad1"], "mail.fails", dry_run=True)
    assert mailoutbox == []
