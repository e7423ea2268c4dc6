"""Personalise the base coarse model on one person's photos and/or videos (paper section 3.4).

Two steps, both resumable:

1. :func:`prepare_person` — the project's own ``prepare`` (detection, 68-point labels from the
   automatic annotator, crops, skin masks) on every input; a video's frames are sampled evenly
   over the whole clip (at most ``max_frames`` per clip, at most ``fps`` per second).
2. :func:`personalize` — :class:`~facetwin.training.person_stage.PersonStage` under the generic
   :class:`~facetwin.training.engine.Trainer` (resume, torchrun, metrics.jsonl) within a
   wall-clock budget, then the person file (:mod:`facetwin.models.person`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError

DETAIL_SHARE = 0.3      # of the training budget, for the detail part (when a detail model is given)
VAL_FRACTION = 0.1      # held-out share of the person's frames (early stopping)
MIN_FRAMES_FOR_VAL = 5  # fewer frames: no held-out split (stop after NO_SPLIT_STEPS)
# without a held-out split nothing tells when to stop, and the whole budget on 1 photo overfits it
# (BENCHMARKS.md): stop at the step early stopping kept on the photo sets that had one (median of 17 runs)
NO_SPLIT_STEPS = 30
MIN_RELIABILITY = 0.0   # train only on frames whose automatic labels are at least this reliable
MIN_KEPT = 3            # ... unless that leaves fewer frames than this: then the most reliable ones


def reliable(reliability: list[float], threshold: float, min_kept: int = MIN_KEPT) -> list[int]:
    """Indices of the frames whose label reliability (the annotator's score, 0–1) is at least
    ``threshold``; if fewer than ``min_kept`` (or all, if fewer frames) pass, the most reliable
    ``min_kept`` instead. Order kept."""
    r = np.asarray(reliability, np.float64)
    keep = np.flatnonzero(r >= threshold)
    need = min(min_kept, len(r))
    if len(keep) < need:
        keep = np.sort(np.argsort(-r, kind="stable")[:need])
    return keep.tolist()


def prepare_person(inputs: list[str], out_dir: Path, max_frames: int = 240, fps: float = 15.0, size: int = 224,
                   progress: bool = True) -> dict:
    """Prepared crops of every face in ``inputs`` (files or folders of photos and videos) in
    ``out_dir``; videos sampled over the whole clip. Returns prepare's summaries (resumable:
    a second call reuses what is there)."""
    from facetwin.data.io import VIDEO_EXTENSIONS
    from facetwin.data.prepare import PrepareConfig, collect_sources, prepare
    from facetwin.data.video import video_info

    sources = collect_sources(list(inputs))
    if not sources:
        raise FacetwinError(f"no images or videos in {', '.join(inputs)}")
    images = [s.path for s in sources if s.kind == "image"]
    videos = [s.path for s in sources if s.kind == "video" or Path(s.path).suffix.lower() in VIDEO_EXTENSIONS]
    runs = []
    if images:
        runs.append(prepare(images, out_dir, PrepareConfig(size=size), progress=progress))
    for v in videos:
        info = video_info(v)
        n = info.n_frames or int(round(info.fps * 60))
        step = max(1, math.ceil(n / max_frames), int(round(info.fps / fps)) if info.fps > 0 else 1)
        runs.append(prepare([v], out_dir, PrepareConfig(size=size, every_n_frames=step, max_frames=max_frames), progress=progress))
    if not images and not videos:
        raise FacetwinError(f"no images or videos in {', '.join(inputs)}")
    if not any(r["items_total"] for r in runs):  # say why nothing is usable, file by file
        from facetwin.data.prepare import read_jsonl

        skips = [f"{Path(str(s.get('key', '?'))).name}: {s.get('reason', '?')}"
                 for f in sorted(Path(out_dir).glob("skipped.*.jsonl")) for s in read_jsonl(f)]
        raise FacetwinError(f"no usable face in {', '.join(map(str, inputs))}"
                            + (f" ({'; '.join(skips[:3])}{'; ...' if len(skips) > 3 else ''})" if skips else ""))
    return {"runs": runs, "images": len(images), "videos": len(videos)}


def base_config(meta: dict, base_path: Path, prepared: Path, run_dir: Path):
    """The coarse config of a person run: the base model's own training config (its losses and
    weights, render settings; either config layout, :func:`~facetwin.training.coarse_stage.config_from_model_file`)
    with person-transfer optimisation (Adam at a constant rate, no weight decay)."""
    from facetwin.training.coarse_stage import config_from_model_file

    train = dict(meta.get("train_config") or {})
    try:
        cfg = config_from_model_file(train)
    except FacetwinError:  # a training config this code no longer reads: keep its losses and render settings
        try:
            cfg = config_from_model_file({k: train[k] for k in ("loss", "render", "render_size", "identity_images",
                                                                "landmark_only_steps") if k in train})
        except FacetwinError as exc:
            raise FacetwinError(f"{base_path.name}: its training config cannot be read ({exc})") from None
    enc = meta["encoder"]
    m = cfg.model
    m.size, m.image_size, m.hidden = enc["size"], enc["image_size"], enc["hidden"]
    m.face_fraction, m.centre_y, m.predict_jaw = enc["face_fraction"], enc.get("centre_y", 0.5), enc.get("predict_jaw", True)
    m.n_shape, m.n_expr = enc["layout"]["n_shape"], enc["layout"]["n_expr"]
    m.head_model = meta.get("head_model", m.head_model)
    m.pretrained, m.init_checkpoint = "", str(base_path)
    d = cfg.data
    d.root, d.identity_batches, d.oversample = str(prepared), False, {}
    d.crop_size = int(meta["inference"]["input_size"])  # 224 with an identity head: its face chip at native resolution
    cfg.render.landmark_only_steps = 0
    cfg.eval.helen = ""
    o = cfg.optim
    o.lr, o.weight_decay, o.warmup_steps, o.schedule, o.grad_clip = 3e-3, 0.0, 10, "constant", 1.0
    r = cfg.run
    r.out_dir, r.checkpoint_every, r.keep_last, r.log_every, r.image_every, r.workers, r.eval_every = \
        str(run_dir), 200, 1, 5, 0, 0, 10
    return cfg


def split_held_out(keys: list[str], seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, held-out) indices of the person's frames. A single clip holds out its last 10 %
    (in time: neighbouring frames would be near copies of training frames); photos, a random 10 %."""
    n = len(keys)
    n_val = int(round(VAL_FRACTION * n)) if n >= MIN_FRAMES_FOR_VAL else 0
    if n_val == 0:
        return list(range(n)), []
    n_val = max(1, n_val)
    from facetwin.data.prepared import is_video_frame

    sources = {k.split("#")[0] for k in keys}
    if len(sources) == 1 and is_video_frame(keys[0]):
        order = sorted(range(n), key=lambda i: keys[i])
    else:
        order = np.random.default_rng(seed).permutation(n).tolist()
    val = sorted(order[-n_val:])
    return sorted(set(range(n)) - set(val)), val


