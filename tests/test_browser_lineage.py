"""An operator in a real browser follows a failure to its lineage: from the error row to
the lineage page of its item, then to the source it was made of.

Headless Chromium as in ``test_browser.py`` (whose fixtures this reuses); screenshots go
to ``$DATAPIPE_TEST_OUTPUT`` (default ``test-output/``).
"""

import pytest
from django.contrib.auth.models import User

from datapipe.models import PipelineError
from tests.test_browser import PASSWORD, browser, output_dir  # noqa: F401  (the fixture)
from tests.test_lineage import imported
from tests.testapp.models import News

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_operator_follows_a_failure_to_the_lineage_of_its_item(browser, live_server):  # noqa: F811
    from selenium.webdriver.common.by import By

    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    raw, _storm = imported(("Rain in Spain", "weather,spain,europe"), ("Storm", "weather,bad"))
    row = PipelineError.objects.get(pipeline_name="news.link.tags")

    browser.get(f"{live_server.url}/admin/login/"
                f"?next=/admin/datapipe/pipelineerror/{row.pk}/change/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    # The error row links to the lineage of its item, the News "Storm".
    browser.find_element(By.CSS_SELECTOR, ".object-tools a.datapipe-lineage-link").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Lineage of Storm"
    upstream = browser.find_element(By.ID, "upstream-tree").text
    assert "raw: Storm" in upstream and "made by news.import" in upstream
    errors = browser.find_element(By.CSS_SELECTOR, "#errors + .datapipe-errors").text
    assert "news.link.tags: ValueError: bad tag on news" in errors and "(open)" in errors
    browser.save_screenshot(str(output_dir() / "admin-lineage-failed-item.png"))

    # Up to the source, then down again to its sibling: the News "Rain in Spain" and its tags.
    browser.get(f"{live_server.url}/admin/datapipe/lineage/testapp/rawnews/{raw.pk}/")
    downstream = browser.find_element(By.ID, "downstream-tree")
    assert "made by news.import" in downstream.text
    news = News.objects.get(title="Rain in Spain")
    downstream.find_element(By.LINK_TEXT, "lineage").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Lineage of Rain in Spain"
    tags = browser.find_element(By.ID, "downstream-tree").text
    assert all(f"#{name}" in tags for name in ("weather", "spain", "europe"))
    assert "raw: Rain in Spain" in browser.find_element(By.ID, "upstream-tree").text
    assert browser.current_url.endswith(f"/lineage/testapp/news/{news.pk}/")
    screenshot = output_dir() / "admin-lineage.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 0
