"""``manage.py datapipe`` for scripts: ``--json`` documents, exit statuses, Django's common
options after the subcommand, progress off a terminal, and what failures log."""

import json
import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from datapipe.cli import SUBCOMMANDS
from datapipe.management.commands.datapipe import Command
from datapipe.models import PipelineRun
from datapipe.progress import Progress
from tests.failing import failed_items, fix
from tests.testapp.models import SourceItem

pytestmark = pytest.mark.django_db


def datapipe(*args) -> str:
    out = StringIO()
    call_command("datapipe", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def exit_status(*args) -> int:
    """The exit status of ``manage.py datapipe ARGS`` as the shell sees it. Call it last in a
    test: Django closes the database connection after a command run this way."""
    try:
        Command().run_from_argv(["manage.py", "datapipe", *args])
    except SystemExit as exited:
        return exited.code
    return 0


def items(*behaviours):
    SourceItem.objects.bulk_create([SourceItem(number=n, behaviour=b)
                                    for n, b in enumerate(behaviours)])


# --json ----------------------------------------------------------------------------------------


def test_list_json_is_one_document_with_each_pipeline_and_its_neighbours():
    document = json.loads(datapipe("list", "--json"))

    pipelines = {p["name"]: p for p in document["pipelines"]}
    assert pipelines["flow"] == {"name": "flow", "depends": [], "triggers": ["flow.derived"],
                                 "triggered_by": []}
    assert pipelines["flow.derived"]["triggered_by"] == ["flow"]
    assert pipelines["recorder.second"]["depends"] == ["recorder.first"]


def test_status_json_has_the_counts_timings_and_the_tree_of_child_runs(run_tree):
    flow = run_tree.children.get(pipeline_name="flow")
    derived = flow.children.get()

    document = json.loads(datapipe("status", str(run_tree.pk), "--json"))

    assert document["run_id"] == run_tree.pk and document["pipeline"] == "test.tree"
    assert document["status"] == "done" and document["finished"] is True
    assert (document["processed"], document["errored"], document["error_rows"]) == (3, 0, 0)
    assert document["parent"] is None and document["distributed"] is False
    assert document["started_at"].startswith(f"{run_tree.started_at:%Y-%m-%dT%H:%M:%S}")
    assert document["children"] == {"done": 2}
    first = document["child_runs"][0]
    assert (first["run_id"], first["pipeline"], first["processed"]) == (flow.pk, "flow", 3)
    assert first["child_runs"][0]["run_id"] == derived.pk
    assert first["child_runs"][0]["triggered_by"] == flow.pk
    assert [c["pipeline"] for c in document["child_runs"]] == ["flow", "test.tree.after"]
    assert document["child_runs_more"] == 0


def test_status_json_counts_the_child_runs_it_leaves_out():
    root = PipelineRun.start("flow", "default")
    for _ in range(52):
        PipelineRun.start("flow.derived", "default", parent=root)

    document = json.loads(datapipe("status", str(root.pk), "--json"))

    assert len(document["child_runs"]) == 50 and document["child_runs_more"] == 2


def test_errors_json_lists_each_failure_with_its_figures():
    failed_items("error", "error", "query_error")

    document = json.loads(datapipe("errors", "--json"))

    assert document["all"] is False and document["pipeline"] is None
    group = {g["error_type"]: g for g in document["groups"]}["ValueError"]
    assert group["message"].startswith("bad item")
    assert (group["open_rows"], group["items"], group["rows"]) == (2, 2, 2)
    assert group["pipeline"] == "flow" and len(group["signature"]) > 12
    assert group["first_seen"] <= group["last_seen"]
    assert json.loads(datapipe("errors", "--json", "--pipeline", "other"))["groups"] == []


def test_json_escapes_every_control_character_of_the_data():
    run = PipelineRun.objects.create(pipeline_name="flow", status="failed",
                                     message="boom\x1b[0m\x07\x7f\x9b")

    text = datapipe("status", str(run.pk), "--json")

    assert text.isascii() and not any(c in text for c in "\x1b\x07\x7f\x9b")
    assert json.loads(text)["message"] == "boom\x1b[0m\x07\x7f\x9b"


# exit statuses ---------------------------------------------------------------------------------


def test_a_run_without_errored_items_exits_with_status_0():
    items("ok", "ok")

    assert exit_status("run", "flow", "--model", "testapp.SourceItem") == 0


def test_a_run_that_ends_with_errored_items_exits_with_status_1(capsys):
    items("ok", "error")

    assert exit_status("run", "flow", "--model", "testapp.SourceItem") == 1
    captured = capsys.readouterr()
    assert "flow: 2 processed, 1 succeeded" in captured.out
    assert "ended with 1 errored items (--allow-errors accepts them)" in captured.err
    assert "Traceback" not in captured.err


def test_allow_errors_accepts_errored_items_with_status_0():
    items("ok", "error")

    assert exit_status("run", "flow", "--model", "testapp.SourceItem", "--allow-errors") == 0


def test_a_run_that_fails_exits_with_status_1_and_one_line(capsys):
    items("ok", "pipe_error")

    assert exit_status("run", "flow", "--model", "testapp.SourceItem") == 1
    err = capsys.readouterr().err
    assert "Run of 'flow' failed: PipeError" in err and "Traceback" not in err


def test_a_celery_run_waited_for_exits_with_status_1_when_items_errored(celery_worker):
    items("ok", "error")

    with pytest.raises(CommandError, match="ended with 1 errored items") as raised:
        datapipe("run", "flow", "--model", "testapp.SourceItem", "--celery", "--queue",
                 celery_worker.queue, "--wait")
    assert raised.value.returncode == 1


def test_reprocess_that_leaves_items_errored_exits_with_status_1():
    failed_items("error", "ok")

    with pytest.raises(CommandError, match="Reprocessing ended with 1 errored items") as raised:
        datapipe("reprocess", "--pipeline", "flow")
    assert raised.value.returncode == 1
    assert "0 resolved" in datapipe("reprocess", "--pipeline", "flow", "--allow-errors")


def test_reprocess_that_resolves_everything_exits_with_status_0():
    fix(failed_items("error"))

    assert exit_status("reprocess", "--pipeline", "flow") == 0


@pytest.mark.parametrize("args", [
    ["run", "flow", "--model", "testapp.SourceItem", "--no-such-option"],
    ["run", "flow", "--select", "newest"],              # not one of the choices
    ["status", "not-a-number"],
    ["no-such-subcommand"],
    ["reprocess"],                                      # which rows?
])
def test_argument_errors_exit_with_status_2(args, capsys):
    assert exit_status(*args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["run", "no.such", "--model", "testapp.SourceItem"], "no.such"),
    (["run", "flow", "--model", "testapp.Nothing"], "Unknown model"),
    (["run", "flow", "--model", "testapp.SourceItem", "--filter", "colour=red"], "Bad filter"),
    (["run", "flow", "--model", "testapp.SourceItem", "--wait"], "--celery"),
    (["status", "999999"], "No run 999999"),
    (["reprocess", "--signature", "", "--queue", "q"], "--celery"),
])
def test_a_users_mistake_exits_with_status_2_and_one_line(args, message, capsys):
    assert exit_status(*args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_nothing_to_do_exits_with_status_1():
    assert exit_status("reprocess", "--pipeline", "flow") == 1  # no open error rows


# Django's common options -----------------------------------------------------------------------


def test_djangos_common_options_work_after_the_subcommand(capsys):
    status = exit_status("list", "-v", "0", "--settings", "tests.settings", "--pythonpath",
                         ".", "--no-color", "--traceback")

    assert status == 0 and "flow.derived" in capsys.readouterr().out


def test_traceback_after_the_subcommand_shows_the_traceback():
    with pytest.raises(CommandError, match="No run 999999"):
        Command().run_from_argv(["manage.py", "datapipe", "status", "999999", "--traceback"])


def test_every_subcommand_has_a_help_line_and_a_description():
    for cls in SUBCOMMANDS:
        assert cls.help and cls.description and cls.description != cls.help, cls.name


# progress and logging --------------------------------------------------------------------------


def test_progress_off_a_terminal_writes_whole_lines_and_no_carriage_return(capsys):
    items("ok", "ok", "ok")

    datapipe("run", "flow", "--model", "testapp.SourceItem", "--progress")

    err = capsys.readouterr().err
    assert "\r" not in err
    assert "flow: 3/3 items (100%)\n" in err


def test_no_progress_writes_nothing(capsys):
    items("ok")

    datapipe("run", "flow", "--model", "testapp.SourceItem", "--no-progress")

    assert capsys.readouterr().err == ""


class Terminal(StringIO):
    def isatty(self):
        return True


def test_the_bar_shows_counts_as_integers():
    screen = Terminal()

    with Progress("run 1", "chunk", file=screen) as bar:
        bar.set(10_000, 20_000, processed=10_000, errored=12_345)

    assert "processed=10000, errored=12345" in screen.getvalue()
    assert "e+" not in screen.getvalue()


def test_each_failed_item_logs_at_info_and_the_run_one_summary_at_warning(caplog):
    items("error", "error", "error", "ok")

    with caplog.at_level(logging.INFO, logger="datapipe"):
        datapipe("run", "flow", "--model", "testapp.SourceItem", "--allow-errors")

    failures = [r for r in caplog.records if "failed on" in r.getMessage()]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 3 and {r.levelno for r in failures} == {logging.INFO}
    assert len(warnings) == 1 and "3 errored" in warnings[0].getMessage()
