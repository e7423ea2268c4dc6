"""The offline viewer page: self-contained (no URL it would fetch), and in Debian's headless
Chromium with the network cut off it renders the astronaut (a screenshot that is not blank) and
reports the 52 morph targets and the animation it loaded. Skipped without chromium (`make tools`)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import headless_chromium
from export_fixtures import astronaut_files, astronaut_reconstruction  # noqa: F401


@pytest.fixture(scope="module")
def page(astronaut_files, tmp_path_factory):
    from facetwin.api import view

    return view(astronaut_files["files"]["glb"], tmp_path_factory.mktemp("page") / "astronaut.html")


@pytest.fixture
def browser(page, tmp_path):
    """The page open in headless Chromium, waited for in real time until it reports a drawn frame."""
    if not headless_chromium.executable():
        pytest.skip("Debian's chromium is not installed (make tools)")
    with headless_chromium.Browser(Path(page).as_uri(), tmp_path / "profile") as b:
        b.report = json.loads(b.wait_for(REPORT_READY, timeout=180) or b.evaluate(REPORT))
        yield b


REPORT = "document.getElementById('facetwin-report').textContent"
# ready once the GLB is parsed (or failed) and, when loaded, a first WebGL frame is drawn
REPORT_READY = f"(() => {{ const r = JSON.parse({REPORT} || '{{}}'); return (r.status && r.status !== 'loading' && (r.status !== 'loaded' || r.frames >= 1)) ? {REPORT} : null; }})()"


def test_page_is_self_contained(page):
    text = Path(page).read_text()
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", text)
    assert "FACETWIN_THREE" in text and 'id="facetwin-glb"' in text
    assert (Path(__file__).resolve().parents[1] / "facetwin" / "viewer" / "assets" / "THREE_LICENSE").is_file()


def test_chromium_reports_52_morph_targets_and_the_animation(browser):
    report = browser.report
    assert report["status"] == "loaded", report
    assert report["morphTargets"] == 52 and "jawOpen" in report["morphTargetNames"]
    assert report["animations"] == 1 and report["vertices"] == 4770 and report["frames"] >= 1
    assert browser.evaluate("document.querySelectorAll('input[data-morph]').length") == 52  # one slider per expression


def test_chromium_screenshot_shows_the_face(browser):
    import io

    from PIL import Image

    assert browser.report["status"] == "loaded", browser.report
    background = np.array([0x30, 0x34, 0x3B], float)
    img = np.asarray(Image.open(io.BytesIO(browser.screenshot())).convert("RGB")).astype(float)
    view = img[120:680, 40:700]  # the WebGL canvas
    face = np.abs(view - background).sum(-1) > 40
    assert 0.08 < face.mean() < 0.8, f"{face.mean():.3f} of the 3D view differs from the background"
    # skin colours: more red than blue on the face pixels
    assert (view[face][:, 0] - view[face][:, 2]).mean() > 15
