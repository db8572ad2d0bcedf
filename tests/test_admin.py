"""The admin: error groups, single rows, the traceback page, actions and permissions; runs
and the runs they started."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from datapipe import Pipe, get_session, pipeline
from datapipe.models import PipelineError, PipelineRun
from tests.failing import failed_items, fix, open_rows
from tests.testapp.models import SourceItem

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:datapipe_pipelineerror_changelist"
RUNS = "admin:datapipe_pipelinerun_changelist"


def changelist(client, **params):
    return client.get(reverse(CHANGELIST), params)


def act(client, action, selected, **params):
    """Post the admin action ``action`` on the ``selected`` primary keys of the change list."""
    url = reverse(CHANGELIST)
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return client.post(url, {"action": action, "index": 0, "_selected_action": selected},
                       follow=True)


def staff(*permissions):
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def viewer(client):
    client.force_login(staff("view_pipelineerror", "view_pipelinerun"))
    return client


@pytest.fixture
def operator(client):
    client.force_login(staff("view_pipelineerror", "reprocess_pipelineerror"))
    return client


# The list of groups ---------------------------------------------------------------------------


def test_the_error_list_shows_one_line_per_failure_with_its_figures(admin_client):
    failed_items("error", "error", "error", "query_error", "ok")

    response = changelist(admin_client)

    groups = sorted(response.context["cl"].result_list, key=lambda g: g.open_rows)
    assert [(g.open_rows, g.items, g.group_rows) for g in groups] == [(1, 1, 1), (3, 3, 3)]
    assert groups[1].group_first_seen <= groups[1].group_last_seen
    content = response.content.decode()
    assert "ValueError: bad item" in content and "3 rows" in content


def test_resolved_failures_leave_the_default_list_and_stay_under_resolved(admin_client):
    items = failed_items("error")
    fix(items)
    get_session().run(SourceItem.objects.all(), "flow")

    assert len(changelist(admin_client).context["cl"].result_list) == 0
    resolved = changelist(admin_client, status="resolved").context["cl"].result_list
    assert [(g.open_rows, g.group_rows) for g in resolved] == [(0, 1)]


def test_single_rows_are_listed_when_asked_for(admin_client):
    failed_items("error", "error")

    response = changelist(admin_client, show="rows")

    assert len(response.context["cl"].result_list) == 2
    assert "<SourceItem" not in response.content.decode()  # reprs are escaped
    assert "&lt;SourceItem" in response.content.decode()


def test_a_search_by_item_id_narrows_the_group_to_that_item(admin_client):
    items = failed_items("error", "error", "error")

    groups = changelist(admin_client, q=str(items[1].pk)).context["cl"].result_list

    assert [(g.open_rows, g.item_id) for g in groups] == [(1, str(items[1].pk))]


def test_filters_by_pipeline_and_error_type(admin_client):
    failed_items("error", pipeline="flow")
    failed_items("error", pipeline="flow.untracked")

    by_pipeline = changelist(admin_client, pipeline_name__exact="flow.untracked")
    by_type = changelist(admin_client, error_type__exact="KeyError")

    assert [g.pipeline_name for g in by_pipeline.context["cl"].result_list] == ["flow.untracked"]
    assert list(by_type.context["cl"].result_list) == []


# The page of a row ---------------------------------------------------------------------------


def test_the_detail_page_shows_the_frames_the_group_and_links_to_the_item(admin_client):
    items = failed_items("error", "error")
    row = open_rows().get(item_id=str(items[0].pk))

    response = admin_client.get(reverse("admin:datapipe_pipelineerror_change", args=[row.pk]))

    content = response.content.decode()
    item_url = reverse("admin:testapp_sourceitem_change", args=[items[0].pk])
    assert f'href="{item_url}"' in content
    assert "tests/testapp/pipes.py" in content  # a frame, relative to the project
    assert "2 open rows of 2, 2 items affected" in content
    assert 'iframe sandbox src="' in content
    assert "Reprocess this failure locally" in content


def test_the_traceback_page_is_served_with_a_sandboxing_policy(admin_client):
    failed_items("error")
    row = open_rows().get()

    response = admin_client.get(reverse("admin:datapipe_pipelineerror_traceback", args=[row.pk]))

    assert response.status_code == 200
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert "bad item" in response.content.decode()


def test_a_row_without_its_own_page_shows_the_page_of_its_group(admin_client, settings):
    settings.DATAPIPE = {**settings.DATAPIPE, "TRACEBACK_PAGES_PER_SIGNATURE": 1}
    failed_items("error", "error")
    without = open_rows().get(traceback_html="")

    response = admin_client.get(reverse("admin:datapipe_pipelineerror_traceback",
                                        args=[without.pk]))

    assert response.status_code == 200 and "ValueError" in response.content.decode()


SCRIPT = "<script>alert('owned')</script>"


class Hostile:
    """An item whose repr and failure carry markup."""

    def __repr__(self):
        return f"<Hostile {SCRIPT}>"


@pytest.fixture
def hostile_failure(isolated_registry):
    @pipeline("test.hostile")
    class Failing(Pipe):
        def process(self):
            password = "pa" + "ss-" + "word-1234"  # noqa: F841  (a local of the failing frame)
            api_key = "key-" + "5678"  # noqa: F841
            raise ValueError(f"{SCRIPT} in {self.item!r}")

    get_session().run([Hostile()], "test.hostile")
    return PipelineError.objects.get(pipeline_name="test.hostile")


def test_markup_in_reprs_and_messages_is_escaped_everywhere(admin_client, hostile_failure):
    row = hostile_failure
    pages = [
        changelist(admin_client),
        changelist(admin_client, show="rows"),
        admin_client.get(reverse("admin:datapipe_pipelineerror_change", args=[row.pk])),
        admin_client.get(reverse("admin:datapipe_pipelineerror_traceback", args=[row.pk])),
    ]
    for response in pages:
        content = response.content.decode()
        assert SCRIPT not in content
        assert "&lt;script&gt;" in content or "&lt;script&gt;" in content.replace("&#x27;", "'")


def test_sensitive_local_variables_are_cleansed_in_the_traceback_page(
    admin_client, hostile_failure
):
    response = admin_client.get(
        reverse("admin:datapipe_pipelineerror_traceback", args=[hostile_failure.pk])
    )

    content = response.content.decode()
    assert "pass-word-1234" not in content and "key-5678" not in content
    assert "********************" in content


# Actions and permissions ------------------------------------------------------------------------


def test_reprocessing_a_group_resolves_the_rows_of_fixed_items(admin_client):
    items = failed_items("error", "error", "error")
    fix(items)
    group = changelist(admin_client).context["cl"].result_list[0]

    response = act(admin_client, "reprocess_locally", [group.pk])

    assert not open_rows().exists()
    assert "3 rows reprocessed, 3 resolved, 0 still open" in response.content.decode()


def test_reprocessing_a_group_that_still_fails_counts_one_more_attempt(admin_client):
    failed_items("error", "error")
    group = changelist(admin_client).context["cl"].result_list[0]

    response = act(admin_client, "reprocess_locally", [group.pk])

    assert sorted(open_rows().values_list("attempts", flat=True)) == [2, 2]
    assert "2 still open" in response.content.decode()


def test_the_buttons_of_the_detail_page_reprocess_the_whole_failure(admin_client):
    items = failed_items("error", "error")
    fix(items)
    oldest = open_rows().order_by("pk").first()  # not the group's latest row
    detail = admin_client.get(reverse("admin:datapipe_pipelineerror_change", args=[oldest.pk]))
    group_url = detail.context["group_url"]

    admin_client.post(group_url, {"action": "reprocess_locally", "index": 0,
                                  "select_across": 1, "_selected_action": oldest.pk})

    assert not open_rows().exists()


def test_reprocessing_a_single_row_leaves_the_others_of_its_group(admin_client):
    items = failed_items("error", "error")
    fix(items)
    row = open_rows().get(item_id=str(items[0].pk))

    act(admin_client, "reprocess_locally", [row.pk], show="rows")

    assert list(open_rows().values_list("item_id", flat=True)) == [str(items[1].pk)]


def test_marking_a_group_resolved_closes_its_open_rows(admin_client):
    failed_items("error", "error")
    group = changelist(admin_client).context["cl"].result_list[0]

    act(admin_client, "mark_resolved", [group.pk])

    assert not open_rows().exists()
    assert all(row.resolved_at for row in PipelineError.objects.all())


def test_a_staff_user_without_the_permission_cannot_reprocess(viewer):
    items = failed_items("error")
    fix(items)
    response = changelist(viewer)
    group = response.context["cl"].result_list[0]
    assert "reprocess_locally" not in response.content.decode()

    act(viewer, "reprocess_locally", [group.pk])
    act(viewer, "mark_resolved", [group.pk])

    assert open_rows().count() == 1
    detail = viewer.get(reverse("admin:datapipe_pipelineerror_change", args=[group.pk]))
    assert "Reprocess this failure" not in detail.content.decode()


def test_a_staff_user_with_the_permission_can_reprocess(operator):
    items = failed_items("error")
    fix(items)
    group = changelist(operator).context["cl"].result_list[0]

    act(operator, "reprocess_locally", [group.pk])

    assert not open_rows().exists()


def test_error_rows_cannot_be_added_changed_or_deleted(admin_client):
    failed_items("error")
    row = open_rows().get()

    assert admin_client.get(reverse("admin:datapipe_pipelineerror_add")).status_code == 403
    change = reverse("admin:datapipe_pipelineerror_change", args=[row.pk])
    assert admin_client.post(change, {"error_type": "Nothing"}).status_code == 403
    delete = reverse("admin:datapipe_pipelineerror_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert open_rows().get().error_type == "ValueError"


# Runs --------------------------------------------------------------------------------------------


def test_the_run_list_shows_status_counts_and_no_bar_for_a_finished_local_run(admin_client):
    failed_items("error", "ok", "ignore")
    run = PipelineRun.objects.get(pipeline_name="flow")

    response = admin_client.get(reverse(RUNS))

    content = response.content.decode()
    assert list(response.context["cl"].result_list) == [run]  # not its trigger
    assert '<td class="field-progress">-</td>' in content  # no "1/1 chunks" bar
    assert "datapipe-status-errors" in content and "done, 1 errored" in content


def test_a_run_with_depends_and_triggers_is_one_row_of_the_run_list(admin_client, run_tree):
    response = admin_client.get(reverse(RUNS))

    assert list(response.context["cl"].result_list) == [run_tree]
    children = f"?runs=all&amp;parent={run_tree.pk}"
    assert f'<a href="{reverse(RUNS)}{children}">2</a>' in response.content.decode()


def test_all_runs_lists_the_runs_that_other_runs_started(admin_client, run_tree):
    response = admin_client.get(reverse(RUNS), {"runs": "all"})

    listed = sorted(run.pipeline_name for run in response.context["cl"].result_list)
    assert listed == ["flow", "flow.derived", "test.tree", "test.tree.after"]
    children = admin_client.get(reverse(RUNS), {"runs": "all", "parent": run_tree.pk})
    assert sorted(run.pipeline_name for run in children.context["cl"].result_list) == [
        "flow", "test.tree.after"]


def test_the_run_page_lists_its_child_runs_nested_with_links(admin_client, run_tree):
    flow = run_tree.children.get(pipeline_name="flow")
    derived = flow.children.get()
    after = run_tree.children.get(pipeline_name="test.tree.after")

    response = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[run_tree.pk]))

    content = response.content.decode()
    table = content[content.index('<table class="datapipe-children">'):]
    table = table[:table.index("</table>")]
    rows = table.split("<tr>")[2:]  # after the header
    assert [row.split("</td>")[0] for row in rows] == [
        '<td style="padding-left:0.5em">flow',
        '<td style="padding-left:2.0em">flow.derived',  # indented below flow
        '<td style="padding-left:0.5em">test.tree.after',
    ]
    for child in (flow, derived, after):
        url = reverse("admin:datapipe_pipelinerun_change", args=[child.pk])
        assert f'<a href="{url}">#{child.pk}</a>' in table
    assert "<td>3</td>" in rows[0] and "<td>done</td>" in rows[0]
    assert "<td>no</td>" in rows[0]  # a dependency
    assert f">#{flow.pk}</a>" in rows[1].split("<td>yes, by")[1]  # flow's trigger
    assert f">#{run_tree.pk}</a>" in rows[2].split("<td>yes, by")[1]


def test_the_page_of_a_child_run_links_to_its_parent(admin_client, run_tree):
    after = run_tree.children.get(pipeline_name="test.tree.after")

    response = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[after.pk]))

    url = reverse("admin:datapipe_pipelinerun_change", args=[run_tree.pk])
    content = response.content.decode()
    assert content.count(f'<a href="{url}">') == 2  # parent run and triggered by


def test_a_running_local_run_shows_its_counts_so_far_rather_than_chunks(admin_client):
    run = PipelineRun.start("flow", "default")
    PipelineRun.objects.filter(pk=run.pk).update(processed=7, errored=1)

    response = admin_client.get(reverse(RUNS))
    page = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[run.pk]))

    assert "7 processed, 1 errored so far" in response.content.decode()
    assert "<progress" not in response.content.decode()
    assert "7 processed, 1 errored so far" in page.content.decode()
    assert 'http-equiv="refresh"' in page.content.decode()


def test_the_run_page_shows_its_counts_and_links_to_its_errors(admin_client):
    failed_items("error", "ok", "ignore")
    run = PipelineRun.objects.get(pipeline_name="flow")

    response = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[run.pk]))
    content = response.content.decode()
    assert "1 error rows" in content and "http-equiv" not in content
    errors = admin_client.get(reverse(CHANGELIST), {"show": "rows", "status": "all",
                                                    "run": run.pk})
    assert len(errors.context["cl"].result_list) == 1


def test_runs_are_read_only(admin_client):
    failed_items("ok")
    run = PipelineRun.objects.get(pipeline_name="flow")
    change = reverse("admin:datapipe_pipelinerun_change", args=[run.pk])

    assert admin_client.post(change, {"status": "failed"}).status_code == 403
    assert admin_client.get(reverse("admin:datapipe_pipelinerun_add")).status_code == 403
    assert PipelineRun.objects.get(pk=run.pk).status == "done"


def test_rows_of_deleted_items_are_listed_under_item_missing(admin_client):
    items = failed_items("error", "error")
    fix(items)
    items[0].delete()
    group = changelist(admin_client).context["cl"].result_list[0]

    response = act(admin_client, "reprocess_locally", [group.pk])

    assert "1 missing" in response.content.decode()
    missing = changelist(admin_client, status="missing", show="rows").context["cl"].result_list
    assert [row.item_missing for row in missing] == [True]
    detail = admin_client.get(reverse("admin:datapipe_pipelineerror_change", args=[missing[0].pk]))
    assert "open, item missing" in detail.content.decode()


# Celery ------------------------------------------------------------------------------------------


def test_reprocessing_in_celery_from_the_admin_resolves_rows_on_the_workers(
    admin_client, celery_worker, monkeypatch
):
    from django.contrib import admin

    from datapipe.distributed.dispatch import RunHandle

    items = failed_items("error", "error")
    fix(items)
    group = changelist(admin_client).context["cl"].result_list[0]
    monkeypatch.setattr(admin.site._registry[PipelineError], "celery_queue", celery_worker.queue)

    response = act(admin_client, "reprocess_in_celery", [group.pk])

    assert "sent to Celery" in response.content.decode()
    run = PipelineRun.objects.get(distributed=True)
    RunHandle(run.pk).wait(timeout=60)
    assert not open_rows().exists()
    page = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[run.pk]))
    assert "<th>chunk</th>" in page.content.decode()


def test_a_distributed_run_is_one_row_and_lists_the_runs_its_chunks_started(
    admin_client, celery_worker
):
    SourceItem.objects.bulk_create([SourceItem(number=n) for n in range(4)])
    handle = get_session(progress=False).run_in_celery(
        SourceItem.objects.all(), "flow", celery_chunksize=2, queue=celery_worker.queue)
    handle.wait(timeout=60)
    run = PipelineRun.objects.get(pk=handle.id)

    listed = admin_client.get(reverse(RUNS))
    page = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[run.pk]))

    assert list(listed.context["cl"].result_list) == [run]
    assert '<progress value="1.000" max="1"></progress> 100% (2/2 chunks)' in (
        listed.content.decode())
    content = page.content.decode()
    url = reverse("admin:datapipe_pipelinerun_change", args=[run.pk])
    assert content.count('<td style="padding-left:0.5em">flow.derived</td>') == 2  # one a chunk
    assert content.count(f'yes, by <a href="{url}">') == 2


def test_a_stale_run_is_marked_and_resent_by_an_operator_with_the_permission(client):
    from tests.test_command import stale_distributed_run

    handle = stale_distributed_run()
    client.force_login(staff("view_pipelinerun"))

    response = client.get(reverse(RUNS))
    assert "running (stale)" in response.content.decode()
    assert "resend_lost_chunks" not in response.content.decode()  # no permission

    client.force_login(User.objects.create_superuser("boss", "b@example.com", "pw"))
    response = client.post(reverse(RUNS), {"action": "resend_lost_chunks", "index": 0,
                                           "_selected_action": [handle.id]}, follow=True)

    assert f"Run {handle.id}: 2 chunks sent again." in response.content.decode()
    assert set(handle.run.chunks.values_list("resends", flat=True)) == {1}

