"""The admin's lineage page: both trees, who may see it, and the links to it from error
rows, run pages and any model's change page (``LineageMixin``)."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from datapipe.admin import lineage_url
from datapipe.models import PipelineError, PipelineRun
from tests.test_lineage import imported
from tests.testapp.models import News, RawNews, SourceItem, Tag

pytestmark = pytest.mark.django_db


def staff(*codenames, name="operator"):
    user = User.objects.create_user(name, password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def news():
    """A raw item imported into a News with two tags, and one whose tags fail."""
    raw, failing = imported(("Rain in Spain", "weather,spain"), ("Storm", "bad"))
    return raw, News.objects.get(title="Rain in Spain"), failing


def test_the_page_shows_both_trees_with_links_to_objects_runs_and_error_rows(admin_client, news):
    raw, rain, failing = news
    weather = Tag.objects.get(name="weather")

    page = admin_client.get(lineage_url(News, rain.pk)).content.decode()

    assert page.count('id="upstream-tree"') == page.count('id="downstream-tree"') == 1
    upstream, downstream = page.split('id="downstream"')
    for obj in (raw, rain):
        assert reverse(f"admin:testapp_{obj._meta.model_name}_change", args=[obj.pk]) in upstream
    assert "made by <code>news.import</code>" in upstream
    import_run = PipelineRun.objects.get(pipeline_name="news.import")
    assert reverse("admin:datapipe_pipelinerun_change", args=[import_run.pk]) in upstream
    assert reverse("admin:testapp_tag_change", args=[weather.pk]) in downstream
    assert "#weather" in downstream and "#spain" in downstream
    assert "made by <code>news.link.tags</code>" in downstream

    storm = News.objects.get(title="Storm")
    row = PipelineError.objects.get(pipeline_name="news.link.tags")
    storm_page = admin_client.get(lineage_url(News, storm.pk)).content.decode()
    assert reverse("admin:datapipe_pipelineerror_change", args=[row.pk]) in storm_page
    assert "ValueError: bad tag on news" in storm_page


def test_an_object_with_no_lineage_is_said_plainly(admin_client):
    item = SourceItem.objects.create(number=1)

    page = admin_client.get(lineage_url(SourceItem, item.pk)).content.decode()

    assert "No lineage:" in page
    assert 'id="upstream-tree"' not in page and 'id="downstream-tree"' not in page


def test_a_deleted_output_is_shown_as_deleted(admin_client, news):
    raw, rain, _ = news
    Tag.objects.filter(name="spain").delete()

    response = admin_client.get(lineage_url(RawNews, raw.pk))

    assert response.status_code == 200
    assert 'class="datapipe-deleted">testapp.tag' in response.content.decode()


def test_staff_with_the_tracker_view_permission_see_it_and_others_are_refused(client, news):
    raw, *_ = news
    url = lineage_url(RawNews, raw.pk)

    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(User.objects.create_user("someone", password="pw"))
    assert client.get(url).status_code == 302  # not staff: to the login page
    client.force_login(staff("view_pipelineerror", "view_pipelinerun", name="errors-only"))
    assert client.get(url).status_code == 403
    client.force_login(staff("view_pipelinetrack"))
    response = client.get(url)
    assert response.status_code == 200 and 'id="downstream-tree"' in response.content.decode()


def test_what_a_user_may_not_view_is_named_not_shown(client, news):
    raw, rain, _ = news
    client.force_login(staff("view_pipelinetrack", "view_rawnews"))

    page = client.get(lineage_url(RawNews, raw.pk)).content.decode()

    assert "raw: Rain in Spain" in page  # may view RawNews
    assert page.count("Rain in Spain") == page.count("raw: Rain in Spain")  # not the News'
    assert f"testapp.news {rain.pk}" in page  # News: its label and pk only
    storm = News.objects.get(title="Storm")
    assert "1 error rows" in client.get(lineage_url(News, storm.pk)).content.decode()


@pytest.mark.parametrize("path", [
    "nope/nope/1/", "testapp/rawnews/999999/", "testapp/rawnews/not-a-number/",
    "testapp/nosuchmodel/1/",
])
def test_an_unknown_model_or_row_is_404(admin_client, path):
    base = lineage_url(SourceItem, 1).removesuffix("testapp/sourceitem/1/")

    assert admin_client.get(base + path).status_code == 404


def test_the_page_is_not_listed_on_the_admin_index(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "Pipeline errors" in page and "/admin/datapipe/lineage/" not in page


def test_the_url_is_under_the_datapipe_admin():
    assert lineage_url(RawNews, 7) == "/admin/datapipe/lineage/testapp/rawnews/7/"


# Links to the page --------------------------------------------------------------------------------


def test_an_error_rows_page_links_to_the_lineage_of_its_item(admin_client, news):
    storm = News.objects.get(title="Storm")
    row = PipelineError.objects.get(pipeline_name="news.link.tags")

    page = admin_client.get(reverse("admin:datapipe_pipelineerror_change", args=[row.pk]))

    assert lineage_url(News, storm.pk) in page.content.decode()


def test_a_runs_page_links_to_the_lineage_of_its_items(admin_client, news):
    raw, rain, failing = news
    run = PipelineRun.objects.get(pipeline_name="news.import")

    page = admin_client.get(reverse("admin:datapipe_pipelinerun_change", args=[run.pk]))

    content = page.content.decode()
    assert 'id="run-lineage"' in content
    assert lineage_url(RawNews, raw.pk) in content and lineage_url(RawNews, failing.pk) in content


def test_a_model_admin_with_the_mixin_links_its_change_page_to_the_lineage(client, news):
    raw, *_ = news
    change = reverse("admin:testapp_rawnews_change", args=[raw.pk])
    client.force_login(staff("view_rawnews", name="no-lineage"))
    assert lineage_url(RawNews, raw.pk) not in client.get(change).content.decode()

    client.force_login(staff("view_rawnews", "view_pipelinetrack"))
    assert lineage_url(RawNews, raw.pk) in client.get(change).content.decode()


def test_the_text_of_objects_is_escaped(admin_client):
    (raw,) = imported(("<script>alert(1)</script>", "<b>bold</b>"))

    page = admin_client.get(lineage_url(RawNews, raw.pk)).content.decode()

    assert "<script>alert(1)" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "#&lt;b&gt;bold" in page
