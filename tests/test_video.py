"""Video workflow: streaming reconstruct (one sequence file + overlay MP4), face tracking with
re-detection, damaged/truncated videos, option validation, --faces all, temporal smoothing and
animate. Small clips are made from a real face photo (scikit-image's astronaut) by the tests;
real talking-head clips from ../shared/data/videos where present."""

import json
import zipfile

import numpy as np
import pytest

from facetwin.cli.main import main
from facetwin.data.video import VideoReader, count_frames
from tests.media import write_video

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skimage_data.astronaut())


def face_window(img, dx=0, dy=0, size=320):
    """A size² window of the astronaut photo around her face, shifted by (dx, dy) pixels."""
    x0, y0 = 60 + dx, 0 + dy
    return np.ascontiguousarray(img[y0:y0 + size, x0:x0 + size])


@pytest.fixture(scope="module")
def clip(astronaut, tmp_path_factory):
    """24 frames at 25 fps, the face drifting slowly to the right."""
    path = tmp_path_factory.mktemp("clip") / "astro_clip.mp4"
    write_video(path, [face_window(astronaut, dx=2 * i) for i in range(24)])
    return path


@pytest.fixture(scope="module")
def leaving_clip(astronaut, tmp_path_factory):
    """Face for 6 frames, 5 frames of an empty wall, the face again for 6 frames."""
    rng = np.random.default_rng(0)
    wall = [np.full((320, 320, 3), 120, np.uint8) + rng.integers(0, 8, (320, 320, 3), dtype=np.uint8) for _ in range(5)]
    frames = [face_window(astronaut, dx=i) for i in range(6)] + wall + [face_window(astronaut, dx=30 - i) for i in range(6)]
    path = tmp_path_factory.mktemp("leave") / "leaving.mp4"
    write_video(path, frames)
    return path


def run_cli(argv, capfd):
    code = main(argv)
    out, err = capfd.readouterr()
    return code, out, err


def mp4_frames(path):
    return count_frames(path)


# -- reconstruct on a video ------------------------------------------------------------------

def test_video_gives_one_sequence_and_an_overlay_mp4_with_every_frame(clip, tmp_path, capfd):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["reconstruct", str(clip), "--out", str(out), "--json"], capfd)
    assert code == 0, err
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["frames"] == 24 and res["frames_with_face"] == 24 and res["sampled"] == "every frame"
    assert res["detections"] == 1  # detected once, tracked for the other 23 frames
    assert res["fps"] > 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["astro_clip_overlay.mp4", "astro_clip_sequence.json", "astro_clip_sequence.npz"]  # no per-frame files
    assert mp4_frames(out / "astro_clip_overlay.mp4") == 24
    z = np.load(out / "astro_clip_sequence.npz")
    assert z["time"].shape == (24,) and np.allclose(z["time"], np.arange(24) / 25.0)
    assert z["expression"].shape[0] == 24 and z["pose"].shape == (24, 5, 3) and z["valid"].all()
    assert z["detected"].sum() == 1 and z["shape"].shape == z["shape_std"].shape
    # The face drifts 2 px a frame to the right: the tracked landmarks follow it.
    drift = np.diff(z["tracked_landmarks"][:, :, 0].mean(1))
    assert abs(np.median(drift) - (-2.0)) < 0.6  # the window moves right, so the face moves left in it
    summary = json.loads((out / "astro_clip_sequence.json").read_text())
    assert summary["frames"] == 24 and summary["identity"]["spread_mm"] >= 0
    assert summary["sampling"]["what"] == "every frame"


def test_fps_samples_and_per_frame_meshes_on_request(clip, tmp_path, capfd):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["reconstruct", str(clip), "--out", str(out), "--fps", "5", "--per-frame", "--smooth", "--json"], capfd)
    assert code == 0, err
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["frames"] == 5 and res["sampled"] == "one frame in 5" and res["smoothing"] == "one-euro"
    assert mp4_frames(out / "astro_clip_overlay.mp4") == 5
    z = np.load(out / "astro_clip_sequence.npz")
    assert list(z["frame_index"]) == [0, 5, 10, 15, 20]
    assert "expression_raw" in z.files and "pose_raw" in z.files
    objs = sorted((out / "astro_clip_frames").glob("*.obj"))
    assert [p.stem for p in objs] == [f"astro_clip_f{i:06d}" for i in (0, 5, 10, 15, 20)]


