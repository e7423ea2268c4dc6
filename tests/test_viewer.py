"""The offline viewer page: self-contained (no URL it would fetch), and in Debian's headless
Chromium with the network cut off it renders the astronaut (a screenshot that is not blank) and
reports the 52 morph targets and the animation it loaded. Skipped without chromium (`make tools`)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import astronaut_files, astronaut_reconstruction  # noqa: F401

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # any network access would fail


@pytest.fixture(scope="module")
def page(astronaut_files, tmp_path_factory):
    from facetwin.api import view

    return view(astronaut_files["files"]["glb"], tmp_path_factory.mktemp("page") / "astronaut.html")


def chromium(args, tmp_path, timeout=240):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("Debian's chromium is not installed (make tools)")
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)


def test_page_is_self_contained(page):
    text = Path(page).read_text()
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", text)
    assert "FACETWIN_THREE" in text and 'id="facetwin-glb"' in text
    assert (Path(__file__).resolve().parents[1] / "facetwin" / "viewer" / "assets" / "THREE_LICENSE").is_file()


def test_chromium_reports_52_morph_targets_and_the_animation(page, tmp_path):
    for budget in (12000, 40000):  # a busy CPU may need more virtual time before the GLB is parsed
        proc = chromium([f"--virtual-time-budget={budget}", "--dump-dom", Path(page).as_uri()], tmp_path)
        m = re.search(r'<pre id="facetwin-report">([^<]*)</pre>', proc.stdout)
        assert m, proc.stdout[-1000:] + proc.stderr[-1000:]
        report = json.loads(m.group(1).replace("&quot;", '"'))
        if report["status"] != "loading":
            break
    assert report["status"] == "loaded", report
    assert report["morphTargets"] == 52 and "jawOpen" in report["morphTargetNames"]
    assert report["animations"] == 1 and report["vertices"] == 4770 and report["frames"] >= 1
    assert proc.stdout.count('data-morph="') == 52  # one slider per expression


def test_chromium_screenshot_shows_the_face(page, tmp_path):
    from PIL import Image

    background = np.array([0x30, 0x34, 0x3B], float)
    # Headless Chromium may take the screenshot before the first WebGL frame when the CPU is
    # busy (seen once under a load of 5): a longer virtual-time budget, once, before judging.
    for budget in (12000, 40000):
        shot = tmp_path / f"shot_{budget}.png"
        chromium([f"--virtual-time-budget={budget}", "--window-size=1100,800", f"--screenshot={shot}", Path(page).as_uri()], tmp_path)
        img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
        view = img[120:680, 40:700]  # the WebGL canvas
        face = np.abs(view - background).sum(-1) > 40
        if face.mean() > 0.08:
            break
    assert 0.08 < face.mean() < 0.8, f"{face.mean():.3f} of the 3D view differs from the background"
    # skin colours: more red than blue on the face pixels
    assert (view[face][:, 0] - view[face][:, 2]).mean() > 15
