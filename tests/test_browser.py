"""An operator in a real browser: sees a failure, fixes it, reprocesses it from the admin.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, installed by
``scripts/test``) driven by Selenium against pytest-django's live server. Screenshots
go to ``$DATAPIPE_TEST_OUTPUT`` (default ``test-output/``).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from tests.conftest import require
from tests.failing import failed_items, fix, open_rows

PASSWORD = "browser-test-pw"


def output_dir() -> Path:
    path = Path(os.environ.get("DATAPIPE_TEST_OUTPUT") or "test-output")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser():
    """Headless Chromium through chromedriver; no browser is downloaded at run time."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    require(chromium is not None and chromedriver is not None,
            "needs Debian's chromium and chromium-driver (scripts/test installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "needs selenium (pip install -e '.[test]')")
    profile = tempfile.mkdtemp(prefix="datapipe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,2200",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_an_operator_reprocesses_a_fixed_failure_from_the_admin(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    items = failed_items("error", "error", "error")
    assert open_rows().count() == 3

    # Logs in and lands on the error groups.
    browser.get(f"{live_server.url}/admin/login/?next=/admin/datapipe/pipelineerror/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1  # three failing items, one failure
    assert "3 rows" in rows[0].text and "ValueError: bad item" in rows[0].text

    # Opens the group: its figures, its stack, and the traceback page in its frame.
    rows[0].find_element(By.PARTIAL_LINK_TEXT, "ValueError").click()
    assert "3 open rows of 3, 3 items affected" in browser.page_source
    assert "tests/testapp/pipes.py" in browser.find_element(By.CLASS_NAME, "datapipe-frames").text
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.datapipe-traceback")
    assert frame.get_attribute("sandbox") is not None
    browser.save_screenshot(str(output_dir() / "admin-error-group.png"))
    browser.switch_to.frame(frame)
    assert "ValueError" in browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()

    # The code is fixed; back on the list, the group is reprocessed with the admin action.
    fix(items)
    browser.get(f"{live_server.url}/admin/datapipe/pipelineerror/")
    browser.find_element(By.CSS_SELECTOR, "input[name=_selected_action]").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("reprocess_locally")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text.lower()
    assert "flow: 3 rows reprocessed, 3 resolved, 0 still open, 0 missing" in message
    assert browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr") == []

    # The failure is listed under "Resolved", with no open row left.
    browser.find_element(By.LINK_TEXT, "Resolved").click()
    resolved = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(resolved) == 1
    assert resolved[0].find_element(By.CSS_SELECTOR, "td.field-open_rows").text == "0"
    screenshot = output_dir() / "admin-error-group-resolved.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 0
    assert not open_rows().exists()
