"""The documentation (docs/) builds with Sphinx without a warning."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the site once: (exit status, warnings and errors, output folder)."""
    require(importlib.util.find_spec("sphinx") is not None
            and importlib.util.find_spec("furo") is not None,
            "needs Sphinx and furo (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs")
    # Its own process: Sphinx sets Django up with the docs' settings, not the tests'.
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=600,
    )
    return done.returncode, done.stderr, out / "html"


def test_the_documentation_builds_without_a_warning(built):
    status, warnings, _ = built
    assert status == 0 and not warnings.strip(), warnings


def test_the_settings_reference_lists_every_datapipe_key(built):
    from datapipe.conf import DEFAULTS

    page = (built[2] / "settings.html").read_text()
    literal = '<code class="docutils literal notranslate"><span class="pre">{}</span>'
    assert [key for key in DEFAULTS if literal.format(key) not in page] == []


def test_the_api_reference_documents_the_public_api(built):
    page = (built[2] / "api.html").read_text()
    for name in ("datapipe.Pipe.add_to_save", "datapipe.get_session", "datapipe.reprocess",
                 "datapipe.models.PipelineRun.progress"):
        assert f'id="{name}"' in page, name


def test_every_how_to_guide_is_in_the_site(built):
    for guide in (DOCS / "howto").glob("*.rst"):
        assert (built[2] / "howto" / f"{guide.stem}.html").exists(), guide.name
