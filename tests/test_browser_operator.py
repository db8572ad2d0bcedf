"""What an operator sees, in a real browser at 1400 px: the counts on the admin index,
the datapipe landing page (live table, charts, error groups), the runs list, a run with
children, an error group with two messages.

Headless Chromium as in ``test_browser.py`` (whose fixtures this reuses); screenshots go
to ``$DATAPIPE_TEST_OUTPUT`` (default ``test-output/``).
"""

import pytest
from django.contrib.auth.models import User

from datapipe.models import PipelineError, PipelineRun
from tests.failing import failed_items
from tests.test_admin_dashboard import distributed_run, two_messages  # noqa: F401  (fixture)
from tests.test_browser import PASSWORD, browser, output_dir  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)

VIEWPORT = 1400


def log_in(browser, live_server, next_url):  # noqa: F811
    from selenium.webdriver.common.by import By

    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    browser.get(f"{live_server.url}/admin/login/?next={next_url}")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def right_edge(browser, element) -> float:  # noqa: F811
    """Where ``element`` ends on the page, in CSS pixels from the left."""
    return browser.execute_script("return arguments[0].getBoundingClientRect().right;", element)


def shoot(browser, name):  # noqa: F811
    path = output_dir() / name
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 0


def test_an_operator_sees_counts_live_progress_charts_and_error_trends(
        browser, live_server, two_messages):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = distributed_run(chunks_done=1, chunks_total=4, processed=120, minutes=2)
    failed_items("error")
    log_in(browser, live_server, "/admin/")

    # The admin index says that something runs and something failed.
    assert browser.find_element(By.ID, "datapipe-count-running").text == "1 running"
    assert browser.find_element(By.ID, "datapipe-count-errors").text == "2 open error groups"
    shoot(browser, "admin-index-counts.png")

    # The landing page: the run in progress, its progress, rate and ETA.
    browser.find_element(By.CSS_SELECTOR, "#datapipe-counts h2 a").click()
    assert browser.current_url.endswith("/admin/datapipe/")
    row = browser.find_element(By.CSS_SELECTOR, f'#datapipe-live tr[data-run="{run.pk}"]')
    assert "25% (1/4 chunks)" in row.text and "6 min" in row.text
    assert row.find_element(By.TAG_NAME, "progress").get_attribute("value") == "0.25"

    # Charts drawn as images, loaded (the page makes no request outside the site).
    images = browser.find_elements(By.CSS_SELECTOR, ".datapipe-chart img")
    assert len(images) == 4
    WebDriverWait(browser, 10).until(lambda b: all(b.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0;", img) for img in images))
    assert all(img.get_attribute("src").startswith(live_server.url) for img in images)

    # Open error groups with their trend: four failures today in the KeyError group.
    errors = browser.find_element(By.ID, "errors").text
    assert "(+1 other message)" in errors and "0 0 0 0 0 0 4" in errors
    shoot(browser, "admin-datapipe-landing.png")

    # The table follows the run without a reload: the page polls the JSON view.
    browser.execute_script("document.body.setAttribute('data-not-reloaded', 'yes');")
    PipelineRun.objects.filter(pk=run.pk).update(chunks_done=3, processed=360)
    WebDriverWait(browser, 15).until(lambda b: "75% (3/4 chunks)" in b.find_element(
        By.CSS_SELECTOR, f'#datapipe-live tr[data-run="{run.pk}"]').text)
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-not-reloaded") == "yes"
    PipelineRun.objects.filter(pk=run.pk).update(status="done", finished_at=run.started_at)
    WebDriverWait(browser, 15).until(
        lambda b: "No run in progress." in b.find_element(By.ID, "datapipe-live").text)
    shoot(browser, "admin-datapipe-landing-live.png")


def test_the_runs_list_fits_1400_px_and_a_run_shows_its_children(
        browser, live_server, run_tree):  # noqa: F811
    from selenium.webdriver.common.by import By

    distributed_run(chunks_done=1, chunks_total=2, processed=30, errored=4,
                    pipeline_name="a.pipeline.with.a.rather.long.name")
    log_in(browser, live_server, "/admin/datapipe/pipelinerun/")

    assert browser.execute_script("return window.innerWidth;") <= VIEWPORT
    shoot(browser, "admin-runs-list.png")
    # Seen without scrolling: inside the window and inside the table's scrolling box.
    visible = min(VIEWPORT, right_edge(browser, browser.find_element(By.CSS_SELECTOR,
                                                                     "#changelist .results")))
    for column in ("run_number", "pipeline", "run_status", "progress", "processed_errored",
                   "items_per_second", "started", "elapsed_seconds"):
        header = browser.find_element(By.CSS_SELECTOR, f"#result_list th.column-{column}")
        assert header.is_displayed()
        assert right_edge(browser, header) <= visible, f"{column} is off screen"
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 2  # root runs only
    errored = browser.find_element(By.CSS_SELECTOR, ".datapipe-status-errors")
    assert errored.text.endswith("running, 4 errored")
    assert errored.value_of_css_property("color") != browser.find_element(
        By.CSS_SELECTOR, ".datapipe-status-done").value_of_css_property("color")
    assert browser.find_elements(By.CSS_SELECTOR, "#result_list img[src*='icon-no']") == []
    assert browser.find_element(By.CSS_SELECTOR, "nav.toplinks").is_displayed()
    shoot(browser, "admin-runs-list.png")

    # A run with children: its tree, indented.
    browser.find_element(By.LINK_TEXT, f"#{run_tree.pk}").click()
    tree = browser.find_element(By.CSS_SELECTOR, "table.datapipe-children")
    cells = [cell.text for cell in tree.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")]
    assert cells == ["flow", "flow.derived", "test.tree.after"]
    assert "no (local)" in browser.find_element(By.CSS_SELECTOR, ".field-distributed_text").text
    shoot(browser, "admin-run-with-children.png")


def test_an_error_group_shows_its_two_messages_with_counts(
        browser, live_server, two_messages):  # noqa: F811
    from selenium.webdriver.common.by import By

    group = PipelineError.objects.filter(pipeline_name="test.rates").first()
    log_in(browser, live_server, "/admin/datapipe/pipelineerror/")

    row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr")
    assert row.find_element(By.CSS_SELECTOR, "td.field-messages_count").text == "2"
    assert row.find_element(By.CSS_SELECTOR, "td.field-open_rows").text == "4"
    browser.find_element(By.CSS_SELECTOR, "th.column-open_rows a").click()  # sortable
    assert "o=" in browser.current_url
    shoot(browser, "admin-error-groups.png")

    browser.get(f"{live_server.url}/admin/datapipe/pipelineerror/{group.pk}/change/")
    messages = browser.find_elements(By.CSS_SELECTOR, "table.datapipe-messages tbody tr")
    assert [m.text for m in messages] == ["'JPY' 3 3", "'CHF' 1 1"]
    shoot(browser, "admin-error-group-messages.png")
    messages[1].find_element(By.TAG_NAME, "a").click()
    listed = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(listed) == 1 and "CHF" in listed[0].text
