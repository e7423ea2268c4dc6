"""``facetwin prepare`` on a folder of odd files: crops, labels, skip reasons, resume, shards."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from facetwin.cli.main import main
from facetwin.data.alignment import apply_affine, invert_affine
from facetwin.data.annotator import annotate
from facetwin.data.datasets import load_manifest
from facetwin.data.io import load_image
from facetwin.data.prepare import PrepareConfig, collect_sources, in_shard, prepare, read_jsonl
from facetwin.data.pts import write_pts
from media import write_video  # noqa: E402


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    """A folder with one of every kind of input (good, odd and bad)."""
    root = tmp_path_factory.mktemp("src")
    astro = skdata.astronaut()
    d = root / "photos"
    d.mkdir()
    Image.fromarray(astro).save(d / "rgb.jpg", quality=95)
    labels, _ = annotate(astro)
    write_pts(d / "rgb.pts", labels[0].landmarks + 1.0)  # "ground truth" 1 px off
    Image.fromarray(astro).convert("L").save(d / "gray.jpg")
    Image.fromarray(astro).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(astro.astype(np.uint16)[..., 0] * 257).save(d / "sixteen.png")
    Image.fromarray(np.dstack([astro, np.full((512, 512), 255, np.uint8)]), "RGBA").save(d / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # displayed after a 90° counter-clockwise turn
    Image.fromarray(np.rot90(astro, k=-1).copy()).save(d / "exif.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(np.full((300, 300, 3), 127, np.uint8)).save(d / "noface.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage" * 10)
    (d / "notes.doc").write_text("not an image")
    (d / "empty.mp4").write_bytes(b"")
    (d / "bad.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    small = cv2.resize(astro, (256, 256), interpolation=cv2.INTER_AREA)
    write_video(d / "clip.mp4", [np.roll(small, 2 * i, axis=1) for i in range(20)], fps=10)
    return root


@pytest.fixture(scope="module")
def prepared(source_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    cfg = PrepareConfig(size=128, every_n_frames=5, video_fps=None)
    summary = prepare([str(source_dir / "photos")], out, cfg, workers=2, progress=False)
    return out, summary


def test_every_good_format_is_prepared(prepared):
    out, summary = prepared
    keys = {r["key"].split("/", 1)[1] for r in load_manifest(out)}
    images = {"rgb.jpg", "gray.jpg", "cmyk.jpg", "sixteen.png", "rgba.png", "exif.jpg"}
    frames = {f"clip.mp4#f{i:06d}" for i in (0, 5, 10, 15)}
    assert keys == images | frames
    assert summary["items_now"] == len(keys) and summary["items_total"] == len(keys)


def test_bad_inputs_are_skipped_with_reasons(prepared):
    out, summary = prepared
    reasons = {s["key"].split("/", 1)[1]: s["reason"] for s in read_jsonl(out / "skipped.shard-0-of-1.jsonl")}
    assert reasons["noface.png"] == "no face"
    assert reasons["corrupt.jpg"].startswith("unreadable image")
    assert reasons["notes.doc"].startswith("unsupported file type")
    assert reasons["empty.mp4"].startswith("unreadable video") and "empty" in reasons["empty.mp4"]
    assert reasons["bad.mp4"].startswith("unreadable video")
    assert summary["skip_reasons_total"] == {"unreadable video": 2, "no face": 1, "unreadable image": 1, "unsupported file type": 1}


def test_records_are_consistent(prepared):
    out, _ = prepared
    records = {r["key"].split("/", 1)[1]: r for r in load_manifest(out)}
    r = records["rgb.jpg"]
    crop = cv2.imread(str(out / r["image"]))
    skin = cv2.imread(str(out / r["skin"]), cv2.IMREAD_GRAYSCALE)
    assert crop.shape == (128, 128, 3) and skin.shape == (128, 128)
    assert 0.1 < (skin > 0).mean() < 0.6
    # The stored transform maps the original-image labels onto the crop labels.
    original = annotate(load_image(r["source"])[0])[0][0].landmarks
    A = np.array(r["transform"])
    assert np.allclose(apply_affine(A, original), r["landmarks"], atol=0.01)
    assert np.allclose(apply_affine(invert_affine(A), np.array(r["landmarks"])), original, atol=0.01)
    # The .pts beside the image (0-based labels + 1 px, stored 1-based) became gt_landmarks in crop pixels.
    gt = np.array(r["gt_landmarks"])
    assert np.allclose(gt, apply_affine(A, annotate(skdata.astronaut())[0][0].landmarks + 1.0), atol=0.01)
    # The EXIF-rotated photo is upright: same labels in the crop as the plain photo.
    assert np.abs(np.array(records["exif.jpg"]["landmarks"]) - r["landmarks"]).mean() < 1.0
    assert records["exif.jpg"]["source_size"] == [512, 512]
    # Identities: one per image, one per clip.
    clip = [v for k, v in records.items() if k.startswith("clip.mp4")]
    assert len({v["identity"] for v in clip}) == 1 and clip[0]["frame"] in (0, 5, 10, 15)
    assert len({records[k]["identity"] for k in ("rgb.jpg", "gray.jpg")}) == 2


def test_resume_after_interruption(prepared, source_dir):
    out, _ = prepared
    done = (out / "done.shard-0-of-1.jsonl").read_text().splitlines()
    n_items = len(load_manifest(out))
    # Simulate a crash: the last source never got its "done" line and the manifest got a torn line.
    (out / "done.shard-0-of-1.jsonl").write_text("\n".join(done[:-1]) + "\n")
    with open(out / "manifest.shard-0-of-1.jsonl", "a") as f:
        f.write('{"key": "torn')
    cfg = PrepareConfig(size=128, every_n_frames=5, video_fps=None)
    summary = prepare([str(source_dir / "photos")], out, cfg, workers=1, progress=False)
    assert summary["processed_now"] == 1 and summary["already_done"] == len(done) - 1
    assert len(load_manifest(out)) == n_items == summary["items_total"]
    again = prepare([str(source_dir / "photos")], out, cfg, workers=1, progress=False)
    assert again["processed_now"] == 0
    # Different crop settings into the same folder are refused with one clear error.
    assert main(["prepare", str(source_dir / "photos"), "--out", str(out), "--size", "64", "--no-progress"]) == 2


def test_shards_partition_the_sources(source_dir):
    sources = collect_sources([str(source_dir / "photos")])
    parts = [{s.key for s in sources if in_shard(s.key, (i, 3))} for i in range(3)]
    assert set().union(*parts) == {s.key for s in sources}
    assert sum(len(p) for p in parts) == len(sources)


def test_cli_json_and_identity_modes(source_dir, tmp_path, capsys):
    people = tmp_path / "people"
    for person in ("ann", "bob"):
        (people / person).mkdir(parents=True)
        for n in range(2):
            (people / person / f"{n}.jpg").write_bytes((source_dir / "photos" / "rgb.jpg").read_bytes())
    code = main(["prepare", f"{people}:folder", "--out", str(tmp_path / "o"), "--size", "64", "--shard", "0/1",
                 "--no-progress", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["items_total"] == 4
    idents = sorted(r["identity"] for r in load_manifest(tmp_path / "o"))
    assert idents == ["people/ann", "people/ann", "people/bob", "people/bob"]
    assert main(["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]) == 2
    assert main(["prepare", str(people), "--out", str(tmp_path / "o3"), "--shard", "3/2"]) == 2