def personalize(prepared: Path, out: Path, base_path: Path, keys: list[str] | None = None,
                minutes: float = 3.0, started: float | None = None, max_steps: int = 2000, adapter_width: int = 32,
                batch_size: int = 8, threads: int = 1, seed: int = 0, work_dir: Path | None = None, resume: bool = False,
                command: str = "", progress: bool = True, lr: float = 3e-3, augment: bool = False,
                min_reliability: float = MIN_RELIABILITY, detail: str | Path | None = None, teacher: str | Path | None = None,
                detail_share: float = DETAIL_SHARE, overrides: list[str] | None = None,
                patience: int | None = None, beta_lr_scale: float = 30.0,
                identity_on_beta: float | None = None, identity_on_appearance: float | None = None) -> tuple[dict, object]:
    """Train the person's adapters (on the base encoder file ``base_path``) on the prepared crops in ``prepared`` (only ``keys`` when
    given) and write the person file ``out``. ``started``: ``time.time()`` when the user's budget
    began (default now); the training stops at ``started + 60 · minutes`` less a reserve for
    the final pass. With ``detail`` (a detail MAE model file) and ``teacher`` (its UNet teacher's),
    the detail part follows in the last ``detail_share`` of the budget (:func:`personalize_details`)
    and the person file carries it too. ``overrides``: ``key=value`` changes of the coarse config
    (``loss.identity=5``: the same syntax as ``facetwin train --set``), applied last.
    ``identity_on_beta`` / ``identity_on_appearance``: None takes :func:`~facetwin.training.person_stage.identity_weights`'
    default (the photo-set weights unless a training frame comes from a video).
    Returns (summary, the stage) — the summary only on the main process."""
    from facetwin.data.prepared import PreparedDataset
    from facetwin.models import files
    from facetwin.models.files import file_sha256
    from facetwin.models.person import person_state, write_person
    from facetwin.training.config import to_dict
    from facetwin.training.engine import Trainer
    from facetwin.training.person_stage import PersonSettings, PersonStage, identity_weights, person_meta

    started = time.time() if started is None else started
    base_path = Path(base_path)
    meta = files.upgrade(files.read_metadata(base_path))
    if files.parse_format(meta.get("format", ""))[0] != files.COARSE_ENCODER or "encoder" not in meta:
        raise FacetwinError(f"{base_path.name} is not a facetwin coarse-encoder model file (format {meta.get('format')!r})")
    work_dir = Path(work_dir) if work_dir else Path(str(out) + ".work")
    cfg = base_config(meta, base_path, Path(prepared), work_dir / "run")
    cfg.run.steps, cfg.run.batch_size, cfg.run.threads, cfg.run.seed = max_steps, batch_size, threads, seed
    cfg.optim.lr = lr
    # L_id (dlib's ResNet, weight as the base model) on 2 frames of each batch: it costs more
    # than the rest of the step together on a CPU (the base model's training did the same on 8 of 16)
    cfg.render.identity_images = min(cfg.render.identity_images or batch_size, 2)
    if overrides:
        from facetwin.training.coarse_stage import CoarseConfig
        from facetwin.training.config import apply_overrides, from_dict

        cfg = from_dict(CoarseConfig, apply_overrides(to_dict(cfg), overrides))
    crop = cfg.data.crop_size
    cfg.data.augment = cfg.data.augment and augment
    plain = PreparedDataset(prepared, crop, augment=False, preload=True)
    train_aug = plain if not cfg.data.augment else PreparedDataset(prepared, crop, augment=True, preload=True,
                                                                   fill_border=cfg.data.fill_border)
    for ds in {id(train_aug): train_aug, id(plain): plain}.values():
        ds.identity_of[:] = 0  # one person: every pair of frames shares β (L_sc)
        ds.identities = ds.identities[:1]
    index = {k: i for i, k in enumerate(plain.keys)}
    if keys is not None:
        missing = [k for k in keys if k not in index]
        if missing:
            raise FacetwinError(f"{len(missing)} frame(s) not prepared in {prepared}, e.g. {missing[0]}")
        chosen = [index[k] for k in keys]
    else:
        chosen = list(range(len(plain.keys)))
    if not chosen:
        raise FacetwinError("no face found in the inputs (nothing to personalise on)")
    n_given = len(chosen)
    # frames whose automatic labels are unreliable (strong turns, blur: the annotator's own score)
    # teach the adapters the annotator's mistakes; the test frames are not filtered
    chosen = [chosen[i] for i in reliable([plain.records[i].get("reliability", 1.0) for i in chosen], min_reliability)]
    tr, va = split_held_out([plain.keys[i] for i in chosen], seed)
    if not va:
        import warnings

        cfg.run.steps = min(cfg.run.steps, NO_SPLIT_STEPS)
        warnings.warn(f"only {len(chosen)} frame(s): no held-out split for early stopping, so training stops after "
                      f"{cfg.run.steps} steps; with 1–2 photos the person model can still get worse on new photos "
                      f"(measured in BENCHMARKS.md) — give it {MIN_FRAMES_FOR_VAL} or more")
    train_idx, val_idx = [chosen[i] for i in tr], [chosen[i] for i in va]
    from torch.utils.data import Subset

    reserve = 5.0 + 0.05 * len(chosen)  # the identity pass and the file
    deadline = started + 60.0 * minutes - reserve
    if deadline <= time.time() + 5:
        raise FacetwinError(f"--minutes {minutes:g} leaves no time to train")
    if detail is not None:
        if not teacher:
            raise FacetwinError("--detail needs --teacher: the detail part trains with the teacher loss L_Tchr (Eq. 5)")
        from facetwin.models.detail import read_detail_network, resolve_detail_file

        detail, teacher = resolve_detail_file(detail, "mae"), resolve_detail_file(teacher, "unet")
        read_detail_network(detail, "mae"), read_detail_network(teacher, "unet")  # refuse a wrong file before training
        detail_deadline, deadline = deadline, time.time() + (1 - detail_share) * (deadline - time.time())
    identity_on_beta, identity_on_appearance = identity_weights([plain.keys[i] for i in chosen], identity_on_beta,
                                                                identity_on_appearance)
    settings = PersonSettings(adapter_width=adapter_width, beta_lr_scale=beta_lr_scale, identity_on_beta=identity_on_beta,
                              identity_on_appearance=identity_on_appearance)
    if patience is not None:
        settings.patience = patience
    stage = PersonStage(cfg, settings, Subset(train_aug, train_idx), Subset(plain, val_idx) if val_idx else None,
                        identity_set=Subset(plain, chosen), deadline=deadline, progress=progress)
    config = to_dict(cfg)
    config["person"] = {"adapter_width": adapter_width, "minutes": minutes, "min_reliability": min_reliability,
                        "beta_lr_scale": beta_lr_scale, "identity_on_beta": identity_on_beta,
                        "identity_on_appearance": identity_on_appearance}
    config["command"] = command
    # the run folder (``work_dir/run``) belongs to this person file: a new personalisation replaces
    # the run in it (the prepared frames beside it are kept); ``resume`` continues it instead
    trainer = Trainer(stage, cfg.run, cfg.optim, config_dict=config, resume="auto" if resume else None, quiet=True,
                      overwrite=not resume)
    t_train = time.time()
    try:
        result = trainer.train()
    finally:
        stage.close()
    if trainer.info.rank != 0:
        return {}, stage
    stage.use_best()
    ident = stage.identity()
    detail_state, extra = None, {}
    if detail is not None:
        detail_state, extra["detail"] = personalize_details(stage, prepared, chosen, detail, teacher, ident["beta_mean"],
                                                            deadline=detail_deadline, work_dir=work_dir, adapter_width=adapter_width,
                                                            threads=threads, seed=seed, max_steps=max_steps, progress=progress)
    seconds = time.time() - started
    frames = {"train": len(train_idx), "held_out": len(val_idx), "total": len(chosen), "unreliable_dropped": n_given - len(chosen)}
    pmeta = person_meta(base_path, stage.coarse.head_model.name, adapter_width, config, step=result["step"], seconds=seconds,
                        frames=frames, neutral_rms_mm=ident["neutral_rms_mm"], command=command,
                        extra={"best_step": stage.best_step, "held_out_nme": None if math.isinf(stage.best_val) else stage.best_val,
                               "stop_reason": stage.stop_reason, "sources": sorted({plain.keys[i].split("#")[0] for i in chosen}),
                               # the config keeps the base model's run.bf16; this is what the engine ran
                               "precision": result.get("precision"), **extra})
    path = write_person(out, person_state(stage.model), ident["beta_mean"], ident["beta_std"], pmeta, detail_state=detail_state)
    size, base_size = path.stat().st_size, base_path.stat().st_size
    last = result.get("last") or {}
    summary = {
        "out": str(path), "bytes": size, "fraction_of_base": round(size / base_size, 4), "dtype": "float16",
        "base": base_path.name, "base_sha256": file_sha256(base_path)[:16], "frames": frames,
        "person_parameters": stage.n_person_parameters, "steps": result["step"], "best_step": stage.best_step,
        "held_out_nme": pmeta["held_out_nme"], "stop_reason": stage.stop_reason, "loss": last.get("loss"),
        "train_nme": last.get("nme"), "train_seconds": round(time.time() - t_train, 1), "seconds": round(seconds, 1),
        "precision": pmeta["precision"],
        "beta_std_mean": float(ident["beta_std"].mean()), "neutral_rms_mm": ident["neutral_rms_mm"],
        "identity_on_beta": identity_on_beta, "identity_on_appearance": identity_on_appearance,
        "work_dir": str(work_dir), "metrics": str(work_dir / "run" / "metrics.jsonl"),
    }
    if "detail" in extra:
        summary["detail"] = extra["detail"]
    return summary, stage