def test_tracking_redetects_when_the_face_leaves(leaving_clip, tmp_path, capfd):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["reconstruct", str(leaving_clip), "--out", str(out), "--json"], capfd)
    assert code == 0, err
    z = np.load(out / "leaving_sequence.npz")
    assert list(z["valid"]) == [True] * 6 + [False] * 5 + [True] * 6
    # Detected on frame 0, then (track lost) on every empty frame and on the face's return.
    assert z["detected"][0] and z["detected"][6:12].all() and not z["detected"][1:6].any() and not z["detected"][12:].any()
    assert mp4_frames(out / "leaving_overlay.mp4") == 17


# -- faults ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_fps_values_are_refused_with_one_line(clip, tmp_path, capfd, value):
    code, stdout, err = run_cli(["reconstruct", str(clip), "--out", str(tmp_path / "o"), f"--fps={value}"], capfd)
    assert code == 2
    assert err.strip().count("\n") == 0 and "--fps must be a positive number" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_damaged_middle_reports_frames_read_and_where(clip, tmp_path, capfd):
    data = bytearray(clip.read_bytes())
    n = len(data)
    data[n // 3:n // 3 + n // 4] = bytes(n // 4)  # zero a quarter of the file in the middle
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    reader = VideoReader(bad)
    got = sum(1 for _ in reader)
    assert 0 < got < 24 and not reader.report.complete
    code, stdout, err = run_cli(["reconstruct", str(bad), "--out", str(tmp_path / "o"), "--json"], capfd)
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facetwin: warning: damaged.mp4: read ")
    assert f"read {got} of 24 frames" in lines[0]
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["complete"] is False and res["frames"] == got
    assert mp4_frames(tmp_path / "o" / "damaged_overlay.mp4") == got


def test_truncated_mp4_gives_our_line_only(clip, tmp_path, capfd):
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # mp4v keeps its index at the end
    code, stdout, err = run_cli(["reconstruct", str(bad), "--out", str(tmp_path / "o")], capfd)
    assert code == 2
    assert err.strip().splitlines() == ["facetwin: error: unreadable video: cut.mp4: cannot be decoded (truncated, damaged or not a video)"]


def test_truncated_stream_with_index_first_says_where_it_stopped(shared_data, tmp_path, capfd):
    src = shared_data / "videos" / "eamm_fear.mp4"  # 'moov' before 'mdat': a cut file still opens
    if not src.is_file():
        pytest.skip(f"{src} not found")
    bad = tmp_path / "fear_cut.mp4"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    reader = VideoReader(bad)
    got = sum(1 for _ in reader)
    msg = reader.report.message()
    assert 0 < got < reader.info.n_frames
    assert msg.startswith(f"fear_cut.mp4: read {got} of {reader.info.n_frames} frames") and "decoding stopped at frame" in msg
    code, _, err = run_cli(["reconstruct", str(bad), "--out", str(tmp_path / "o"), "--no-overlay", "--max-frames", "500"], capfd)
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 1 and "decoding stopped at frame" in lines[0] and "moov" not in err


# -- several faces in an image ---------------------------------------------------------------

@pytest.fixture(scope="module")
def two_faces(astronaut, shared_data, tmp_path_factory):
    from PIL import Image

    helen = sorted((shared_data / "eval" / "helen-test").glob("*.jpg"))
    if not helen:
        pytest.skip("HELEN test images not found")
    other = np.asarray(Image.open(helen[0]).convert("RGB").resize((320, 320)))
    pair = np.concatenate([face_window(astronaut), other], 1)
    path = tmp_path_factory.mktemp("pair") / "pair.png"
    Image.fromarray(pair).save(path)
    return path


def test_faces_all_names_every_face_and_main_mode_says_what_was_skipped(two_faces, tmp_path, capfd):
    out = tmp_path / "all"
    code, stdout, err = run_cli(["reconstruct", str(two_faces), "--out", str(out), "--faces", "all", "--json"], capfd)
    assert code == 0, err
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["reconstructed"] == 2 and [o["face"] for o in res["outputs"]] == [0, 1]
    assert (out / "pair_face0.obj").is_file() and (out / "pair_face1.obj").is_file()
    b0 = json.loads((out / "pair_face0.json").read_text())["detection"]["box"]
    b1 = json.loads((out / "pair_face1.json").read_text())["detection"]["box"]
    assert {b0[0] < 320, b1[0] < 320} == {True, False}  # one face in each half
    out = tmp_path / "main"
    code, stdout, err = run_cli(["reconstruct", str(two_faces), "--out", str(out)], capfd)
    assert code == 0
    assert err.strip().splitlines() == ["facetwin: note: pair.png: 2 faces found; reconstructed the largest (face 0); --faces all reconstructs every face"]
    assert (out / "pair.obj").is_file()


# -- smoothing -------------------------------------------------------------------------------

def test_one_euro_reduces_jitter_on_a_noisy_signal_without_lagging():
    from facetwin.inference.smoothing import OneEuroFilter, ParameterSmoother, jitter

    t = np.arange(0, 8, 1 / 30)
    truth = np.stack([0.3 * np.sin(2 * np.pi * 0.4 * t), 0.1 * np.cos(2 * np.pi * 0.25 * t)], 1)  # a nod, radians
    noisy = truth + np.random.default_rng(0).normal(0, 0.02, truth.shape)
    pose = ParameterSmoother.DEFAULTS["pose"]
    f = OneEuroFilter(**pose)
    smooth = np.stack([f(x, ti) for x, ti in zip(noisy, t)])
    assert jitter(smooth) < 0.5 * jitter(noisy)
    err_noisy = np.sqrt(np.mean((noisy - truth) ** 2))
    err_smooth = np.sqrt(np.mean((smooth[30:] - truth[30:]) ** 2))
    assert err_smooth < 0.8 * err_noisy  # closer to the truth, not just flatter
    # Too low a cutoff (no speed adaptation) lags behind the nod: the adaptive part matters.
    f = OneEuroFilter(min_cutoff=pose["min_cutoff"], beta=0.0)
    lagging = np.stack([f(x, ti) for x, ti in zip(noisy, t)])
    assert np.sqrt(np.mean((lagging[30:] - truth[30:]) ** 2)) > err_smooth
    # A step passes within a few frames (lag stays short for fast motion).
    f = OneEuroFilter(**pose)
    step = np.r_[np.zeros(30), np.ones(30)]
    out = np.array([f(np.array([v]), ti)[0] for v, ti in zip(step, t[:60])])
    assert out[30 + 3] > 0.7


# -- sequence file helpers -------------------------------------------------------------------

def test_streamed_npz_round_trip(tmp_path):
    from facetwin.inference.sequence import StreamedArray, write_npz

    rows = StreamedArray(tmp_path, (5, 3))
    data = np.random.default_rng(1).normal(size=(7, 5, 3)).astype(np.float32)
    for r in data:
        rows.append(r)
    path = write_npz(tmp_path / "seq.npz", {"time": np.arange(7.0)}, {"vertices": rows})
    z = np.load(path)
    assert np.array_equal(z["vertices"], data) and np.array_equal(z["time"], np.arange(7.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.npz"]  # temporaries gone
    assert zipfile.is_zipfile(path)


# -- animate ---------------------------------------------------------------------------------

def test_animate_photo_by_video_frame_counts(astronaut, leaving_clip, tmp_path, capfd):
    from PIL import Image

    src = tmp_path / "astro.png"
    Image.fromarray(astronaut).save(src)
    out = tmp_path / "anim"
    code, stdout, err = run_cli(["animate", "--source", str(src), "--driver", str(leaving_clip), "--out", str(out), "--json"], capfd)
    assert code == 0, err
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["frames"] == 17 and res["frames_with_face"] == 12
    z = np.load(out / "astro_by_leaving_animation.npz")
    assert z["vertices"].shape[0] == 17 and z["vertices"].shape[2] == 3 and z["expression"].shape[0] == 17
    assert list(z["valid"]) == [True] * 6 + [False] * 5 + [True] * 6
    # The empty-wall frames hold the last driven expression.
    assert np.array_equal(z["expression"][6], z["expression"][5])
    # Identity and head pose stay the source's; the jaw follows the driver.
    assert np.allclose(z["pose"][:, :2], z["pose"][0, :2])
    assert count_frames(out / "astro_by_leaving_side_by_side.mp4") == 17


def test_animate_from_a_sequence_result(clip, leaving_clip, tmp_path, capfd):
    out = tmp_path / "rec"
    assert run_cli(["reconstruct", str(clip), "--out", str(out), "--no-overlay"], capfd)[0] == 0
    code, stdout, err = run_cli(["animate", "--source", str(out / "astro_clip_sequence.npz"), "--driver", str(leaving_clip),
                                 "--out", str(tmp_path / "anim"), "--max-frames", "4", "--json"], capfd)
    assert code == 0, err
    z = np.load(tmp_path / "anim" / "astro_clip_by_leaving_animation.npz")
    seq = np.load(out / "astro_clip_sequence.npz")
    assert z["vertices"].shape[0] == 4 and np.allclose(z["shape"], seq["shape"])


def test_animate_photo_by_photo_is_one_frame(astronaut, tmp_path, capfd):
    from PIL import Image

    src, drv = tmp_path / "astro.png", tmp_path / "drv.png"
    Image.fromarray(astronaut).save(src)
    Image.fromarray(face_window(astronaut, dx=20)).save(drv)
    code, stdout, err = run_cli(["animate", "--source", str(src), "--driver", str(drv), "--out", str(tmp_path / "o"), "--json"], capfd)
    assert code == 0, err
    z = np.load(tmp_path / "o" / "astro_by_drv_animation.npz")
    assert z["vertices"].shape[0] == 1 and z["valid"].all()
    assert count_frames(tmp_path / "o" / "astro_by_drv_side_by_side.mp4") == 1


def test_animate_refuses_a_non_result_npz(tmp_path, leaving_clip, capfd):
    bad = tmp_path / "x.npz"
    np.savez(bad, a=np.zeros(3))
    code, _, err = run_cli(["animate", "--source", str(bad), "--driver", str(leaving_clip), "--out", str(tmp_path / "o")], capfd)
    assert code == 2 and err.strip().count("\n") == 0 and "not a facetwin reconstruct result" in err


# -- a real talking-head clip ----------------------------------------------------------------

def test_real_talking_head_is_tracked_not_redetected(shared_data, tmp_path, capfd):
    src = shared_data / "videos" / "hdtf_WDA_AlexandriaOcasioCortez_000.mp4"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    out = tmp_path / "o"
    code, stdout, err = run_cli(["reconstruct", str(src), "--out", str(out), "--max-frames", "40", "--json"], capfd)
    assert code == 0, err
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["frames"] == 40 and res["frames_with_face"] == 40 and res["detections"] == 1
    z = np.load(out / f"{src.stem}_sequence.npz")
    # The mesh's landmarks stay on the tracked face (a few % of its size).
    side = np.ptp(z["tracked_landmarks"], axis=1).max(1)
    err_px = np.linalg.norm(z["landmarks2d"][:, 17:] - z["tracked_landmarks"][:, 17:], axis=2).mean(1)
    assert (err_px / side).max() < 0.08
    assert mp4_frames(out / f"{src.stem}_overlay.mp4") == 40


def test_animated_glb_through_the_export_package(tmp_path):
    """The integration point with facetwin.export (skips in a build without it)."""
    pytest.importorskip("facetwin.export")
    pygltflib = pytest.importorskip("pygltflib")
    from facetwin.cli.animate import Source, write_animated_glb
    from facetwin.headmodel import load_head_model

    hm = load_head_model("open")
    T = 10
    src = Source("x", np.zeros(hm.n_shape, np.float32), np.zeros((5, 3), np.float32), np.zeros(hm.n_expr, np.float32),
                 np.zeros((8, 8, 3), np.uint8), 1.0, np.zeros(2), np.zeros((2, 3)))
    expr = np.random.default_rng(0).uniform(0, 1, (T, hm.n_expr)).astype(np.float32)
    pose = np.zeros((T, 5, 3), np.float32)
    pose[:, 2, 0] = np.linspace(0, 0.3, T)
    path, note = write_animated_glb(tmp_path / "a.glb", hm, src, np.arange(T) / 25, expr, pose)
    assert note is None
    g = pygltflib.GLTF2().load(str(path))
    assert len(g.animations) == 1 and len(g.meshes[0].primitives[0].targets) == hm.n_expr
    times = g.animations[0].samplers[0].input
    assert g.accessors[times].count == T
