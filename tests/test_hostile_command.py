"""The command line on hostile input: no traceback for a user's mistake, nothing that
drives the terminal (see also test_hostile.py and test_hostile_arguments.py)."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from datapipe.models import PipelineError, PipelineRun
from tests.testapp.models import SourceItem

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parent.parent


def datapipe(*args) -> str:
    out = StringIO()
    call_command("datapipe", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_filter_the_database_refuses_is_a_clear_error_before_the_run():
    SourceItem.objects.create(number=1)

    with pytest.raises(CommandError, match="Bad filter on testapp.SourceItem"):
        datapipe("run", "flow", "--model", "testapp.SourceItem", "--filter", "behaviour__regex=(")

    assert not PipelineRun.objects.exists()


def test_in_filters_take_comma_separated_values():
    for number in (1, 2, 3, 4):
        SourceItem.objects.create(number=number)

    out = datapipe("run", "flow", "--model", "testapp.SourceItem", "--filter", "number__in=1,3")

    assert "flow: 2 processed, 2 succeeded" in out


def test_isnull_filters_take_true_or_false_only():
    with pytest.raises(CommandError, match="__isnull takes true or false"):
        datapipe("run", "flow", "--model", "testapp.SourceItem", "--filter", "number__isnull=x")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "soon"])
@pytest.mark.parametrize("subcommand", [["resend", "1"], ["sweep"]])
def test_stale_after_takes_a_finite_number_of_seconds(subcommand, value):
    with pytest.raises(CommandError, match="invalid seconds value"):
        datapipe(*subcommand, "--stale-after", value)


def test_control_characters_of_an_error_message_do_not_reach_the_terminal():
    now = timezone.now()
    PipelineError.objects.create(
        pipeline_name="flow", item_key="v:1", item_repr="x", error_type="ValueError",
        error_message="\x1b[2J\x1b]0;owned\x07 cleared", signature="s" * 40,
        first_seen=now, last_seen=now)

    out = datapipe("errors")

    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J\\x1b]0;owned\\x07 cleared" in out


def test_control_characters_of_a_run_message_are_escaped_in_status():
    run = PipelineRun.objects.create(pipeline_name="flow\x1b[31m", status="failed",
                                     message="boom\x1b[0m\x07")

    out = datapipe("status", str(run.pk))

    assert "\x1b" not in out and "\x07" not in out
    assert "flow\\x1b[31m" in out and "boom\\x1b[0m\\x07" in out


def test_a_users_mistake_prints_one_line_and_no_traceback():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO)}
    for args in (["resend", "1", "--stale-after", "nan"],
                 ["run", "flow", "--model", "nope.Nope"],
                 ["run", "flow\x1b[31m", "--model", "testapp.SourceItem"]):
        done = subprocess.run([sys.executable, "-m", "django", "datapipe", *args], env=env,
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert "\x1b" not in done.stderr
        assert done.stderr.strip(), args