def personalize_details(stage, prepared: Path, items: list[int], detail_file: Path, teacher_file: Path, beta,
                        deadline: float, work_dir: Path, adapter_width: int = 32, threads: int = 1, seed: int = 0,
                        batch_size: int = 4, max_steps: int = 2000, lr: float = 1e-3, progress: bool = True) -> tuple[dict, dict]:
    """The detail part of person transfer (:class:`~facetwin.training.person_detail_stage.PersonDetailStage`)
    on the prepared crops ``items`` of ``prepared``, on the person's coarse model (``stage``'s encoder
    with the person's ``beta`` (n_shape,) fixed), until ``deadline`` (``time.time()`` seconds). Returns (the
    detail MAE's person parameters, the person file's ``detail`` header entry). lr 1e-3: the paper's
    rate for person transfer (the teacher's target is fixed, a step is cheap to take small)."""
    from torch.utils.data import Subset

    from facetwin.data.prepared import PreparedDataset
    from facetwin.models.detail import read_detail_network
    from facetwin.models.files import file_sha256
    from facetwin.models.person import fix_shape
    from facetwin.training.config import OptimConfig, RunConfig, to_dict
    from facetwin.training.detail_stage import DetailConfig
    from facetwin.training.engine import Trainer
    from facetwin.training.person_detail_stage import PersonDetailStage

    cfg = DetailConfig()
    cfg.run = RunConfig(out_dir=str(work_dir / "detail_run"), steps=max_steps, batch_size=batch_size, seed=seed, threads=threads,
                        bf16=False, checkpoint_every=200, keep_last=1, log_every=5, image_every=0, workers=0, eval_every=0)
    cfg.optim = OptimConfig(lr=lr, weight_decay=0.0, warmup_steps=5, schedule="constant", grad_clip=1.0)
    handle = fix_shape(stage.model, beta)  # the person's coarse model: one β, its adapters
    t0 = time.time()
    try:
        image_size = int((read_detail_network(detail_file, "mae")[1].get("inference") or {}).get("image_size", cfg.model.image_size))
        crops = Subset(PreparedDataset(prepared, image_size, augment=False, preload=True), items)
        dstage = PersonDetailStage(cfg, detail_file, teacher_file, crops, stage.coarse, adapter_width, deadline)
        result = Trainer(dstage, cfg.run, cfg.optim, config_dict=to_dict(cfg), quiet=not progress, overwrite=True).train()
    finally:
        handle.remove()
    last = result.get("last") or {}
    info = {"file": Path(detail_file).name, "sha256": file_sha256(detail_file), "adapter_width": int(adapter_width),
            "teacher": {"file": Path(teacher_file).name, "sha256": file_sha256(teacher_file)},
            "loss": "L_Tchr (Eq. 5)", "steps": int(result["step"]), "seconds": round(time.time() - t0, 1),
            "teacher_loss": last.get("teacher"), "parameters": sum(p.numel() for p in dstage.person_params)}
    return dstage.person_state(), info


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def wait_for(path: Path, timeout: float = 3600.0) -> None:
    """Other torchrun processes wait here while process 0 prepares the frames."""
    t0 = time.time()
    while not Path(path).exists():
        if time.time() - t0 > timeout:
            raise FacetwinError(f"timed out waiting for {path}")
        time.sleep(1.0)
