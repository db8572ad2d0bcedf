"""``manage.py datapipe lineage app_label.Model PK [--json]``."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from datapipe.management.commands.datapipe import Command
from tests.test_lineage import imported
from tests.testapp.models import News, SourceItem, Tag

pytestmark = pytest.mark.django_db


def datapipe(*args) -> str:
    out = StringIO()
    call_command("datapipe", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_json_is_one_document_with_both_directions():
    raw, _storm = imported(("Rain", "weather,spain"), ("Storm", "bad"))
    news = News.objects.get(title="Rain")
    spain = Tag.objects.get(name="spain")
    spain.delete()

    document = json.loads(datapipe("lineage", "testapp.News", str(news.pk), "--json"))

    assert set(document) == {"upstream", "downstream"}
    (step,) = document["upstream"]
    assert step == {"pipeline": "news.import", "model": "testapp.rawnews", "pk": str(raw.pk),
                    "repr": "raw: Rain", "deleted": False, "errors": [],
                    "made_at": step["made_at"], "triggered_by": None}
    root = document["downstream"]
    assert {key: root[key] for key in ("model", "pk", "repr", "deleted", "pipeline")} == {
        "model": "testapp.news", "pk": news.pk, "repr": "Rain", "deleted": False,
        "pipeline": None}
    children = sorted(root["children"], key=lambda child: child["pk"])
    assert [(c["model"], c["pipeline"], c["repr"], c["deleted"], c["children"])
            for c in children] == [
        ("testapp.tag", "news.link.tags", "#weather", False, []),
        ("testapp.tag", "news.link.tags", None, True, []),
    ]
    assert set(children[0]) == {"model", "pk", "repr", "deleted", "errors", "pipeline",
                                "made_at", "truncated", "children"}


def test_json_lists_the_error_rows_of_each_object():
    imported(("Storm", "bad"))
    storm = News.objects.get()

    document = json.loads(datapipe("lineage", "testapp.news", str(storm.pk), "--json"))

    (row,) = document["downstream"]["errors"]
    assert row["pipeline"] == "news.link.tags" and row["resolved"] is False
    assert row["error"].startswith("ValueError: bad tag on news")


def test_text_shows_the_sources_nearest_first_then_what_was_made():
    raw, = imported(("Rain", "weather"))
    tag = Tag.objects.get()

    up = datapipe("lineage", "testapp.Tag", str(tag.pk)).splitlines()
    down = datapipe("lineage", "testapp.RawNews", str(raw.pk)).splitlines()

    news = tag.news
    assert up == [
        f"testapp.tag {tag.pk} (#weather) was made of (nearest first):",
        f"  news.link.tags <- testapp.news {news.pk} (Rain)",
        f"  news.import <- testapp.rawnews {raw.pk} (raw: Rain)",
    ]
    assert down == [
        "Made from it (at most 5 levels):",
        f"  testapp.rawnews {raw.pk} (raw: Rain)",
        f"    news.import -> testapp.news {news.pk} (Rain)",
        f"      news.link.tags -> testapp.tag {tag.pk} (#weather)",
    ]


def test_an_object_nothing_processed_is_said_plainly():
    item = SourceItem.objects.create()

    out = datapipe("lineage", "testapp.SourceItem", str(item.pk))

    assert out == (f"testapp.sourceitem {item.pk} (SourceItem object ({item.pk})): no lineage. "
                   "No pipeline made it, and no pipeline processed it into outputs.\n")
    document = json.loads(datapipe("lineage", "testapp.SourceItem", str(item.pk), "--json"))
    assert document["upstream"] == [] and document["downstream"]["children"] == []


@pytest.mark.parametrize("args", [
    ["nope.Nope", "1"], ["SourceItem", "1"], ["testapp.SourceItem", "999999"],
    ["testapp.SourceItem", "not-a-pk"], ["testapp.SourceItem", "1", "--depth", "-1"],
])
def test_an_unknown_model_or_pk_is_a_usage_error_with_exit_status_2(args, capsys):
    if args[-1] == "-1":
        SourceItem.objects.create(pk=1)
    with pytest.raises(CommandError, match="No |--depth"):
        datapipe("lineage", *args)

    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "datapipe", "lineage", *args])
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_depth_bounds_what_is_printed():
    raw, = imported(("Rain", "weather"))

    out = datapipe("lineage", "testapp.RawNews", str(raw.pk), "--depth", "1").splitlines()

    assert out[-1].endswith("(Rain) ... and more (depth or size limit)")
    assert not any("news.link.tags" in line for line in out)
