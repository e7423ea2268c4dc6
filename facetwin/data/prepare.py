"""``facetwin prepare``: crops, 68-point labels, skin masks and metadata cached on disk.

Layout of ``OUT``::

    prepare.json                       settings of the run (a later run must use the same)
    manifest.shard-I-of-N.jsonl        one JSON line per prepared face crop
    skipped.shard-I-of-N.jsonl         one JSON line per skipped image / frame / file, with reason
    done.shard-I-of-N.jsonl            one line per finished source file (resume marker)
    items/<hh>/<hash>.jpg              the crop (JPEG quality 95)
    items/<hh>/<hash>_skin.png         its skin mask (0/255)

Resumable: a source listed in ``done`` is not processed again; files are written to a temporary
name then renamed, and manifest lines are flushed before the source is marked done (a source
interrupted half-way is simply redone; readers keep the last line per key). Shardable:
``--shard i/n`` keeps the sources whose key hash is ``i`` modulo ``n``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from facetwin.data.alignment import DEFAULT_SCALE, DEFAULT_SHIFT_UP, DEFAULT_SIZE, apply_affine, crop_square, crop_transform, warp
from facetwin.data.annotator import DEFAULT_MIN_FACE, DEFAULT_MIN_RELIABILITY, annotate
from facetwin.data.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, load_image
from facetwin.data.pts import read_pts
from facetwin.data.skin import skin_mask
from facetwin.data.video import iter_frames
from facetwin.errors import FacetwinError

IGNORED_EXTENSIONS = {".pts", ".json", ".jsonl", ".txt", ".md", ".csv", ".xml", ".npz", ".npy", ".mat"}
IDENTITY_MODES = ("auto", "folder", "video", "image")


@dataclass
class PrepareConfig:
    size: int = DEFAULT_SIZE
    scale: float = DEFAULT_SCALE
    shift_up: float = DEFAULT_SHIFT_UP
    faces: str = "main"  # main | all | single
    min_face: float = DEFAULT_MIN_FACE
    min_reliability: float = DEFAULT_MIN_RELIABILITY
    video_fps: float | None = 3.0
    every_n_frames: int | None = None
    max_frames: int | None = 150
    max_side: int = 2048
    jpeg_quality: int = 95

    # Settings that change what a prepared item is; a resumed run must agree on them.
    def signature(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ("size", "scale", "shift_up", "faces")}


@dataclass
class Source:
    path: str
    key: str  # stable id: "<root folder name>/<relative path>"
    kind: str  # image | video | other
    identity: str


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def parse_source_spec(spec: str, default_mode: str = "auto") -> tuple[Path, str]:
    """``PATH`` or ``PATH:MODE`` (MODE in auto|folder|video|image) → (path, mode)."""
    if not Path(spec).exists() and ":" in spec:
        path, mode = spec.rsplit(":", 1)
        if mode in IDENTITY_MODES:
            return Path(path), mode
    return Path(spec), default_mode


def collect_sources(specs: list[str], identity: str = "auto") -> list[Source]:
    """Image and video files under each spec (files or folders, walked in sorted order)."""
    sources: dict[str, Source] = {}
    for spec in specs:
        root, mode = parse_source_spec(spec, identity)
        if not root.exists():
            raise FacetwinError(f"no such file or folder: {root}")
        if root.is_file():
            files, base = [root], root.parent
        else:
            files = []
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
            base = root
        for f in files:
            ext = f.suffix.lower()
            if ext in IGNORED_EXTENSIONS:
                continue
            kind = "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else "other"
            rel = f.relative_to(base).as_posix()
            key = f"{base.resolve().name}/{rel}"
            if kind == "video" or mode == "video":
                ident = key.rsplit(".", 1)[0]
            elif mode == "folder":
                ident = key.rsplit("/", 1)[0]
            else:
                ident = key
            sources[key] = Source(path=str(f), key=key, kind=kind, identity=ident)
    return [sources[k] for k in sorted(sources)]


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    i, n = shard
    return int(_hash(key)[:12], 16) % n == i


def reason_category(reason: str) -> str:
    """'unreliable landmarks (score 0.12 < 0.35)' → 'unreliable landmarks'."""
    cat = reason.split(" (")[0]
    return cat.split(":")[0].strip()


# ----------------------------------------------------------------------------- one source


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _encode(ext: str, image: np.ndarray, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    if not ok:
        raise FacetwinError(f"could not encode {ext}")
    return buf.tobytes()


def prepare_frame(image: np.ndarray, load_scale: float, key: str, cfg: PrepareConfig, out_dir: Path, meta: dict, gt: np.ndarray | None = None):
    """Crops + labels for the faces of one image. ``image`` is the loaded (maybe downscaled) RGB
    array; ``load_scale`` maps original pixels to it. Returns (records, skips)."""
    labels, reason = annotate(image, faces=cfg.faces, min_face=cfg.min_face, min_reliability=cfg.min_reliability)
    if reason is not None and not any(l.ok for l in labels):
        return [], [{"key": key, **meta, "reason": reason}]
    records, skips = [], []
    for k, label in enumerate(labels):
        item_key = key if cfg.faces != "all" else f"{key}#face{k}"
        if not label.ok:
            skips.append({"key": item_key, **meta, "reason": label.reason})
            continue
        centre, side = crop_square(label.landmarks, cfg.scale, cfg.shift_up)
        A = crop_transform(centre, side, cfg.size)
        crop = warp(image, A, cfg.size)
        valid = warp(np.full(image.shape[:2], 255, np.uint8), A, cfg.size, interpolation=cv2.INTER_NEAREST)
        lm = apply_affine(A, label.landmarks)
        mask = skin_mask(crop, lm, valid)
        h = _hash(item_key)
        rel = f"items/{h[:2]}/{h[:20]}"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / f"{rel}.jpg", _encode(".jpg", crop[:, :, ::-1], (cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality)))
        _write_atomic(out_dir / f"{rel}_skin.png", _encode(".png", mask))
        # Transform from ORIGINAL file pixels (upright) to the crop.
        A_orig = A.copy()
        A_orig[:, :2] *= load_scale
        record = {
            "key": item_key,
            **meta,
            "image": f"{rel}.jpg",
            "skin": f"{rel}_skin.png",
            "size": cfg.size,
            "landmarks": np.round(lm, 3).tolist(),
            "transform": np.round(A_orig, 8).tolist(),
            "reliability": round(label.reliability, 4),
            "flip_error": round(label.flip_error, 5),
            "box_error": round(label.box_error, 5),
            "detector_score": round(label.detector_score, 4),
            "face_index": k,
            "n_faces": len(labels),
            "skin_fraction": round(float((mask > 0).mean()), 4),
        }
        if gt is not None and len(gt) == len(lm):
            gt_crop = apply_affine(A, gt * load_scale)
            # Only when the annotated face is this face (images may show several people).
            err = float(np.linalg.norm(gt_crop - lm, axis=1).mean() / max(np.linalg.norm(gt_crop[36] - gt_crop[45]), 1e-6))
            if err < 0.5:
                record["gt_landmarks"] = np.round(gt_crop, 3).tolist()
                record["gt_nme"] = round(err, 5)
        records.append(record)
    return records, skips


def process_source(src: Source, cfg: PrepareConfig, out_dir: Path):
    """Never raises: every failure becomes a skip with its reason."""
    meta = {"source": src.path, "identity": src.identity}
    try:
        if src.kind == "other":
            return [], [{"key": src.key, **meta, "reason": f"unsupported file type ({Path(src.path).suffix or 'no extension'})"}], 0
        if src.kind == "image":
            image, scale = load_image(src.path, max_side=cfg.max_side)
            gt = None
            pts = Path(src.path).with_suffix(".pts")
            if pts.is_file():
                try:
                    gt = read_pts(pts, n_points_expected=68)
                except FacetwinError:
                    gt = None
            meta = {**meta, "frame": None, "source_size": [round(image.shape[1] / scale), round(image.shape[0] / scale)]}
            recs, skips = prepare_frame(image, scale, src.key, cfg, out_dir, meta, gt)
            return recs, skips, 1
        records, skips, n = [], [], 0
        for index, t, frame, scale in iter_frames(src.path, cfg.every_n_frames, cfg.video_fps, cfg.max_frames, cfg.max_side):
            fmeta = {**meta, "frame": index, "time": round(t, 4), "source_size": [round(frame.shape[1] / scale), round(frame.shape[0] / scale)]}
            try:
                r, s = prepare_frame(frame, scale, f"{src.key}#f{index:06d}", cfg, out_dir, fmeta)
            except Exception as exc:  # one bad frame must not lose the clip
                r, s = [], [{"key": f"{src.key}#f{index:06d}", **fmeta, "reason": f"internal error: {type(exc).__name__}: {exc}"}]
            records += r
            skips += s
            n += 1
        return records, skips, n
    except FacetwinError as exc:
        return [], [{"key": src.key, **meta, "reason": str(exc).splitlines()[0]}], 0
    except MemoryError:
        return [], [{"key": src.key, **meta, "reason": "out of memory"}], 0
    except Exception as exc:  # a long run must survive anything a single file does
        return [], [{"key": src.key, **meta, "reason": f"internal error: {type(exc).__name__}: {exc}"}], 0


# ----------------------------------------------------------------------------- the run

_WORKER: dict = {}


def _init_worker(cfg, out_dir):
    cv2.setNumThreads(1)
    _WORKER["cfg"], _WORKER["out"] = cfg, out_dir


def _work(src: Source):
    return src, *process_source(src, _WORKER["cfg"], _WORKER["out"])


def read_jsonl(path: Path) -> list[dict]:
    """Lines of a JSONL file; a torn last line (interrupted write) is ignored."""
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class _Appender:
    def __init__(self, path: Path):
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        else:
            torn = False
        self.f = open(path, "a", encoding="utf-8")
        if torn:
            self.f.write("\n")

    def write(self, obj: dict) -> None:
        self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def shard_names(shard: tuple[int, int]) -> tuple[str, str, str]:
    tag = f"shard-{shard[0]}-of-{shard[1]}"
    return f"manifest.{tag}.jsonl", f"skipped.{tag}.jsonl", f"done.{tag}.jsonl"


def _check_settings(out_dir: Path, cfg: PrepareConfig) -> None:
    settings = out_dir / "prepare.json"
    if settings.is_file():
        try:
            old = json.loads(settings.read_text())
        except json.JSONDecodeError:
            old = None
        if old is not None and old.get("signature") != cfg.signature():
            raise FacetwinError(f"{out_dir} was prepared with {old.get('signature')}; this run asks for {cfg.signature()} (use another --out)")
        if old is not None:
            return
    _write_atomic(settings, json.dumps({"signature": cfg.signature(), "config": asdict(cfg)}, indent=1).encode())


def prepare(
    specs: list[str],
    out_dir,
    cfg: PrepareConfig | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    identity: str = "auto",
    progress: bool = True,
    limit: int | None = None,
    retry_skipped: bool = False,
) -> dict:
    """Prepare every image/video under ``specs`` into ``out_dir``; returns a summary dict.

    ``retry_skipped``: process again the sources that gave no item (e.g. after changing
    ``min_reliability`` or upgrading the annotator).
    """
    cfg = cfg or PrepareConfig()
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise FacetwinError(f"bad shard {i}/{n}: need 0 <= i < n")
    if cfg.faces not in ("main", "all", "single"):
        raise FacetwinError(f"--faces must be main, all or single, not {cfg.faces!r}")
    out_dir = Path(out_dir)
    sources = collect_sources(specs, identity)
    if not sources:
        raise FacetwinError(f"no images or videos found in {', '.join(specs)}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacetwinError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    _check_settings(out_dir, cfg)
    manifest_name, skipped_name, done_name = shard_names(shard)
    done = {d["key"] for d in read_jsonl(out_dir / done_name) if not (retry_skipped and d.get("items", 0) == 0)}
    mine = [s for s in sources if in_shard(s.key, shard)]
    todo = [s for s in mine if s.key not in done]
    if limit is not None:
        todo = todo[:limit]
    manifest, skipped, donef = (_Appender(out_dir / name) for name in (manifest_name, skipped_name, done_name))
    run = Counter()
    reasons = Counter()
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="file", desc=f"prepare {i}/{n}", dynamic_ncols=True)
    pool = None
    try:
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            # "spawn": forking a parent whose OpenCV/OpenMP thread pools are already running can
            # deadlock the children (seen when prepare runs inside a process that used cv2 before).
            pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(cfg, out_dir))
            # Videos first: they are the longest tasks; chunks keep the image IPC cheap.
            order = sorted(todo, key=lambda s: s.kind != "video")
            results = pool.imap_unordered(_work, order, chunksize=4)
        else:
            _init_worker(cfg, out_dir)
            results = (_work(s) for s in todo)
        for src, records, skips, n_frames in results:
            for r in records:
                manifest.write(r)
            for s in skips:
                skipped.write(s)
                reasons[reason_category(s["reason"])] += 1
            manifest.flush()
            skipped.flush()
            donef.write({"key": src.key, "items": len(records), "skipped": len(skips), "frames": n_frames})
            donef.flush()
            run["files"] += 1
            run["items"] += len(records)
            run["skipped"] += len(skips)
            run["images" if src.kind == "image" else "frames"] += n_frames if src.kind == "video" else 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(items=run["items"], skipped=run["skipped"])
    except KeyboardInterrupt:
        if pool is not None:
            pool.terminate()
            pool = None
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
        for f in (manifest, skipped, donef):
            f.close()
    elapsed = time.perf_counter() - t0
    total_items = {r["key"] for r in read_jsonl(out_dir / manifest_name)}
    all_skips = {s["key"]: s["reason"] for s in read_jsonl(out_dir / skipped_name)}
    total_reasons = Counter(reason_category(r) for k, r in all_skips.items() if k not in total_items)
    analysed = run["images"] + run["frames"]
    return {
        "out": str(out_dir),
        "shard": f"{i}/{n}",
        "sources_in_shard": len(mine),
        "already_done": len(mine) - len([s for s in mine if s.key not in done]),
        "processed_now": run["files"],
        "items_now": run["items"],
        "skipped_now": run["skipped"],
        "skip_reasons_now": dict(reasons.most_common()),
        "items_total": len(total_items),
        "skipped_total": sum(total_reasons.values()),
        "skip_reasons_total": dict(total_reasons.most_common()),
        "seconds": round(elapsed, 2),
        "images_per_second": round(analysed / elapsed, 2) if elapsed > 0 else None,
        "workers": workers,
    }
