"""``facetwin prepare SRC... --out DIR``: face crops, 68-point labels, skin masks, metadata."""

from __future__ import annotations

from facetwin.cli.main import add_json_flag, nonnegative_float, nonnegative_int, positive_float, positive_int, unit_float
from facetwin.errors import FacetwinError


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise FacetwinError(f"--shard wants i/n (e.g. 0/4), not {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise FacetwinError(f"--shard {text}: need 0 <= i < n")
    return i, n


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="Detect, crop, label (68 points) and mask the faces of image folders and videos.",
        description=(
            "Detect, crop, label (68 points, iBUG convention) and skin-mask every face image and video "
            "under SRC. SRC may end in ':folder' (a sub-folder per person), ':image' (every image its "
            "own identity) or ':video'; videos are always one identity per clip. Resumable: rerun the "
            "same command to continue an interrupted run."
        ),
    )
    p.add_argument("sources", nargs="+", metavar="SRC", help="image/video files or folders (optionally SRC:folder|image|video)")
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    p.add_argument("--size", type=positive_int, default=224, help="crop side in pixels (default 224)")
    p.add_argument("--scale", type=positive_float, default=1.6, help="crop side / landmark box side (default 1.6)")
    p.add_argument("--faces", choices=["main", "all", "single"], default="main",
                   help="main: the largest face with reliable labels (default); all: every face; single: skip images with several faces")
    p.add_argument("--identity", choices=["auto", "folder", "video", "image"], default="auto",
                   help="identity of images without a SRC:MODE suffix (auto = one per image; videos = one per clip)")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel processes (default 1)")
    p.add_argument("--shard", default="0/1", help="process only shard i of n (i/n, default 0/1)")
    p.add_argument("--video-fps", type=positive_float, default=3.0, help="frames per second sampled from videos (default 3)")
    p.add_argument("--every-n-frames", type=positive_int, default=None, help="sample every N-th video frame (overrides --video-fps)")
    p.add_argument("--max-frames", type=nonnegative_int, default=150, help="at most this many frames per video (default 150; 0 = all)")
    p.add_argument("--min-face", type=nonnegative_float, default=40.0, help="skip faces smaller than this (landmark box, px)")
    p.add_argument("--min-reliability", type=unit_float, default=0.4, help="skip faces whose label reliability is lower (0..1)")
    p.add_argument("--limit", type=positive_int, default=None, help="process at most this many files now (testing/benchmarks)")
    p.add_argument("--retry-skipped", action="store_true", help="process again the files that gave no face crop in an earlier run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    from facetwin.data.prepare import PrepareConfig, prepare

    if args.size < 16 or args.size > 2048:
        raise FacetwinError("--size must be between 16 and 2048")
    if args.scale <= 0.5 or args.scale > 10:
        raise FacetwinError("--scale must be in (0.5, 10]")
    if args.workers < 1:
        raise FacetwinError("--workers must be >= 1")
    cfg = PrepareConfig(
        size=args.size,
        scale=args.scale,
        faces=args.faces,
        min_face=args.min_face,
        min_reliability=args.min_reliability,
        video_fps=args.video_fps,
        every_n_frames=args.every_n_frames,
        max_frames=args.max_frames or None,
    )
    return prepare(args.sources, args.out, cfg, workers=args.workers, shard=_shard(args.shard),
                   identity=args.identity, progress=not args.no_progress, limit=args.limit,
                   retry_skipped=args.retry_skipped)
