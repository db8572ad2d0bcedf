"""Lineage: what pipelines made of an item (downstream), what an object was made of
(upstream), on the news example: ``news.import`` (RawNews -> News) triggers
``news.link.tags`` (News -> Tags)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from datapipe import get_session
from datapipe.admin.lineage import items_of_run
from datapipe.identity import content_type_id
from datapipe.lineage import downstream, upstream
from datapipe.models import PipelineRun, PipelineTrack
from tests.testapp.models import News, RawNews, SourceItem, Tag

pytestmark = pytest.mark.django_db


def imported(*raws):
    """Create RawNews ``(title, tags)`` and run ``news.import`` on them; return them."""
    created = RawNews.objects.bulk_create([RawNews(title=title, tags=tags) for title, tags in raws])
    get_session(progress=False).run(
        RawNews.objects.filter(pk__in=[raw.pk for raw in created]), "news.import"
    )
    return created


def shape(node):
    """A tree as nested ``(pipeline, object)`` pairs, children sorted by text."""
    return (node.pipeline, node.object,
            sorted((shape(child) for child in node.children), key=lambda pair: str(pair[1])))


# Downstream -----------------------------------------------------------------------------------


def test_downstream_of_a_raw_item_shows_its_news_and_the_news_tags():
    raw, _other = imported(("Rain in Spain", "weather,spain"), ("Other", "x"))
    news = News.objects.get(title="Rain in Spain")
    weather, spain = Tag.objects.get(name="weather"), Tag.objects.get(name="spain")

    tree = downstream(raw)

    assert shape(tree) == (None, raw, [
        ("news.import", news, [
            ("news.link.tags", spain, []),
            ("news.link.tags", weather, []),
        ]),
    ])
    assert [node.label for node in tree.walk()] == [
        "testapp.rawnews", "testapp.news", "testapp.tag", "testapp.tag"]
    assert not any(node.deleted or node.truncated or node.errors for node in tree.walk())


def test_after_a_rerun_lineage_shows_only_the_current_outputs():
    (raw,) = imported(("Rain", "weather,spain"))
    first_news = News.objects.get()
    RawNews.objects.filter(pk=raw.pk).update(title="Rain, again", tags="weather,france")

    get_session(progress=False).run(RawNews.objects.all(), "news.import")

    news = News.objects.get()
    assert news.pk != first_news.pk
    tree = downstream(raw)
    assert shape(tree) == (None, raw, [
        ("news.import", news, [
            ("news.link.tags", Tag.objects.get(name="france"), []),
            ("news.link.tags", Tag.objects.get(name="weather"), []),
        ]),
    ])
    assert upstream(Tag.objects.get(name="france")) == [
        ("news.link.tags", news), ("news.import", raw)]


def test_outputs_deleted_since_are_shown_as_deleted():
    (raw,) = imported(("Rain", "weather,spain"))
    news = News.objects.get()
    gone = Tag.objects.get(name="spain")
    gone_pk = gone.pk
    gone.delete()

    tree = downstream(raw)

    (news_node,) = tree.children
    assert news_node.object == news and not news_node.deleted
    deleted = [node for node in news_node.children if node.deleted]
    assert [(node.label, node.pk, node.object, node.pipeline) for node in deleted] == [
        ("testapp.tag", gone_pk, None, "news.link.tags")]
    tags = tree.as_dict()["children"][0]["children"]
    assert sorted((tag["deleted"], tag["repr"] or "") for tag in tags) == [
        (False, "#weather"), (True, "")]


def test_the_error_rows_of_each_object_are_on_its_node_open_and_resolved():
    fails, ok = imported(("fail", ""), ("Rain", "bad"))
    RawNews.objects.filter(pk=fails.pk).update(title="Fixed")
    get_session(progress=False).run(RawNews.objects.filter(pk=fails.pk), "news.import")

    fixed_tree = downstream(fails)
    (row,) = fixed_tree.errors
    assert row.pipeline_name == "news.import" and row.resolved
    assert [child.object.title for child in fixed_tree.children] == ["Fixed"]

    bad_tree = downstream(ok)
    (news_node,) = bad_tree.children
    assert bad_tree.errors == []
    assert [(r.pipeline_name, r.resolved) for r in news_node.errors] == [("news.link.tags", False)]
    assert "ValueError: bad tag on news" in news_node.as_dict()["errors"][0]["error"]


def test_depth_and_the_node_limit_bound_the_tree():
    (raw,) = imported(("Rain", "a,b,c,d"))

    shallow = downstream(raw, depth=1)
    (news_node,) = shallow.children
    assert news_node.children == [] and news_node.truncated and not shallow.truncated

    capped = downstream(raw, limit=4)
    assert len(list(capped.walk())) == 4
    assert capped.children[0].truncated
    assert not downstream(raw).children[0].truncated


# Upstream -------------------------------------------------------------------------------------


def test_upstream_of_a_tag_shows_the_news_then_the_raw_item_with_their_pipelines():
    raw, _other = imported(("Rain", "weather"), ("Sun", "weather"))
    news = News.objects.get(title="Rain")
    tag = Tag.objects.get(news=news)

    steps = upstream(tag)

    assert steps == [("news.link.tags", news), ("news.import", raw)]
    assert [(step.label, step.pk, step.triggered_by) for step in steps] == [
        ("testapp.news", str(news.pk), "news.import"), ("testapp.rawnews", str(raw.pk), "")]
    assert all(step.made_at <= timezone.now() for step in steps)
    assert upstream(raw) == []


def test_upstream_shows_an_item_deleted_since_as_none():
    (raw,) = imported(("Rain", "weather"))
    tag = Tag.objects.get()
    raw_pk = raw.pk
    raw.delete()  # no foreign key from News: the news and its tag stay

    (tags_step, import_step) = upstream(tag)

    assert tags_step.item == tag.news
    assert import_step.pipeline == "news.import" and import_step.item is None
    assert import_step.deleted and import_step.pk == str(raw_pk)
    assert import_step.as_dict()["repr"] is None


# No lineage, cycles ------------------------------------------------------------------------------


def test_an_object_no_pipeline_processed_or_made_has_an_empty_lineage():
    item = SourceItem.objects.create(number=1)

    tree = downstream(item)

    assert (tree.object, tree.children, tree.errors, tree.truncated) == (item, [], [], False)
    assert upstream(item) == []


def test_a_cycle_in_the_trackers_is_not_followed_forever():
    first, second = RawNews.objects.create(title="a"), RawNews.objects.create(title="b")
    type_id = content_type_id(RawNews)
    PipelineTrack.objects.bulk_create([
        PipelineTrack(pipeline_name="loop", item_content_type_id=type_id, item_id=str(first.pk),
                      outputs={"testapp.rawnews": [second.pk]}),
        PipelineTrack(pipeline_name="loop", item_content_type_id=type_id, item_id=str(second.pk),
                      outputs={"testapp.rawnews": [first.pk]}),
    ])

    assert shape(downstream(first)) == (None, first, [("loop", second, [])])
    assert upstream(first) == [("loop", second)]


# Queries ----------------------------------------------------------------------------------------


def unrelated_trackers(count):
    """``count`` trackers of other items, each listing outputs of its own."""
    type_id = content_type_id(SourceItem)
    PipelineTrack.objects.bulk_create(
        [PipelineTrack(pipeline_name="noise", item_content_type_id=type_id, item_id=str(n),
                       outputs={"testapp.resultitem": [n], "testapp.tag": [10_000_000 + n]})
         for n in range(count)],
        batch_size=500,
    )


def queries(function, *args):
    with CaptureQueriesContext(connection) as captured:
        function(*args)
    return len(captured)


def test_lineage_takes_a_few_queries_whatever_the_tracker_table_size():
    (raw,) = imported(("Rain", "weather,spain,france"))
    tag = Tag.objects.get(name="weather")
    downstream(raw), upstream(tag)  # content types cached

    few = queries(downstream, raw), queries(upstream, tag)
    unrelated_trackers(3000)
    many = queries(downstream, raw), queries(upstream, tag)

    assert few == many
    # down: 3 levels of trackers, News and Tags loaded, error rows; up: 3 steps (the last
    # finds nothing), News and RawNews loaded, error rows.
    assert many == (6, 6)


def test_on_postgresql_which_tracker_lists_an_output_is_an_index_look_up(postgres_only):
    (raw,) = imported(("Rain", "weather"))
    tag = Tag.objects.get()
    unrelated_trackers(2000)
    tracks = PipelineTrack.objects.filter(outputs__contains={"testapp.tag": [tag.pk]})

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE datapipe_pipelinetrack")
        plan = tracks.explain()
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                       "'datapipe_pipelinetrack' AND indexname LIKE 'datapipe_track_%%'")
        indexes = dict(cursor.fetchall())

    assert "datapipe_track_outputs_gin" in plan, plan
    assert upstream(tag)[0].pipeline == "news.link.tags"
    assert "USING gin (outputs jsonb_path_ops)" in indexes["datapipe_track_outputs_gin"]
    assert "(pipeline_name, updated_at)" in indexes["datapipe_track_pipeline_time"]


# Items of a run ---------------------------------------------------------------------------------


def test_a_run_names_its_failed_items_first_then_those_it_tracked():
    fails, ok = imported(("fail", ""), ("Rain", "weather"))
    run = PipelineRun.objects.get(pipeline_name="news.import")

    assert items_of_run(run) == [(RawNews, str(fails.pk)), (RawNews, str(ok.pk))]
    assert items_of_run(run, limit=1) == [(RawNews, str(fails.pk))]
