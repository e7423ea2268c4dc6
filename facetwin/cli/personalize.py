"""``facetwin personalize INPUT... --out NAME.facetwin``: a person-specific model in minutes.

INPUT: photos and/or videos of ONE person (files or folders; several allowed). The faces are
prepared with the project's own ``prepare`` (a video's frames sampled over the whole clip), then
only person-specific parameters are trained on the frozen base model: an adapter in every ViT
block and the layer norms, with the base model's losses (L_C, Eq. 2) and the shape-consistency
term across all frames. A small held-out split stops training early; ``--minutes`` is the
wall-clock budget of the training (preparing the frames comes before it and is reported). The person file holds only those parameters (fp16) and the person's β.
Use it with ``--person NAME.facetwin`` on ``reconstruct`` and ``evaluate landmarks``, or
``FaceTwin(person="NAME.facetwin")``.

Under ``torchrun --nproc_per_node N -m facetwin personalize ...`` the training runs DDP.
Work folder (``--work``, default ``OUT.work``): ``prepared/`` (the frames; a re-run reuses them
and prepares only new inputs) and ``run/`` (checkpoints, metrics.jsonl). A re-run with the same
``--out`` trains anew and replaces ``run/``; ``--resume`` continues the run in it from its last
checkpoint instead.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from pathlib import Path

from facetwin.cli.main import add_json_flag, nonnegative_float, positive_float, positive_int, unit_float
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("personalize", help="train a person-specific model (adapters) on one person's photos/videos",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photos, videos or folders of them, all of one person")
    p.add_argument("--out", required=True, help="the person file to write (NAME.facetwin)")
    add_person_training_args(p)
    p.add_argument("--detail", default=None, metavar="MODEL",
                   help="the detail MAE to transfer too (section 3.4's detail part: its adapters, layer norms and x_d, "
                        "with L_Tchr, in the last 30%% of --minutes): a detail MAE model file, 'default' (the shipped one: "
                        "what happens when the option is left out and both shipped detail files exist) or 'none'")
    p.add_argument("--teacher", default=None, metavar="UNET",
                   help="the detail MAE's UNet teacher model file (default: the shipped teacher)")
    p.add_argument("--work", default=None, help="work folder: prepared crops, checkpoints, metrics.jsonl (default OUT.work)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the work folder from its last checkpoint (default: a re-run trains anew, reusing the prepared frames)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def add_person_training_args(p) -> None:
    """Options shared by ``personalize`` and ``evaluate person``."""
    p.add_argument("--model", "--checkpoint", dest="model", default="default",
                   help="base model file: 'default' (shipped), a coarse-encoder .safetensors or a training run folder")
    p.add_argument("--minutes", type=positive_float, default=3.0, help="wall-clock budget of the training, after the frames are prepared (default 3)")
    p.add_argument("--max-steps", type=positive_int, default=2000, help="at most this many training steps (default 2000)")
    p.add_argument("--max-frames", type=positive_int, default=240, help="frames sampled per video, evenly over the clip (default 240)")
    p.add_argument("--fps", type=positive_float, default=15.0, help="at most this many frames per second of video (default 15)")
    p.add_argument("--adapter-width", type=positive_int, default=32, help="bottleneck width of each adapter (default 32)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="frames per step (default 8)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads (default 1: on a CPU shared with other work 2 threads were 15x slower per step, measured)")
    p.add_argument("--lr", type=positive_float, default=3e-3,
                   help="Adam learning rate of the person parameters (default 3e-3: a CPU budget is ~100 steps; the paper's 1e-3 is for thousands)")
    p.add_argument("--beta-lr-scale", type=positive_float, default=30.0,
                   help="the person's β learns at this multiple of --lr (default 30: at 1 it barely moved in a budget's ~200 steps, measured)")
    p.add_argument("--identity-on-beta", type=nonnegative_float, default=None, metavar="W",
                   help="also L_id with weight W in a pass where only the person's β learns (likeness through the identity; "
                        "default 1 for photos only, 0 when a video is among the inputs: measured in BENCHMARKS.md)")
    p.add_argument("--identity-on-appearance", type=nonnegative_float, default=None, metavar="W",
                   help="also L_id with weight W in a pass where only albedo and light learn (likeness without moving the geometry; "
                        "default 5 for photos only, 0 when a video is among the inputs)")
    p.add_argument("--augment", action="store_true",
                   help="augment the frames as the base training does (jitter, mirror, colour, occluders); off by default: it slowed fitting, measured")
    p.add_argument("--min-reliability", type=unit_float, default=None, metavar="R",
                   help="train only on frames whose automatic labels have at least this reliability (the annotator's score, 0-1; "
                        "default 0: every prepared frame, i.e. prepare's 0.4); the test frames of `evaluate person` are not filtered")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=positive_int, default=None,
                   help="held-out evaluations (every 10 steps) without gain before stopping early (default 6); "
                        "the best parameters seen are kept either way")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change the person run's coarse config, e.g. --set loss.identity=5 (repeatable; "
                        "default: the base model's own losses and weights)")


def check_args(args) -> None:
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        raise FacetwinError("--minutes must be > 0")
    for name in ("max_steps", "max_frames", "adapter_width", "batch_size", "threads"):
        if getattr(args, name) < 1:
            raise FacetwinError(f"--{name.replace('_', '-')} must be >= 1")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise FacetwinError("--lr must be > 0")
    if not (math.isfinite(args.fps) and args.fps > 0):
        raise FacetwinError("--fps must be > 0")


def detail_options(args) -> tuple[str | None, str | None]:
    """(detail MAE, its teacher) to transfer, or (None, None): left out, ``--detail`` means the
    shipped MAE and teacher when both are installed (coarse only otherwise); 'none' turns it off."""
    from facetwin.models.detail import DEFAULT_MODEL_FILE, DEFAULT_TEACHER_FILE

    if args.detail in ("none", "off", ""):
        if args.teacher:
            raise FacetwinError("--teacher is for the detail part, but --detail is 'none'")
        return None, None
    if args.detail is None and not args.teacher:
        shipped = DEFAULT_MODEL_FILE.is_file() and DEFAULT_TEACHER_FILE.is_file()
        return ("default", "default") if shipped else (None, None)
    return args.detail or "default", args.teacher or "default"


def reliability_option(args) -> dict:
    """``min_reliability`` for :func:`~facetwin.training.personalize.personalize` if given (else its default)."""
    return {} if args.min_reliability is None else {"min_reliability": args.min_reliability}


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["facetwin"] + sys.argv[1:])


def run(args) -> dict | None:
    from facetwin.models.coarse import resolve_model_file
    from facetwin.training.personalize import is_main_process, personalize, prepare_person, wait_for

    started = time.time()
    check_args(args)
    out = Path(args.out)
    if out.suffix != ".facetwin":
        raise FacetwinError(f"--out should end in .facetwin (got {out.name})")
    if out.exists() and out.is_dir():
        raise FacetwinError(f"--out {out} is a folder")
    for i in args.inputs:
        if not Path(i).exists():
            raise FacetwinError(f"input not found: {i}")
    base = resolve_model_file(args.model)
    detail, teacher = detail_options(args)
    if detail:
        from facetwin.models.detail import read_detail_network

        read_detail_network(detail, "mae"), read_detail_network(teacher, "unet")  # refused before any work
    work = Path(args.work) if args.work else Path(str(out) + ".work")
    prepared = work / "prepared"
    if is_main_process():
        prep = prepare_person(args.inputs, prepared, max_frames=args.max_frames, fps=args.fps, progress=not args.no_progress)
        (prepared / ".ready").write_text("ok\n")
    else:
        wait_for(prepared / ".ready")
        prep = {}
    prepare_seconds = time.time() - started
    summary, _ = personalize(prepared, out, base, minutes=args.minutes, max_steps=args.max_steps,
                             adapter_width=args.adapter_width, batch_size=args.batch_size, threads=args.threads,
                             seed=args.seed, work_dir=work, resume=args.resume, command=command_line(),
                             progress=not args.no_progress, lr=args.lr, augment=args.augment, detail=detail,
                             teacher=teacher, overrides=args.overrides, patience=args.patience,
                             beta_lr_scale=args.beta_lr_scale, identity_on_beta=args.identity_on_beta,
                             identity_on_appearance=args.identity_on_appearance,
                             **reliability_option(args))
    if not is_main_process():
        return None
    summary["prepare"] = {k: prep.get(k) for k in ("images", "videos")}
    summary["prepare_seconds"] = round(prepare_seconds, 1)
    summary["seconds_total"] = round(time.time() - started, 1)
    return summary
