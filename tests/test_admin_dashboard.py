"""What an operator sees in the admin: the datapipe landing page, the counts on the admin
index, the charts, the live table, runs that keep their error rows, the messages of an
error group, the chunk table, and who may resend."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from datapipe import Pipe, get_session, pipeline
from datapipe.admin import charts
from datapipe.models import PipelineChunk, PipelineError, PipelineRun
from tests.failing import failed_items
from tests.test_admin import staff

pytestmark = pytest.mark.django_db

LANDING = "/admin/datapipe/"
RUNS = "admin:datapipe_pipelinerun_changelist"
ERRORS = "admin:datapipe_pipelineerror_changelist"


def distributed_run(chunks_done=1, chunks_total=4, processed=10, errored=0, minutes=2,
                    pipeline_name="flow"):
    """A distributed run in progress (records only: nothing is sent)."""
    run = PipelineRun.start(pipeline_name, "default", distributed=True, chunks_total=chunks_total)
    PipelineRun.objects.filter(pk=run.pk).update(
        chunks_done=chunks_done, processed=processed, errored=errored,
        started_at=timezone.now() - timedelta(minutes=minutes))
    now = timezone.now()
    PipelineChunk.objects.bulk_create([
        PipelineChunk(run=run, index=n, items=[], size=5, dispatched_at=now,
                      status="done" if n < chunks_done else "running", worker=f"host-a:{n % 2}",
                      started_at=now - timedelta(seconds=30), heartbeat_at=now,
                      finished_at=now if n < chunks_done else None, deliveries=1,
                      deliveries_total=1 + n, processed=5 if n < chunks_done else 0)
        for n in range(chunks_total)
    ])
    return PipelineRun.objects.get(pk=run.pk)


@pytest.fixture
def two_messages(isolated_registry):
    """One error group (``KeyError`` at the same line) holding two messages:
    ``'JPY'`` on three items, ``'CHF'`` on one. Returns the run."""

    @pipeline("test.rates")
    class Rates(Pipe):
        rates = {"EUR": 1.0}

        def process(self):
            return self.rates[self.item["currency"]]

    items = [{"currency": "JPY", "n": n} for n in range(3)] + [{"currency": "CHF", "n": 3}]
    report = get_session(progress=False).run(items, "test.rates")
    return PipelineRun.objects.get(pk=report.run_id)


# The landing page and the index --------------------------------------------------------------


def test_the_landing_page_shows_runs_in_progress_with_progress_rate_and_eta(admin_client):
    run = distributed_run(chunks_done=1, chunks_total=4, processed=120, minutes=2)

    response = admin_client.get(LANDING)

    assert response.status_code == 200
    row = response.content.decode().split(f'<tr data-run="{run.pk}">')[1].split("</tr>")[0]
    assert "25% (1/4 chunks)" in row and '<progress value="0.250" max="1">' in row
    assert "<td>1.0</td>" in row  # 120 items in 120 s
    assert "<td>6 min</td>" in row  # a quarter done in 2 minutes: 6 left
    assert "Pipeline runs" in response.content.decode()  # the models are still listed


def test_the_landing_page_links_the_four_charts_and_lists_workers(admin_client):
    distributed_run()

    content = admin_client.get(LANDING).content.decode()

    for measure, span, _title in charts.CHARTS:
        url = reverse("admin:datapipe_pipelinerun_chart", args=[measure, span])
        assert f'<img src="{url}"' in content
    workers = content.split('id="workers"')[1].split("</table>")[0]
    assert "host-a:0" in workers and "host-a:1" in workers


def test_the_landing_page_lists_open_error_groups_with_their_trend(admin_client, two_messages):
    content = admin_client.get(LANDING).content.decode()

    errors = content.split('id="errors"')[1]
    assert "KeyError: &#x27;" in errors  # escaped
    assert '<td class="datapipe-trend">0 0 0 0 0 0 4</td>' in errors  # four failures today
    assert "rising" in errors


def test_the_admin_index_counts_running_runs_and_open_error_groups(admin_client, two_messages):
    distributed_run()
    failed_items("error")

    content = admin_client.get(reverse("admin:index")).content.decode()

    assert '<strong>1</strong> running' in content
    assert '<strong>2</strong> open error groups' in content
    assert f'href="{LANDING}#errors"' in content


def test_a_chart_is_an_svg_image_served_under_a_policy_without_scripts(admin_client):
    PipelineRun.objects.bulk_create([
        PipelineRun(pipeline_name="flow", status="done", processed=40, errored=3,
                    finished_at=timezone.now()),
        PipelineRun(pipeline_name="<b>odd</b>", status="done", processed=5,
                    finished_at=timezone.now()),
    ])

    response = admin_client.get(reverse("admin:datapipe_pipelinerun_chart",
                                        args=["processed", "24h"]))

    assert response["Content-Type"].startswith("image/svg+xml")
    assert "script-src" not in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    svg = response.content.decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "flow" in svg and "&lt;b&gt;odd&lt;/b&gt;" in svg and "<b>odd" not in svg
    missing = reverse("admin:datapipe_pipelinerun_chart", args=["lines", "24h"])
    assert admin_client.get(missing).status_code == 404


def test_chart_series_sum_runs_per_pipeline_and_hour(admin_client):
    now = timezone.now()
    PipelineRun.objects.bulk_create([
        PipelineRun(pipeline_name="a", status="done", processed=10, errored=1, finished_at=now),
        PipelineRun(pipeline_name="a", status="done", processed=5, errored=2, finished_at=now),
        PipelineRun(pipeline_name="b", status="done", processed=7,
                    finished_at=now - timedelta(hours=3)),
        PipelineRun(pipeline_name="c", status="done", processed=9,
                    finished_at=now - timedelta(days=3)),  # outside the 24 hours
    ])

    starts, drawn = charts.series(PipelineRun.objects.all(), "processed", "24h", now)
    _, errored = charts.series(PipelineRun.objects.all(), "errored", "30d", now)

    assert len(starts) == 24
    assert drawn["a"][-1] == 15 and drawn["b"][-4] == 7 and "c" not in drawn
    assert errored == {"a": [0] * 29 + [3]}


def test_the_live_view_answers_the_runs_in_progress_as_json(admin_client):
    run = distributed_run(chunks_done=2, chunks_total=4, processed=50)
    PipelineRun.start("flow", "default", parent=run)  # a child: not a row of its own

    data = admin_client.get(reverse("admin:datapipe_pipelinerun_live")).json()

    assert [r["id"] for r in data["runs"]] == [run.pk]
    assert data["runs"][0]["progress"] == "50% (2/4 chunks)"
    assert data["runs"][0]["processed"] == 50 and data["runs"][0]["fraction"] == 0.5
    assert data["url"].endswith("/0/change/")


# Runs and their error rows ---------------------------------------------------------------------


def test_a_run_keeps_its_error_rows_after_a_later_run_takes_them_over(admin_client):
    items = failed_items("error", "error", "ok")
    first = PipelineRun.objects.get(pipeline_name="flow")
    from tests.testapp.models import SourceItem

    get_session(progress=False).run(SourceItem.objects.filter(pk__in=[i.pk for i in items]),
                                    "flow")
    second = PipelineRun.objects.filter(pipeline_name="flow").exclude(pk=first.pk).get()

    assert set(PipelineError.objects.values_list("run", flat=True)) == {second.pk}
    for run in (first, second):
        page = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[run.pk]))
        assert "2 error rows" in page.content.decode()
        rows = admin_client.get(reverse(ERRORS), {"show": "rows", "status": "all", "run": run.pk})
        assert len(rows.context["cl"].result_list) == 2
    assert first.error_rows.count() == 2
    assert sorted(PipelineError.objects.values_list("attempts", flat=True)) == [2, 2]


def test_the_run_list_shows_the_columns_an_operator_needs_first(admin_client):
    distributed_run(chunks_done=1, chunks_total=2, processed=30, errored=4)

    response = admin_client.get(reverse(RUNS))

    headers = [h for h in response.context["cl"].list_display if h != "action_checkbox"]
    assert headers[:8] == ["run_number", "pipeline", "run_status", "progress",
                           "processed_errored", "items_per_second", "started", "elapsed_seconds"]
    content = response.content.decode()
    assert "running, 4 errored" in content and "datapipe-status-errors" in content
    assert "(1/2 chunks)" in content
    assert "icon-no.svg" not in content  # no boolean drawn as a red cross
    assert '<nav class="toplinks">' in content  # the date hierarchy


def test_the_run_list_costs_the_same_queries_for_3_runs_as_for_30(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse(RUNS)).status_code == 200
        return len(captured)

    for _ in range(3):
        distributed_run()
    few = queries()
    for _ in range(27):
        distributed_run()
    assert queries() == few


def test_the_run_page_shows_its_chunks_with_worker_duration_and_deliveries(admin_client):
    run = distributed_run(chunks_done=1, chunks_total=2)

    content = admin_client.get(
        reverse("admin:datapipe_pipelinerun_change", args=[run.pk])).content.decode()

    table = content.split('<table class="datapipe-chunks">')[1].split("</table>")[0]
    assert "<th>worker</th>" in table and "<th>duration</th>" in table
    assert "<th>deliveries</th>" in table
    assert "<td>host-a:0</td>" in table and "<td>30 s</td>" in table
    assert "no (local)" not in content and "yes (Celery chunks)" in content


# Error groups ------------------------------------------------------------------------------------


def test_an_error_group_lists_its_distinct_messages_with_counts(admin_client, two_messages):
    group = PipelineError.objects.filter(pipeline_name="test.rates").first()
    assert PipelineError.objects.values("signature").distinct().count() == 1

    content = admin_client.get(
        reverse("admin:datapipe_pipelineerror_change", args=[group.pk])).content.decode()

    table = content.split('<table class="datapipe-messages">')[1].split("</table>")[0]
    rows = table.split("<tr>")[2:]
    assert "&#x27;JPY&#x27;</a></td><td>3</td><td>3</td>" in rows[0]
    assert "&#x27;CHF&#x27;</a></td><td>1</td><td>1</td>" in rows[1]
    listed = admin_client.get(reverse(ERRORS)).context["cl"].result_list
    assert [(g.messages, g.open_rows) for g in listed] == [(2, 4)]


def test_error_groups_sort_by_their_figures(admin_client, two_messages):
    failed_items("error")

    def order(param):
        listed = admin_client.get(reverse(ERRORS), {"o": param}).context["cl"].result_list
        return [g.open_rows for g in listed]

    # Columns: 1 error, 2 pipeline, 3 open rows, ...
    assert order("3") == [1, 4]
    assert order("-3") == [4, 1]


# Who sees what -----------------------------------------------------------------------------------


def test_a_staff_user_without_the_resend_permission_sees_no_resend_and_gets_403(client):
    from tests.test_command import stale_distributed_run

    handle = stale_distributed_run()
    client.force_login(staff("view_pipelinerun"))

    content = client.get(LANDING).content.decode()
    resend = reverse("admin:datapipe_pipelinerun_resend", args=[handle.id])

    assert f'<tr data-run="{handle.id}">' in content.split('id="stale"')[1]
    assert resend not in content and "Resend lost chunks" not in content
    assert client.post(resend).status_code == 403
    assert set(handle.run.chunks.values_list("resends", flat=True)) == {0}


def test_an_operator_with_the_permission_resends_a_stale_run_from_the_landing_page(client):
    from tests.test_command import stale_distributed_run

    handle = stale_distributed_run()
    client.force_login(staff("view_pipelinerun", "resend_pipelinerun"))
    resend = reverse("admin:datapipe_pipelinerun_resend", args=[handle.id])
    assert resend in client.get(LANDING).content.decode()

    response = client.post(resend, {"next": "https://elsewhere.example.com/"}, follow=True)

    assert response.redirect_chain[-1][0] == LANDING  # not to another host
    assert f"Run {handle.id}: 2 chunks sent again." in response.content.decode()
    assert set(handle.run.chunks.values_list("resends", flat=True)) == {1}


def test_a_user_who_may_only_view_errors_sees_no_runs_on_the_landing_page(client, two_messages):
    client.force_login(staff("view_pipelineerror"))

    content = client.get(LANDING).content.decode()

    assert 'id="errors"' in content and 'id="running"' not in content
    live = client.get(reverse("admin:datapipe_pipelinerun_live"))
    assert live.status_code == 403


@pytest.mark.parametrize("url", [
    LANDING, "/admin/datapipe/pipelinerun/live/",
    "/admin/datapipe/pipelinerun/chart/processed/24h.svg", "/admin/datapipe/pipelinerun/1/resend/",
])
def test_a_user_who_is_not_staff_is_sent_to_the_login_page(client, url):
    client.force_login(User.objects.create_user("visitor", password="pw"))

    response = client.get(url)

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
