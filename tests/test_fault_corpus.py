"""The fault corpus: bad inputs and faults generated at test time, each run through the command it
applies to, asserting the README's promise.

Every case asserts: the exit code (2 for an expected fault, 1 for an internal error, 130 for
Ctrl-C, 0 where the odd input is valid and must be read correctly), exactly one line on stderr
(progress-bar redraws aside), no traceback, an earlier result in the output folder left intact,
no temporaries left behind, and that no payload ran. A full disk and a refused permission are
simulated by making the project's writer (facetwin.outputs) raise OSError(ENOSPC / EACCES).

Covered: reconstruct (input side; output side for an image, a folder and a video: --out a file or
under a file, full disk, permission, Ctrl-C inside a write; one stem in two formats), evaluate,
info (FLAME files), demo, train, prepare, export, view, animate, personalize, evaluate person,
option values (argparse types: one line) and the top level. 154 cases (150 in-process, 4 as
real subprocesses), every one run.

Commands run in-process through ``facetwin.cli.main.main(argv)``; the shipped model is loaded
once and shared; training uses a small synthetic data set. A few cases run as real subprocesses.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from coarse_standins import SyntheticFaces  # noqa: E402
from faulty_writes import break_writer  # noqa: E402

from facetwin import outputs  # noqa: E402
from facetwin.cli.main import main  # noqa: E402
from facetwin.inference import reconstructor  # noqa: E402

TINY = ["model.image_size=32", "data.crop_size=32", "model.hidden=32", "run.batch_size=4", "run.log_every=1",
        "render=false", "loss.identity=0", "run.threads=1"]
EARLIER = "earlier result\n"
LOG_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "facetwin-corpus-logs"


# -- the generated inputs ---------------------------------------------------------------------------
class Payload:
    """Unpickling this object would create ``marker`` (a stand-in for any code a file could run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class SystemPayload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces ``width x height`` with almost no pixel data (a bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * (3 * 64 + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@dataclass
class Corpus:
    root: Path
    markers: list[Path] = field(default_factory=list)
    f: dict[str, Path] = field(default_factory=dict)

    def marker(self, name: str) -> Path:
        m = self.root / "markers" / name
        self.markers.append(m)
        return m


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    from safetensors import safe_open
    from safetensors.torch import save_file
    from skimage import data

    from facetwin.data.annotator import annotate
    from facetwin.data.pts import write_pts

    c = Corpus(tmp_path_factory.mktemp("corpus"))
    (c.root / "markers").mkdir()
    r, f = c.root, c.f
    astro = np.ascontiguousarray(data.astronaut())
    f["astro"] = r / "astronaut.png"
    Image.fromarray(astro).save(f["astro"])
    # images
    f["empty"] = r / "empty.jpg"
    f["empty"].write_bytes(b"")
    f["text_jpg"] = r / "notes.jpg"
    f["text_jpg"].write_text("not an image at all\n")
    raw = f["astro"].read_bytes()
    f["trunc_png"] = r / "truncated.png"
    f["trunc_png"].write_bytes(raw[: len(raw) // 3])
    Image.fromarray(astro).save(r / "astro.jpg", quality=90)
    f["trunc_jpg"] = r / "truncated.jpg"
    f["trunc_jpg"].write_bytes((r / "astro.jpg").read_bytes()[:600])
    f["thin_png"] = r / "thin.png"
    Image.fromarray(np.full((1, 20000, 3), 128, np.uint8)).save(f["thin_png"])
    f["tiny_png"] = r / "tiny.png"
    Image.fromarray(np.full((10, 10, 3), 128, np.uint8)).save(f["tiny_png"])
    f["bomb_png"] = _png_header_only(r / "bomb.png", 30000, 30000)        # over the hard pixel cap
    f["budget_png"] = _png_header_only(r / "budget.png", 12000, 12000)    # under it, over the decode budget
    f["noface_png"] = r / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(f["noface_png"])
    import cv2

    a32 = astro.astype(np.float32) / 255.0
    f["float_tif"] = r / "astronaut_float.tif"
    cv2.imwrite(str(f["float_tif"]), a32[..., ::-1])
    f["u16_png"] = r / "astronaut16.png"
    cv2.imwrite(str(f["u16_png"]), (astro.astype(np.uint16) * 257)[..., ::-1])
    nan32 = a32.copy()
    nan32[10, 10, 1] = np.nan
    f["nan_tif"] = r / "nan.tif"
    cv2.imwrite(str(f["nan_tif"]), nan32)
    from media import write_video

    f["clip"] = r / "astro_clip.mp4"  # 4 frames of the astronaut's face
    write_video(f["clip"], [np.ascontiguousarray(astro[0:320, 60 + 2 * i:380 + 2 * i]) for i in range(4)])
    f["folder_in"] = r / "folder_in"
    f["folder_in"].mkdir()
    (f["folder_in"] / "astronaut.png").write_bytes(raw)
    f["twins"] = r / "twins"  # face.jpg and face.png: one stem, two results
    f["twins"].mkdir()
    (f["twins"] / "face.png").write_bytes(raw)
    (f["twins"] / "face.jpg").write_bytes((r / "astro.jpg").read_bytes())
    f["garbage_glb"] = r / "garbage.glb"
    f["garbage_glb"].write_bytes(b"not a binary glTF file")
    f["garbage_npz"] = r / "garbage.npz"
    f["garbage_npz"].write_bytes(b"PK\x03\x04 not really a zip")
    f["dir_as_image"] = r / "folder.png"
    f["dir_as_image"].mkdir()
    f["no_images_dir"] = r / "no_images"
    f["no_images_dir"].mkdir()
    (f["no_images_dir"] / "readme.txt").write_text("x")
    # annotated evaluation folders
    labels, _ = annotate(astro)
    gt = labels[0].landmarks

    def eval_folder(name: str, pts_text: str | None = None, image: Path | None = None) -> Path:
        d = r / name
        d.mkdir()
        (d / "face.png").write_bytes((image or f["astro"]).read_bytes())
        if pts_text is None:
            write_pts(d / "face.pts", gt)
        else:
            (d / "face.pts").write_text(pts_text)
        return d

    f["eval_ok"] = eval_folder("eval_ok")
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in gt)
    f["eval_nan"] = eval_folder("eval_nan", "version: 1\nn_points: 68\n{\n" + body.replace(body.split("\n")[5], "nan 10.0", 1) + "\n}\n")
    f["eval_inf"] = eval_folder("eval_inf", "version: 1\nn_points: 68\n{\n" + body.replace(body.split("\n")[7], "inf -inf", 1) + "\n}\n")
    f["eval_count"] = eval_folder("eval_count", "version: 1\nn_points: 5\n{\n" + "\n".join(body.split("\n")[:5]) + "\n}\n")
    f["eval_header"] = eval_folder("eval_header", "version: 1\nn_points: 68\n{\n" + "\n".join(body.split("\n")[:40]) + "\n}\n")
    f["eval_garbage"] = eval_folder("eval_garbage", "\x00\x01 this is not a pts file")
    f["eval_badimg"] = eval_folder("eval_badimg", image=f["trunc_png"])
    f["eval_empty"] = r / "eval_empty"
    f["eval_empty"].mkdir()
    # model files
    src = reconstructor.DEFAULT_CHECKPOINT
    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    meta.setdefault("facetwin", src.with_suffix(".json").read_text())  # the weights file alone must suffice
    first = next(k for k, v in state.items() if v.is_floating_point())
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        bad = dict(state)
        bad[first] = bad[first].clone()
        bad[first].view(-1)[0] = value
        f[f"{name}_weights"] = r / f"{name}_weights.safetensors"
        save_file(bad, str(f[f"{name}_weights"]), metadata=meta)
    f["foreign_st"] = r / "foreign.safetensors"
    save_file({"x": torch.zeros(3)}, str(f["foreign_st"]))
    f["trunc_st"] = r / "truncated.safetensors"
    f["trunc_st"].write_bytes(src.read_bytes()[:5000])
    f["pickle_st"] = r / "payload.safetensors"
    f["pickle_st"].write_bytes(pickle.dumps({"w": Payload(c.marker("model_payload"))}))
    # FLAME files
    f["flame_payload"] = r / "payload_flame.pkl"
    f["flame_payload"].write_bytes(pickle.dumps({"v_template": SystemPayload(c.marker("flame_payload"))}, protocol=2))
    f["flame_open_payload"] = r / "open_flame.pkl"
    f["flame_open_payload"].write_bytes(pickle.dumps(Payload(c.marker("flame_open_payload")), protocol=2))
    f["flame_bytearray"] = r / "bytearray_flame.pkl"   # 39 bytes asking for a 6 GB buffer
    f["flame_bytearray"].write_bytes(b"\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\x00\x00\x80\x01\x85R.")
    f["flame_bytearray8"] = r / "bytearray8.pkl"
    f["flame_bytearray8"].write_bytes(b"\x80\x05\x96\x00\x00\x00\x80\x01\x00\x00\x00.")
    f["flame_memo"] = r / "memo.pkl"
    f["flame_memo"].write_bytes(b"\x80\x02}r\xff\xff\xff\x7f.")
    f["flame_reconstruct"] = r / "reconstruct.pkl"
    f["flame_reconstruct"].write_bytes(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                                       b"\x8a\x05\x00\x00\x00\x00\x01\x85U\x01b\x87R.")
    f["flame_ndarray"] = r / "ndarray.pkl"
    f["flame_ndarray"].write_bytes(b"\x80\x02cnumpy\nndarray\n\x8a\x05\x00\x00\x00\x00\x01\x85U\x02f8\x86R.")
    f["flame_truncated"] = r / "truncated_flame.pkl"
    f["flame_truncated"].write_bytes(pickle.dumps({"v_template": np.zeros((50, 3))}, protocol=2)[:120])
    f["flame_list"] = r / "list_flame.pkl"
    f["flame_list"].write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    f["flame_npz"] = r / "archive.pkl"
    np.savez(f["flame_npz"].with_suffix(".npz"), a=np.zeros(3))
    f["flame_npz"].write_bytes(f["flame_npz"].with_suffix(".npz").read_bytes())
    f["flame_text"] = r / "text.pkl"
    f["flame_text"].write_text("hello, not a pickle\n")
    f["flame_empty"] = r / "empty.pkl"
    f["flame_empty"].write_bytes(b"")
    f["flame_missing_keys"] = r / "keys.pkl"
    f["flame_missing_keys"].write_bytes(pickle.dumps({"v_template": np.zeros((10, 3))}, protocol=2))
    # training checkpoints carrying payloads
    f["ckpt_pickle"] = r / "step_0000003.pt"
    f["ckpt_pickle"].write_bytes(pickle.dumps({"model": Payload(c.marker("ckpt_pickle"))}))
    f["ckpt_torch_zip"] = r / "zip" / "step_0000003.pt"
    f["ckpt_torch_zip"].parent.mkdir()
    torch.save({"model": Payload(c.marker("ckpt_torch_zip"))}, f["ckpt_torch_zip"])
    f["ckpt_garbage"] = r / "step_0000004.safetensors"
    f["ckpt_garbage"].write_bytes(os.urandom(4096))
    f["ckpt_foreign"] = r / "foreign_ckpt.safetensors"
    save_file({"x": torch.zeros(2)}, str(f["ckpt_foreign"]))
    return c


# -- running a command -------------------------------------------------------------------------------
_MODELS: dict = {}


@pytest.fixture(autouse=True)
def shared_model(monkeypatch):
    """One loaded shipped model for the whole corpus (other checkpoints load for real)."""
    real = reconstructor.load_coarse_model

    def cached(checkpoint="default", head_model=None, device="cpu"):
        if checkpoint not in (None, "", "default") or head_model is not None:
            return real(checkpoint, head_model, device)
        if "default" not in _MODELS:
            _MODELS["default"] = real(checkpoint, head_model, device)
        return _MODELS["default"]

    monkeypatch.setattr(reconstructor, "load_coarse_model", cached)
    monkeypatch.setenv("FACETWIN_LOG_DIR", str(LOG_DIR))


@pytest.fixture
def synthetic_training(monkeypatch):
    from facetwin.data import prepared

    monkeypatch.setattr(prepared, "open_prepared", lambda cfg, size=None, quiet=False: SyntheticFaces(n=16, size=32, seed=3))


def _stderr_lines(err: str) -> list[str]:
    """Stderr lines without progress-bar redraws (tqdm rewrites its line with carriage returns)."""
    lines = []
    for line in err.split("\n"):
        last = line.split("\r")[-1].strip()
        if last and not (("it/s" in last or "s/it" in last) and "|" in last):
            lines.append(last)
    return lines


@dataclass
class Case:
    name: str
    argv: Callable[[Corpus, Path], list[str]]
    code: int = 2
    says: str = ""                                  # a fragment the one stderr line must hold
    before: Callable | None = None                  # (corpus, out, monkeypatch) → None, set-up
    after: Callable | None = None                   # (corpus, out, stdout) → None, extra checks
    fixtures: tuple[str, ...] = ()


CASES: list[Case] = []


def case(name, argv, code=2, says="", before=None, after=None, fixtures=()):
    CASES.append(Case(name, argv, code, says, before, after, fixtures))


def F(key):
    return lambda c, out: str(c.f[key])


# -- reconstruct: input side ---------------------------------------------------------------------------
for key, says in [("empty", "empty"), ("text_jpg", "not an image"), ("trunc_png", "truncated.png"), ("trunc_jpg", "truncated.jpg"),
                  ("thin_png", "too thin"), ("tiny_png", "too thin"), ("bomb_png", "too many pixels"), ("budget_png", "Mpx"),
                  ("noface_png", "no usable face"), ("nan_tif", "NaN"), ("dir_as_image", "no images"),
                  ("no_images_dir", "no images")]:
    case(f"reconstruct/{key}", lambda c, out, key=key: ["reconstruct", str(c.f[key]), "--out", str(out)], says=says)
case("reconstruct/missing", lambda c, out: ["reconstruct", str(c.root / "nope.jpg"), "--out", str(out)], says="not found")
for key, says in [("nan_weights", "NaN or infinite weights"), ("inf_weights", "NaN or infinite weights"),
                  ("foreign_st", "not a facetwin"), ("trunc_st", "truncated.safetensors"), ("pickle_st", "payload.safetensors")]:
    case(f"reconstruct/checkpoint_{key}", lambda c, out, key=key: ["reconstruct", str(c.f["astro"]), "--out", str(out),
                                                                    "--checkpoint", str(c.f[key])], says=says)
case("reconstruct/checkpoint_missing", lambda c, out: ["reconstruct", str(c.f["astro"]), "--out", str(out), "--checkpoint",
                                                       str(c.root / "none.safetensors")], says="not found")
case("reconstruct/checkpoint_empty_run_folder", lambda c, out: ["reconstruct", str(c.f["astro"]), "--out", str(out),
                                                                "--checkpoint", str(c.f["no_images_dir"])], says="no coarse_encoder")


def _landmarks_in_frame(c, out, stdout):
    """Odd but valid images are read correctly: the face is found where it is in the 8-bit photo."""
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["reconstructed"] == 1
    lm = np.array(json.loads(Path(result["outputs"][0]["obj"]).with_suffix(".json").read_text())["landmarks2d"])
    assert 150 < lm[:, 0].mean() < 300 and 50 < lm[:, 1].mean() < 250  # the astronaut's face


for key in ("float_tif", "u16_png"):
    case(f"reconstruct/valid_{key}", lambda c, out, key=key: ["reconstruct", str(c.f[key]), "--out", str(out), "--json"],
         code=0, after=_landmarks_in_frame)

# -- evaluate landmarks ----------------------------------------------------------------------------------
for key, says in [("eval_nan", "NaN or infinite"), ("eval_inf", "NaN or infinite"), ("eval_count", "expected 68"),
                  ("eval_header", "expected 68 points, found 40"), ("eval_garbage", "not an iBUG"), ("eval_badimg", "face.png"),
                  ("eval_empty", "no annotated images")]:
    case(f"evaluate/{key}", lambda c, out, key=key: ["evaluate", "landmarks", str(c.f[key]), "--json"], says=says)
case("evaluate/folder_is_a_file", lambda c, out: ["evaluate", "landmarks", str(c.f["astro"])], says="not a folder")
case("evaluate/missing_folder", lambda c, out: ["evaluate", "landmarks", str(c.root / "nowhere")], says="not a folder")
case("evaluate/nan_weights", lambda c, out: ["evaluate", "landmarks", str(c.f["eval_ok"]), "--checkpoint", str(c.f["nan_weights"])],
     says="NaN or infinite weights")
case("evaluate/annotator_nan_pts", lambda c, out: ["evaluate", "annotator", str(c.f["eval_nan"]), "--no-progress"],
     says="no face could be labelled")
case("evaluate/annotator_count_pts", lambda c, out: ["evaluate", "annotator", str(c.f["eval_count"]), "--no-progress"],
     says="no face could be labelled")


def _earlier_plot(c, out, mp):
    (out / "ced.png").write_bytes(b"earlier plot")


def _plot_intact(c, out, stdout):
    assert (out / "ced.png").read_bytes() == b"earlier plot"


def _plot_written(c, out, stdout):
    result = json.loads(stdout.strip().splitlines()[-1])
    assert Image.open(out / "ced.png").size[0] > 100 and result["images"] == 1 and np.isfinite(result["nme_overall"])


case("evaluate/ced_plot_ok", lambda c, out: ["evaluate", "landmarks", str(c.f["eval_ok"]), "--json", "--ced-plot", str(out / "ced.png")],
     code=0, after=_plot_written)
case("evaluate/ced_plot_full_disk", lambda c, out: ["evaluate", "landmarks", str(c.f["eval_ok"]), "--ced-plot", str(out / "ced.png")],
     says="no space left on device", before=lambda c, out, mp: (_earlier_plot(c, out, mp), break_writer(mp)), after=_plot_intact)
case("evaluate/ced_plot_permission", lambda c, out: ["evaluate", "landmarks", str(c.f["eval_ok"]), "--ced-plot", str(out / "ced.png")],
     says="permission denied", before=lambda c, out, mp: (_earlier_plot(c, out, mp), break_writer(mp, errno.EACCES)), after=_plot_intact)
case("evaluate/ced_plot_is_a_folder", lambda c, out: ["evaluate", "landmarks", str(c.f["eval_ok"]), "--ced-plot", str(out)],
     says="is a folder")
case("evaluate/ced_plot_under_a_file", lambda c, out: ["evaluate", "landmarks", str(c.f["eval_ok"]), "--ced-plot",
                                                       str(out / "earlier.txt" / "ced.png")], says="not a folder")
case("evaluate/ced_plot_wrong_type", lambda c, out: ["evaluate", "landmarks", str(c.f["eval_ok"]), "--ced-plot", str(out / "ced.txt")],
     says=".png")

# -- info --head-model flame:... (the FLAME loader) ----------------------------------------------------------
for key, says in [("flame_payload", "refusing to load"), ("flame_open_payload", "refusing to load"),
                  ("flame_bytearray", "more memory than a FLAME file needs"), ("flame_bytearray8", "bytearray8"),
                  ("flame_memo", "memo index"), ("flame_reconstruct", "more memory than a FLAME file needs"),
                  ("flame_ndarray", "not part of a FLAME file"), ("flame_truncated", "truncated"), ("flame_list", "not a dict"),
                  ("flame_npz", "zip"), ("flame_text", "not a pickle"), ("flame_empty", "empty"),
                  ("flame_missing_keys", "missing"), ("astro", "not a pickle")]:
    case(f"info/{key}", lambda c, out, key=key: ["info", "--head-model", f"flame:{c.f[key]}"], says=says)
case("info/flame_missing", lambda c, out: ["info", "--head-model", f"flame:{c.root / 'none.pkl'}"], says="not found")
case("info/flame_folder", lambda c, out: ["info", "--head-model", f"flame:{c.root}"], says="directory")

# -- demo: output side ---------------------------------------------------------------------------------
case("demo/out_is_a_file", lambda c, out: ["demo", "--out", str(out / "earlier.txt")], says="not a folder")
case("demo/out_under_a_file", lambda c, out: ["demo", "--out", str(out / "earlier.txt" / "demo")], says="not a directory")


def _earlier_demo(c, out, mp):
    (out / "astronaut.png").write_bytes(b"earlier demo picture")


def _demo_intact(c, out, stdout):
    assert (out / "astronaut.png").read_bytes() == b"earlier demo picture"


case("demo/full_disk", lambda c, out: ["demo", "--out", str(out)], says="no space left on device",
     before=lambda c, out, mp: (_earlier_demo(c, out, mp), break_writer(mp)), after=_demo_intact)
case("demo/permission", lambda c, out: ["demo", "--out", str(out)], says="permission denied",
     before=lambda c, out, mp: (_earlier_demo(c, out, mp), break_writer(mp, errno.EACCES)), after=_demo_intact)


# -- train: run folder, checkpoints, output side ----------------------------------------------------------
def train_argv(out, *extra):
    argv = ["train", "coarse", "--config", "coarse_smoke", "--out", str(out), "--steps", "2"]
    for s in TINY:
        argv += ["--set", s]
    return argv + list(extra)


def _plant(key):
    def before(c, out, mp):
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / c.f[key].name).write_bytes(c.f[key].read_bytes())
    return before


T = ("synthetic_training",)
case("train/out_is_a_file", lambda c, out: train_argv(out / "earlier.txt"), says="not a folder", fixtures=T)
case("train/out_under_a_file", lambda c, out: train_argv(out / "earlier.txt" / "run"), says="not a directory", fixtures=T)
case("train/resume_and_overwrite", lambda c, out: train_argv(out, "--resume", "auto", "--overwrite"), says="contradict", fixtures=T)
case("train/resume_pickle_payload", lambda c, out: train_argv(out, "--resume", str(c.f["ckpt_pickle"])), says="pickle", fixtures=T)
case("train/resume_torch_zip_payload", lambda c, out: train_argv(out, "--resume", str(c.f["ckpt_torch_zip"])), says="pickle", fixtures=T)
case("train/resume_auto_planted_payload", lambda c, out: train_argv(out, "--resume", "auto"), says="pickle",
     before=_plant("ckpt_pickle"), fixtures=T)
case("train/resume_garbage", lambda c, out: train_argv(out, "--resume", str(c.f["ckpt_garbage"])), says="step_0000004", fixtures=T)
case("train/resume_foreign", lambda c, out: train_argv(out, "--resume", str(c.f["ckpt_foreign"])), says="not a facetwin training",
     fixtures=T)
case("train/resume_missing", lambda c, out: train_argv(out, "--resume", str(c.root / "step_9.safetensors")), says="not found",
     fixtures=T)
case("train/resume_folder", lambda c, out: train_argv(out, "--resume", str(c.root)), says="folder", fixtures=T)


def _earlier_run(c, out, mp):
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')


def _run_intact(c, out, stdout):
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'


case("train/existing_run_needs_resume_or_overwrite", lambda c, out: train_argv(out), says="already holds a training run",
     before=_earlier_run, after=_run_intact, fixtures=T)


def _no_checkpoint(c, out, stdout):
    assert not list((out / "checkpoints").glob("step_*")) and not list((out / "checkpoints").glob(".*"))


case("train/full_disk_at_checkpoint", lambda c, out: train_argv(out), says="no space left on device",
     before=lambda c, out, mp: break_writer(mp), after=_no_checkpoint, fixtures=T)
case("train/permission_at_checkpoint", lambda c, out: train_argv(out), says="permission denied",
     before=lambda c, out, mp: break_writer(mp, errno.EACCES), after=_no_checkpoint, fixtures=T)


def _ctrl_c(c, out, mp):
    import signal

    from facetwin.training.coarse_stage import CoarseStage

    real = CoarseStage.training_step

    def step(self, model, batch, step):
        if step == 0:
            signal.raise_signal(signal.SIGINT)
        return real(self, model, batch, step)

    mp.setattr(CoarseStage, "training_step", step)


def _ckpt_at_1(c, out, stdout):
    assert [p.name for p in (out / "checkpoints").glob("step_*")] == ["step_0000001.safetensors"]


case("train/ctrl_c_writes_a_checkpoint", lambda c, out: train_argv(out), code=130, says="interrupted at step 1",
     before=_ctrl_c, after=_ckpt_at_1, fixtures=T)

def _diverge(c, out, mp):
    from facetwin.training.coarse_stage import CoarseStage

    real = CoarseStage.training_step

    def step(self, model, batch, step):
        loss, logs = real(self, model, batch, step)
        return loss * float("nan"), logs

    mp.setattr(CoarseStage, "training_step", step)


def _tiny_dataset(c, out, mp):
    from facetwin.data import prepared

    mp.setattr(prepared, "open_prepared", lambda cfg, size=None, quiet=False: SyntheticFaces(n=2, size=32, seed=3))


case("train/diverged", lambda c, out: train_argv(out), says="training diverged", before=_diverge, fixtures=T)
case("train/dataset_too_small", lambda c, out: train_argv(out), says="dataset too small", before=_tiny_dataset, fixtures=T)

# -- prepare keeps working ---------------------------------------------------------------------------------
case("prepare/out_is_a_file", lambda c, out: ["prepare", str(c.f["astro"]), "--out", str(out / "earlier.txt"), "--no-progress"],
     says="earlier.txt")
case("prepare/missing_source", lambda c, out: ["prepare", str(c.root / "nowhere"), "--out", str(out / "prep"), "--no-progress"],
     says="nowhere")


# -- reconstruct: output side, for an image, a folder and a video ------------------------------------------
def _earlier(*names):
    """Set-up: earlier results of the same names in the output folder (their bytes are checked after)."""
    def before(c, out, mp):
        for n in names:
            (out / n).write_bytes(f"earlier {n}".encode())
    return before


def _intact(*names):
    def after(c, out, stdout):
        for n in names:
            assert (out / n).read_bytes() == f"earlier {n}".encode(), n
    return after


def _whole_files(c, out, stdout):
    """After Ctrl-C: every file in the folder is an earlier one or complete (none truncated)."""
    import zipfile

    for p in out.rglob("*"):
        if not p.is_file() or p.read_bytes().startswith(b"earlier "):
            continue
        if p.suffix == ".png":
            Image.open(p).load()
        elif p.suffix == ".npz":
            assert zipfile.ZipFile(p).testzip() is None, p
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".glb":
            assert p.read_bytes()[:4] == b"glTF" and struct.unpack("<I", p.read_bytes()[8:12])[0] == p.stat().st_size, p


def _then(*fs):
    def both(*a):
        for f_ in fs:
            f_(*a)
    return both


RECON_INPUTS = {  # input, extra options, the names of an earlier result of that input
    "image": ("astro", [], ("astronaut_overlay.png", "astronaut.glb")),
    "folder": ("folder_in", [], ("astronaut_overlay.png", "astronaut.glb")),
    "video": ("clip", ["--max-frames", "2"], ("astro_clip_sequence.npz", "astro_clip_overlay.mp4")),
}
for kind, (key, extra, names) in RECON_INPUTS.items():
    def argv_for(out_, key=key, extra=extra):
        return lambda c, out: ["reconstruct", str(c.f[key]), "--out", str(out_(out)), *extra]
    case(f"reconstruct/{kind}_out_is_a_file", argv_for(lambda o: o / "earlier.txt"), says="not a folder")
    case(f"reconstruct/{kind}_out_under_a_file", argv_for(lambda o: o / "earlier.txt" / "res"), says="not a directory")
    for err, says in ((errno.ENOSPC, "no space left on device"), (errno.EACCES, "permission denied")):
        case(f"reconstruct/{kind}_{errno.errorcode[err].lower()}", argv_for(lambda o: o), says=says,
             before=lambda c, out, mp, names=names, err=err: (_earlier(*names)(c, out, mp), break_writer(mp, err)),
             after=_intact(*names))
    case(f"reconstruct/{kind}_ctrl_c_in_a_write", argv_for(lambda o: o), code=130, says="interrupted",
         before=lambda c, out, mp, names=names: (_earlier(*names)(c, out, mp), break_writer(mp, 0, after=1)),
         after=_whole_files)


def _twins_apart(c, out, stdout):
    result = json.loads(stdout.strip().splitlines()[-1])
    files = sorted(p.name for p in c.f["twins"].iterdir())
    assert result["reconstructed"] == len(files) == 2 and result["failed"] == 0
    assert sorted(o["name"] for o in result["outputs"]) == ["face_jpg", "face_png"]
    for n in ("face_jpg", "face_png"):
        assert json.loads((out / f"{n}.json").read_text())["name"] == n
        Image.open(out / f"{n}_overlay.png").load()
    assert not (out / "face.json").exists()


case("reconstruct/same_stem_two_formats", lambda c, out: ["reconstruct", str(c.f["twins"]), "--out", str(out), "--json"],
     code=0, after=_twins_apart)

# -- export, view, animate, personalize, evaluate person ----------------------------------------------------
A = lambda c: str(c.f["astro"])  # noqa: E731
for cmd, argv in {
    "export": lambda c, out, src: ["export", src, "--out", str(out)],
    "view": lambda c, out, src: ["view", src, "--out", str(out / "page.html")],
    "animate_source": lambda c, out, src: ["animate", "--source", src, "--driver", A(c), "--out", str(out)],
    "animate_driver": lambda c, out, src: ["animate", "--source", A(c), "--driver", src, "--out", str(out)],
    "personalize": lambda c, out, src: ["personalize", src, "--out", str(out / "p.facetwin"), "--no-progress", "--max-steps", "1"],
    "evaluate_person": lambda c, out, src: ["evaluate", "person", src, "--work", str(out / "work"), "--no-progress", "--max-steps", "1"],
}.items():
    case(f"{cmd}/missing_input", lambda c, out, argv=argv: argv(c, out, str(c.root / "nope.png")), says="not found")
    case(f"{cmd}/unreadable_input", lambda c, out, argv=argv: argv(c, out, str(c.f["text_jpg"])), says="notes.jpg")
case("view/garbage_glb", lambda c, out: ["view", str(c.f["garbage_glb"]), "--out", str(out / "page.html")], says="not a GLB")
case("view/garbage_npz", lambda c, out: ["view", str(c.f["garbage_npz"]), "--out", str(out / "page.html")], says="garbage.npz")
case("export/garbage_npz", lambda c, out: ["export", str(c.f["garbage_npz"]), "--out", str(out)], says="garbage.npz")

case("export/out_is_a_file", lambda c, out: ["export", A(c), "--out", str(out / "earlier.txt")], says="not a folder")
case("export/out_under_a_file", lambda c, out: ["export", A(c), "--out", str(out / "earlier.txt" / "x")], says="not a directory")
case("view/out_under_a_file", lambda c, out: ["view", A(c), "--out", str(out / "earlier.txt" / "page.html")], says="not a folder")
case("view/out_is_a_folder", lambda c, out: ["view", A(c), "--out", str(out / "sub.html")], says="sub.html",
     before=lambda c, out, mp: (out / "sub.html").mkdir())
case("animate/out_is_a_file", lambda c, out: ["animate", "--source", A(c), "--driver", A(c), "--out", str(out / "earlier.txt")],
     says="not a folder")
case("animate/out_under_a_file", lambda c, out: ["animate", "--source", A(c), "--driver", A(c), "--out",
                                                 str(out / "earlier.txt" / "x")], says="not a directory")
case("personalize/out_is_a_file", lambda c, out: ["personalize", A(c), "--out", str(out / "earlier.txt"), "--no-progress"],
     says=".facetwin")
case("personalize/out_is_a_folder", lambda c, out: ["personalize", A(c), "--out", str(out / "p.facetwin"), "--no-progress"],
     says="is a folder", before=lambda c, out, mp: (out / "p.facetwin").mkdir())
case("personalize/out_under_a_file", lambda c, out: ["personalize", A(c), "--out", str(out / "earlier.txt" / "p.facetwin"),
                                                     "--no-progress"], says="earlier.txt")
case("evaluate_person/photo_not_a_folder", lambda c, out: ["evaluate", "person", A(c), "--no-progress"], says="folder of photos")
case("evaluate_person/picture_under_a_file", lambda c, out: ["evaluate", "person", str(c.f["folder_in"]), "--picture",
                                                             str(out / "earlier.txt" / "p.png"), "--no-progress"], says="earlier.txt")
for cmd, argv, names in [
    ("export", lambda c, out: ["export", A(c), "--out", str(out)], ("astronaut.glb", "astronaut.obj")),
    ("view", lambda c, out: ["view", A(c), "--out", str(out / "page.html")], ("page.html",)),
    ("animate", lambda c, out: ["animate", "--source", A(c), "--driver", str(c.f["clip"]), "--out", str(out), "--max-frames", "2"],
     ("astronaut_by_astro_clip_animation.npz", "astronaut_by_astro_clip_side_by_side.mp4", "astronaut_by_astro_clip.glb")),
    ("personalize", lambda c, out: ["personalize", str(c.f["folder_in"]), "--out", str(out / "p.facetwin"), "--no-progress",
                                    "--work", str(out / "work"), "--max-steps", "1"], ("p.facetwin",)),
    ("evaluate_person", lambda c, out: ["evaluate", "person", str(c.f["twins"]), "--work", str(out / "work"), "--no-progress", "--max-steps", "1"],
     ()),
]:
    case(f"{cmd}/full_disk", argv, says="no space left on device",
         before=lambda c, out, mp, names=names: (_earlier(*names)(c, out, mp), break_writer(mp)), after=_intact(*names))
case("export/ctrl_c_in_a_write", lambda c, out: ["export", A(c), "--out", str(out)], code=130, says="interrupted",
     before=lambda c, out, mp: (_earlier("astronaut.glb", "astronaut.obj")(c, out, mp), break_writer(mp, 0, after=1)),
     after=_whole_files)

# -- option values (argparse types): one line, exit 2 ---------------------------------------------------------
for name, argv, says in [
    ("train_steps_abc", ["train", "coarse", "--steps", "abc"], "--steps: must be an integer >= 0, got 'abc'"),
    ("train_steps_negative", ["train", "coarse", "--steps", "-1"], "--steps: must be an integer >= 0"),
    ("evaluate_limit_negative", ["evaluate", "landmarks", "x", "--limit", "-1"], "--limit: must be an integer >= 0"),
    ("annotator_limit_zero", ["evaluate", "annotator", "x", "--limit", "0"], "--limit: must be a positive integer"),
    ("export_texture_size_zero", ["export", "x", "--out", "y", "--texture-size", "0"], "--texture-size: must be a positive"),
    ("personalize_minutes_nan", ["personalize", "x", "--out", "y.facetwin", "--minutes", "nan"], "--minutes: must be a positive"),
    ("personalize_fps_inf", ["personalize", "x", "--out", "y.facetwin", "--fps", "inf"], "--fps: must be a positive"),
    ("personalize_lr_negative", ["personalize", "x", "--out", "y.facetwin", "--lr", "-0.1"], "--lr: must be a positive"),
    ("person_train_fraction_nan", ["evaluate", "person", "x", "--train-fraction", "nan"], "--train-fraction: must be a number in [0, 1]"),
    ("prepare_video_fps_zero", ["prepare", "x", "--out", "y", "--video-fps", "0"], "--video-fps: must be a positive"),
    ("prepare_workers_zero", ["prepare", "x", "--out", "y", "--workers", "0"], "--workers: must be a positive"),
    ("reconstruct_missing_out", ["reconstruct", "x"], "required: --out"),
    ("unknown_option", ["reconstruct", "x", "--out", "y", "--colour"], "unrecognized arguments: --colour"),
    ("unknown_command", ["reconstrct"], "invalid choice"),
    ("evaluate_unknown_what", ["evaluate", "lightness", "x"], "invalid choice: 'lightness'"),
]:
    case(f"options/{name}", lambda c, out, argv=argv: argv, says=says)


def _help_printed(c, out, stdout):
    assert "usage: facetwin export" in stdout and "--texture-size" in stdout


case("options/help_still_works", lambda c, out: ["export", "--help"], code=0, after=_help_printed)


# -- the top level itself ---------------------------------------------------------------------------------------
def _raise(exc):
    def before(c, out, mp):
        from facetwin.cli import info

        def boom(args):
            raise exc
        mp.setattr(info, "run", boom)
    return before


def _log_holds_traceback(c, out, stdout):
    log_dir = LOG_DIR
    newest = max(log_dir.glob("error-*.log"), key=lambda p: p.stat().st_mtime)
    assert "Traceback" in newest.read_text() and "ZeroDivisionError" in newest.read_text()


case("main/unexpected_exception_goes_to_a_log", lambda c, out: ["info"], code=1, says="traceback in",
     before=_raise(ZeroDivisionError("division by zero")), after=_log_holds_traceback)
case("main/os_error_names_the_path", lambda c, out: ["info"], says="/some/file: no space left on device",
     before=_raise(OSError(errno.ENOSPC, "No space left on device", "/some/file")))
case("main/is_a_directory", lambda c, out: ["info"], says="/a/folder: is a directory",
     before=_raise(IsADirectoryError(errno.EISDIR, "Is a directory", "/a/folder")))
case("main/not_a_directory", lambda c, out: ["info"], says="/a/file/x: not a directory",
     before=_raise(NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/x")))
case("main/decoding_error", lambda c, out: ["info"], says="cannot decode",
     before=_raise(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")))
case("main/out_of_memory", lambda c, out: ["info"], says="out of memory", before=_raise(MemoryError()))
case("main/ctrl_c", lambda c, out: ["info"], code=130, says="interrupted", before=_raise(KeyboardInterrupt()))


def _nan_json(c, out, stdout):
    line = stdout.strip().splitlines()[-1]
    assert json.loads(line) == {"nme": None, "values": [1.0, None]}


def _nan_result(c, out, mp):
    from facetwin.cli import info

    mp.setattr(info, "run", lambda args: {"nme": float("nan"), "values": [1.0, float("inf")]})


case("main/json_never_has_nan", lambda c, out: ["info", "--json"], code=0, after=_nan_json, before=_nan_result)


# -- the runner ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", CASES, ids=[c.name for c in CASES])
def test_fault_case(spec: Case, corpus: Corpus, tmp_path, monkeypatch, capsys, request):
    for name in spec.fixtures:
        request.getfixturevalue(name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text(EARLIER)
    if spec.before:
        spec.before(corpus, out, monkeypatch)
    argv = spec.argv(corpus, out)
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    monkeypatch.undo()
    lines = _stderr_lines(captured.err)
    assert code == spec.code, (code, captured.err[-2000:])
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    if spec.code != 0:
        assert len(lines) == 1, lines
        assert lines[0].startswith("facetwin: "), lines
        assert spec.says in lines[0], lines[0]
    assert (out / "earlier.txt").read_text() == EARLIER
    assert not [p for p in out.rglob("*") if outputs.TMP_MARK in p.name]
    for marker in corpus.markers:
        assert not marker.exists(), f"a payload ran: {marker.name}"
    if spec.after:
        spec.after(corpus, out, captured.out)


# -- a few real processes (the installed entry point, a fresh interpreter) ----------------------------------------
SUBPROCESS_CASES = [
    ("flame_payload", lambda c, out: ["info", "--head-model", f"flame:{c.f['flame_payload']}"], 2, "refusing to load"),
    ("thin_png", lambda c, out: ["reconstruct", str(c.f["thin_png"]), "--out", str(out)], 2, "too thin"),
    ("demo_out_is_a_file", lambda c, out: ["demo", "--out", str(out / "earlier.txt")], 2, "not a folder"),
    ("steps_abc", lambda c, out: ["train", "coarse", "--steps", "abc"], 2, "--steps: must be an integer >= 0"),
]


def test_fault_cases_in_real_processes(corpus, tmp_path):
    """The same promise from the real entry point in fresh interpreters (started together)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    running = []
    for name, argv, code, says in SUBPROCESS_CASES:
        out = tmp_path / name / "out"
        out.mkdir(parents=True)
        (out / "earlier.txt").write_text(EARLIER)
        proc = subprocess.Popen([sys.executable, "-m", "facetwin", *argv(corpus, out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        running.append((name, code, says, out, proc))
    for name, code, says, out, proc in running:
        _, err = proc.communicate(timeout=300)
        lines = _stderr_lines(err)
        assert proc.returncode == code, (name, err[-2000:])
        assert "Traceback" not in err and len(lines) == 1 and says in lines[0], (name, err[-2000:])
        assert (out / "earlier.txt").read_text() == EARLIER
    assert not any(m.exists() for m in corpus.markers)


def test_corpus_size():
    """The issue asks for at least 60 generated bad inputs and faults."""
    assert len(CASES) + len(SUBPROCESS_CASES) >= 60
