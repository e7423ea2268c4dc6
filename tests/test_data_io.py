"""Robust image / video / .pts reading, on generated odd files."""

import io as _io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from facetwin.data import io as fio
from facetwin.data.io import ImageReadError, load_image
from facetwin.data.pts import read_pts, write_pts
from facetwin.data.video import VideoReadError, iter_frames, video_info
from facetwin.errors import FacetwinError
from media import write_video  # noqa: E402


@pytest.fixture(scope="module")
def astro():
    return skdata.astronaut()  # (512, 512, 3) uint8, one real face


def test_rgb_jpeg_roundtrip(tmp_path, astro):
    p = tmp_path / "a.jpg"
    Image.fromarray(astro).save(p, quality=95)
    img, scale = load_image(p)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8 and scale == 1.0
    assert np.abs(img.astype(int) - astro).mean() < 4


def test_16bit_png_gray_and_rgb(tmp_path, astro):
    gray16 = (astro.mean(2) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    img, _ = load_image(tmp_path / "g16.png")
    assert img.shape == (512, 512, 3)
    assert np.abs(img[..., 0].astype(int) - astro.mean(2)).mean() < 1.5
    rgb16 = astro[..., ::-1].astype(np.uint16) * 257  # cv2 writes BGR
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16)
    img, _ = load_image(tmp_path / "c16.png")
    assert np.abs(img.astype(int) - astro).mean() < 1.5


def test_rgba_is_composited_on_white(tmp_path, astro):
    rgba = np.dstack([astro, np.full(astro.shape[:2], 255, np.uint8)])
    rgba[:100, :100, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img, _ = load_image(tmp_path / "a.png")
    assert (img[:100, :100] == 255).all()
    assert np.array_equal(img[200:, 200:], astro[200:, 200:])


def test_grayscale_and_cmyk_jpeg(tmp_path, astro):
    Image.fromarray(astro).convert("L").save(tmp_path / "g.jpg")
    img, _ = load_image(tmp_path / "g.jpg")
    assert img.shape == (512, 512, 3) and np.array_equal(img[..., 0], img[..., 1])
    Image.fromarray(astro).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
    img, _ = load_image(tmp_path / "c.jpg")
    # Colours survive the CMYK detour (not inverted): close to the original.
    assert np.abs(img.astype(int) - astro).mean() < 12


def test_exif_rotation_is_applied(tmp_path, astro):
    h, w = 300, 200
    small = cv2.resize(astro, (w, h))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90° clockwise to display upright
    Image.fromarray(small).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    img, scale = load_image(tmp_path / "r.jpg")
    assert img.shape == (w, h, 3) and scale == 1.0
    expected = np.rot90(small, k=-1)  # clockwise
    assert np.abs(img.astype(int) - expected).mean() < 5


def test_huge_image_is_downscaled(tmp_path, astro):
    big = cv2.resize(astro, (8000, 8000), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=80)
    img, scale = load_image(tmp_path / "big.jpg", max_side=2048)
    assert img.shape == (2048, 2048, 3)
    assert scale == pytest.approx(2048 / 8000)
    ref = cv2.resize(astro, (2048, 2048), interpolation=cv2.INTER_AREA)
    assert np.abs(img.astype(int) - ref).mean() < 10


def test_decompression_bomb_guard(tmp_path, astro, monkeypatch):
    Image.fromarray(astro).save(tmp_path / "a.png")
    monkeypatch.setattr(fio, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="too many pixels"):
        load_image(tmp_path / "a.png")


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\xff\xd8\xff\xe0" + bytes(300)])
def test_bad_files_raise_one_clear_error(tmp_path, content):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match="unreadable image"):
        load_image(p)


def test_truncated_jpeg(tmp_path, astro):
    buf = _io.BytesIO()
    Image.fromarray(astro).save(buf, format="JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError):
        load_image(tmp_path / "t.jpg")
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_pts_roundtrip_is_one_based(tmp_path):
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    write_pts(tmp_path / "a.pts", pts)
    text = (tmp_path / "a.pts").read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points: 68", "{"]
    assert float(text[3].split()[0]) == pytest.approx(pts[0, 0] + 1, abs=1e-3)
    assert np.allclose(read_pts(tmp_path / "a.pts"), pts, atol=1e-3)
    (tmp_path / "b.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(FacetwinError, match="expected 68"):
        read_pts(tmp_path / "b.pts")


def test_video_streaming_and_sampling(tmp_path, astro):
    small = cv2.resize(astro, (128, 128))
    frames = [np.roll(small, 3 * i, axis=1) for i in range(30)]
    write_video(tmp_path / "v.mp4", frames, fps=30)
    info = video_info(tmp_path / "v.mp4")
    assert info.n_frames == 30 and info.width == 128
    got = list(iter_frames(tmp_path / "v.mp4", every_n=4))
    assert [g[0] for g in got] == list(range(0, 30, 4))
    assert got[1][1] == pytest.approx(4 / 30)
    # Frame content matches the frame written at that index (shifted copy), not another one.
    for index, _, frame, scale in got[:3]:
        assert scale == 1.0
        errs = [np.abs(frame.astype(int) - f).mean() for f in frames]
        assert int(np.argmin(errs)) == index
    assert len(list(iter_frames(tmp_path / "v.mp4", target_fps=10, max_frames=4))) == 4
    assert [g[0] for g in iter_frames(tmp_path / "v.mp4", target_fps=10)] == list(range(0, 30, 3))


def test_bad_videos(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty file"):
        list(iter_frames(tmp_path / "empty.mp4"))
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VideoReadError, match="unreadable video"):
        list(iter_frames(tmp_path / "junk.mp4"))
