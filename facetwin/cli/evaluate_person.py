"""``facetwin evaluate person INPUT [--json]``: does personalising help on this person's unseen frames?

Protocol: a VIDEO is personalised on its first 70 % of frames (in time) and tested on the last
30 %; a FOLDER of photos of one person is tested leave-k-out (each fold personalises on all but
k photos and tests on those). On the test frames, for the base and the person model: 68-point
NME (boundary / inner / overall) against the labels of the automatic annotator (no human labels
exist for these clips; the annotator's own NME against HELEN-test's human labels is 0.0245),
the photometric error, and the identity spread across test frames (std of β; RMS of the neutral
shape in mm). The person model's output uses the person's β (``person``, trained with its
adapters; its spread is 0 by construction); the adapted encoder's own per-frame β is reported as
``person_per_frame_beta``. ``nme_reduction`` is the
relative reduction of the overall NME, base → person; ``personalize_seconds`` the time to
personalise (preparing its training frames + training, per fold); ``--minutes`` bounds the training.

Priors kept (``priors`` in the JSON, and ``occluded_nme_base/person``, ``turn_nme_base/person``):
the NME of both models on the test frames with a pasted occluder (the training augmentation's
occluder, scored against the un-occluded frame's labels) and on the test frames with a strong
head turn (|yaw| of the base model's pose above ``--turn-degrees``; none: null).

Likeness (``likeness``; ``render_distance_base/person``): dlib's face-descriptor distance between
each test frame and the textured render of its reconstruction composited onto it (the likeness
benchmark's renderer and descriptor; same-person threshold 0.6), and the β consistency over all
of the person's frames (std of the per-frame β of the base model and of the adapted encoder).

Details (``--detail``; ``details`` in the JSON): the detail MAE transferred too (its adapters,
layer norms and x_d with L_Tchr, in the last 30 % of the budget), and on the test frames the
photometric error of the coarse render and with details, base vs person.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from facetwin.cli.main import add_json_flag, nonnegative_int, positive_float, unit_float
from facetwin.cli.personalize import add_person_training_args, check_args, command_line, reliability_option
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("person", help="base vs person-specific model on a person's held-out frames",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("input", help="a video of one person, or a folder of photos of one person")
    add_person_training_args(p)
    p.set_defaults(minutes=2.5)
    p.add_argument("--train-fraction", type=unit_float, default=0.7, help="video: share of the frames (first in time) to personalise on (default 0.7)")
    p.add_argument("--leave-out", type=nonnegative_int, default=0, help="photos: k of leave-k-out (default: a quarter of the photos, at least 1)")
    p.add_argument("--folds", type=nonnegative_int, default=0, help="photos: run at most this many folds (default all)")
    p.add_argument("--contour", choices=["static", "silhouette"], default="static",
                   help="contour convention of the NME (as `evaluate landmarks`; default static)")
    p.add_argument("--work", default=None, help="keep prepared crops, runs and person files here (default: a temporary folder)")
    p.add_argument("--per-frame", action="store_true", help="include per-frame errors")
    p.add_argument("--picture", default=None, metavar="PNG",
                   help="write base vs person on test frames (columns: labels, base, person; first fold)")
    p.add_argument("--priors-picture", default=None, metavar="PNG",
                   help="write base vs person on an occluded test frame and on the most turned test frame (first fold)")
    p.add_argument("--turn-degrees", type=positive_float, default=None, metavar="DEG",
                   help="a strong head turn: |yaw| above this many degrees (by the base model; default 20)")
    p.add_argument("--no-likeness", action="store_true",
                   help="skip the likeness figures (dlib descriptor distance photo ↔ render on the test frames; β spread over all frames)")
    p.add_argument("--picture-background", choices=["photo", "none"], default="photo",
                   help="'none': meshes and points on grey, no pixel of the frames (for pictures that get published)")
    p.add_argument("--detail", default=None, metavar="MODEL",
                   help="also transfer the detail MAE ('default': the shipped one; off when left out, so the coarse part gets the "
                        "whole budget) and report its photometric error on the test frames, base vs person (`details`)")
    p.add_argument("--teacher", default=None, metavar="UNET", help="the detail MAE's UNet teacher (default: the shipped one)")
    p.add_argument("--no-progress", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run)


def detail_figures(detail_file, base_model, person_model, person, base_file, images, skin) -> dict:
    """Photometric errors (L1, skin) of the coarse render and with details on (B, 3, C, C) test crops:
    the base coarse model with the base MAE, and the person's coarse model (its adapters and β already
    applied) with the MAE carrying the person's detail adapters. Per-frame arrays."""
    import copy

    import torch

    from facetwin.models.detail import DetailModel, load_detail_model, resolve_detail_file
    from facetwin.models.person import attach_person_details

    base_d = load_detail_model(detail_file, coarse=base_model, coarse_file=base_file, albedo=True)[0]
    on_person = lambda net: DetailModel(person_model, net, base_d.map_size, base_d.image_size,  # noqa: E731
                                        albedo_model=base_d.albedo_model, highpass=base_d.highpass).eval()
    mixed = on_person(copy.deepcopy(base_d.network))  # the person's coarse, the base MAE
    person_d = on_person(copy.deepcopy(base_d.network))
    attach_person_details(person_d.network, person, resolve_detail_file(detail_file, "mae"))
    out = {}
    with torch.no_grad():
        for m, model in (("base", base_d), ("person", person_d), ("person_coarse_base_mae", mixed)):
            e = model.photometric_errors(images, skin)
            out[m] = {"coarse": e["coarse"].numpy(), "detail": e["detail"].numpy()}
    return out


def detail_summary(acc: dict) -> dict:
    """Means over all test frames of :func:`detail_figures`' arrays, and each model's detail gain."""
    res = {}
    for m in ("base", "person", "person_coarse_base_mae"):
        c = float(np.concatenate([a[m]["coarse"] for a in acc]).mean())
        d = float(np.concatenate([a[m]["detail"] for a in acc]).mean())
        res[m] = {"photometric_coarse": c, "photometric_detail": d, "gain": (c - d) / c}
    res["what"] = ("L1 photometric error on the test frames' skin: coarse render and with details; base = base coarse + base MAE, "
                   "person = person coarse (adapters, β) + the MAE with the person's detail adapters; person_coarse_base_mae = "
                   "the person's coarse with the base MAE (what the detail adapters add)")
    return res


def _folds(keys: list[str], args, is_video: bool):
    from facetwin.evaluation.person import leave_k_out, video_split

    if is_video:
        if len(keys) < 4:
            raise FacetwinError(f"only {len(keys)} usable frames in {args.input}: need at least 4 for a 70/30 split")
        if not 0.1 <= args.train_fraction <= 0.9:
            raise FacetwinError("--train-fraction must be within [0.1, 0.9]")
        return [video_split(keys, args.train_fraction)], "video: first {:.0%} of the frames (in time) personalise, last {:.0%} test".format(
            args.train_fraction, 1 - args.train_fraction)
    if len(keys) < 2:
        raise FacetwinError(f"only {len(keys)} usable photo(s) in {args.input}: leave-k-out needs at least 2")
    k = args.leave_out or max(1, len(keys) // 4)
    if k >= len(keys):
        raise FacetwinError(f"--leave-out {k} needs more than {k} usable photos (have {len(keys)})")
    folds = leave_k_out(keys, k)
    if args.folds:
        folds = folds[:args.folds]
    return folds, f"photos: leave-{k}-out ({len(folds)} fold(s) of {len(keys)} usable photos)"


def run(args) -> dict:
    from facetwin.data.io import is_video_path
    from facetwin.outputs import check_target

    # Bad input and an unwritable --picture fail before the training pipeline loads (minutes of work).
    check_args(args)
    src = Path(args.input)
    if not src.exists():
        raise FacetwinError(f"input not found: {src}")
    is_video = src.is_file() and is_video_path(src)
    if src.is_file() and not is_video:
        raise FacetwinError(f"{src.name}: give a video or a folder of photos of one person")
    for picture in (args.picture, args.priors_picture):
        if picture:
            check_target(picture)

    import torch
    from torch.utils.data import Subset

    from facetwin.data.prepared import PreparedDataset, load_manifest
    from facetwin.evaluation import person as ev
    from facetwin.models.coarse import load_coarse_model, resolve_model_file
    from facetwin.models.person import fix_shape, load_person
    from facetwin.training.person_stage import predict
    from facetwin.training.personalize import personalize, prepare_person

    base = resolve_model_file(args.model)
    detail = teacher = None
    if args.detail not in (None, "none", "off", ""):
        from facetwin.models.detail import read_detail_network

        detail, teacher = args.detail, args.teacher or "default"
        read_detail_network(detail, "mae"), read_detail_network(teacher, "unet")  # refused before any work
    torch.set_num_threads(args.threads)
    tmp = None
    if args.work:
        work = Path(args.work)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="facetwin-evaluate-person-")
        work = Path(tmp.name)
    try:
        t0 = time.time()
        prepare_person([str(src)], work / "prepared", max_frames=args.max_frames, fps=args.fps, progress=not args.no_progress)
        prepare_seconds = time.time() - t0
        keys = [r["key"] for r in load_manifest(work / "prepared")]
        folds, protocol = _folds(keys, args, is_video)
        from facetwin.models import files

        plain = PreparedDataset(work / "prepared", files.input_size(base), augment=False, preload=True)
        index = {k: i for i, k in enumerate(plain.keys)}
        per_model = {m: {"errors": [], "photometric": []} for m in ("base", "person", "person_per_frame_beta")}
        spreads = {"base": [], "person_per_frame_beta": []}
        priors = {"occluded": {"base": [], "person": []}, "turn": {"base": [], "person": [], "yaw_deg": []}}
        likeness = {"render_distance": {"base": [], "person": []}, "beta_all_frames": {"base": [], "person_per_frame_beta": []}}
        fold_rows, details = [], []
        turn_degrees = ev.TURN_DEGREES if args.turn_degrees is None else args.turn_degrees
        for f, (train_keys, test_keys) in enumerate(folds):
            out = work / f"fold{f}.facetwin"
            summary, stage = personalize(work / "prepared", out, base, keys=train_keys, minutes=args.minutes,
                                         max_steps=args.max_steps, adapter_width=args.adapter_width, batch_size=args.batch_size,
                                         threads=args.threads, seed=args.seed, work_dir=work / f"fold{f}", command=command_line(),
                                         progress=not args.no_progress, lr=args.lr, augment=args.augment, overrides=args.overrides,
                                         patience=args.patience, beta_lr_scale=args.beta_lr_scale, identity_on_beta=args.identity_on_beta,
                                         identity_on_appearance=args.identity_on_appearance, detail=detail, teacher=teacher,
                                         **reliability_option(args))
            test = Subset(plain, [index[k] for k in test_keys])
            base_model, person_model = load_coarse_model(base)[0], load_coarse_model(base)[0]
            base_enc, person_enc = base_model.encoder, person_model.encoder
            person = load_person(out, person_enc, base, fix_identity=False)
            preds = {"base": predict(stage, base_enc, test, contour=args.contour, render=True),
                     "person_per_frame_beta": predict(stage, person_enc, test, contour=args.contour, render=True)}
            if not args.no_likeness:  # β consistency over all of the person's frames (the adapted encoder's own β)
                every = Subset(plain, [index[k] for k in keys])
                for m, enc in (("base", base_enc), ("person_per_frame_beta", person_enc)):
                    likeness["beta_all_frames"][m].append(ev.identity_spread(predict(stage, enc, every)["beta"], stage.coarse.head_model))
            handle = fix_shape(person_enc, person.beta_mean)
            preds["person"] = predict(stage, person_enc, test, contour=args.contour, render=True)
            if not args.no_likeness:  # render likeness on the test frames (dlib descriptor distance photo ↔ render)
                from facetwin.evaluation.likeness import CROP_SIZE

                crops = PreparedDataset(work / "prepared", CROP_SIZE, augment=False)
                items = [crops[crops.keys.index(k)] for k in test_keys]
                images = torch.stack([it["image"] for it in items])
                lms = torch.stack([it["landmarks"] for it in items])
                for m, model in (("base", base_model), ("person", person_model)):
                    likeness["render_distance"][m].append(ev.render_distances(model, images, lms))
            if detail is not None:  # the detail part: base MAE vs the person's, each on its own coarse model
                from facetwin.models.detail import read_detail_network as _read

                size = int((_read(detail, "mae")[1].get("inference") or {}).get("image_size", 224))
                dcrops = PreparedDataset(work / "prepared", size, augment=False)
                items = [dcrops[dcrops.keys.index(k)] for k in test_keys]
                details.append(detail_figures(detail, base_model, person_model, person, base,
                                              torch.stack([it["image"] for it in items]), torch.stack([it["skin"] for it in items])))
            # priors kept: the same frames occluded; the frames of a strong turn (the base model's yaw)
            occluded = ev.Occluded(test, seed=args.seed)
            occ = {"base": predict(stage, base_enc, occluded, contour=args.contour),
                   "person": predict(stage, person_enc, occluded, contour=args.contour)}
            handle.remove()
            turns = ev.strong_turns(preds["base"]["yaw_deg"], turn_degrees)
            for m in ("base", "person"):
                priors["occluded"][m].append(ev.landmark_errors(occ[m]["landmarks"], occ[m]["labels"])["overall"])
                priors["turn"][m].append(ev.landmark_errors(preds[m]["landmarks"][turns], preds[m]["labels"][turns])["overall"]
                                         if len(turns) else np.zeros(0))
            priors["turn"]["yaw_deg"].append(preds["base"]["yaw_deg"][turns])
            from facetwin.outputs import write_image

            faces = stage.coarse.head_model.faces
            if args.picture and f == 0:
                write_image(args.picture, comparison_picture(test, preds, faces, photo=args.picture_background == "photo"))
            if args.priors_picture and f == 0:
                write_image(args.priors_picture, priors_picture(test, preds, occluded, occ, turns, faces,
                                                                photo=args.picture_background == "photo"))
            prep_share = prepare_seconds * len(train_keys) / max(1, len(keys))  # preparing its training frames
            row = {"fold": f, "train_frames": len(train_keys), "test_frames": len(test_keys), "steps": summary["steps"],
                   "stop_reason": summary["stop_reason"], "unreliable_dropped": summary["frames"].get("unreliable_dropped", 0),
                   "personalize_seconds": round(summary["seconds"] + prep_share, 1),
                   "train_seconds": summary["train_seconds"], "identity_on_beta": summary["identity_on_beta"],
                   "identity_on_appearance": summary["identity_on_appearance"]}
            for m, p in preds.items():
                e = ev.landmark_errors(p["landmarks"], p["labels"])
                per_model[m]["errors"].append(e)
                per_model[m]["photometric"].append(p.get("photometric", np.zeros(0)))
                row[f"{m}_nme_overall"] = float(e["overall"].mean())
                if m in spreads:
                    spreads[m].append(ev.identity_spread(p["beta"], stage.coarse.head_model))
            fold_rows.append(row)
        result = {"input": str(src), "kind": "video" if is_video else "photos", "protocol": protocol,
                  "labels": ev.LABELS, "annotator_nme_helen_test": ev.ANNOTATOR_NME_HELEN_TEST, "contour": args.contour,
                  "frames": {"usable": len(keys), "test": sum(r["test_frames"] for r in fold_rows)}}
        for m, acc in per_model.items():
            errors = {k: np.concatenate([e[k] for e in acc["errors"]]) for k in ("boundary", "inner", "overall")}
            row = ev.summarize(errors, np.concatenate(acc["photometric"]))
            if m in spreads and spreads[m]:
                row.update({k: float(np.mean([s[k] for s in spreads[m]])) for k in ("beta_std", "neutral_rms_mm")})
            elif m == "person":
                row.update({"beta_std": 0.0, "neutral_rms_mm": 0.0, "note": "one β for the person (trained with its adapters on its training frames)"})
            if args.per_frame:
                row["per_frame"] = {k: v.tolist() for k, v in errors.items()}
            result[m] = row
        result["priors"] = ev.priors_summary(priors, turn_degrees)
        if details:
            result["details"] = detail_summary(details)
        if not args.no_likeness:
            result["likeness"] = ev.likeness_summary(likeness)
            for m in ("base", "person"):
                result[f"render_distance_{m}"] = result["likeness"][f"render_distance_{m}"]
        for what in ("occluded", "turn"):
            for m in ("base", "person"):
                result[f"{what}_nme_{m}"] = result["priors"][what][f"nme_{m}"]
        result["nme_reduction"] = ev.nme_reduction(result["base"]["nme_overall"], result["person"]["nme_overall"])
        result["nme_reduction_per_frame_beta"] = ev.nme_reduction(result["base"]["nme_overall"], result["person_per_frame_beta"]["nme_overall"])
        result["personalize_seconds"] = float(np.mean([r["personalize_seconds"] for r in fold_rows]))
        result["train_seconds"] = float(np.mean([r["train_seconds"] for r in fold_rows]))
        result["prepare_seconds"] = round(prepare_seconds, 1)
        result["minutes_budget"] = args.minutes
        result["threads"] = args.threads
        result["folds"] = fold_rows
        if args.picture:
            result["picture"] = str(args.picture)
        if args.priors_picture:
            result["priors_picture"] = str(args.priors_picture)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def priors_picture(test, preds: dict, occluded, occ: dict, turns: np.ndarray, faces, size: int = 256,
                   photo: bool = True) -> np.ndarray:
    """Base vs person where the priors matter: the test frame whose occluder hides most of the
    annotator's points, and the most turned test frame (if any)."""
    from facetwin.evaluation.person import occluded_points

    most_hidden = int(np.argmax([occluded_points(occluded[i]) for i in range(len(occluded))]))
    rows = comparison_rows(occluded, occ, faces, [most_hidden], size, photo, label="occluded")
    if len(turns):
        most = int(turns[np.argmax(np.abs(preds["base"]["yaw_deg"][turns]))])
        rows += comparison_rows(test, preds, faces, [most], size, photo,
                                label=f"yaw {preds['base']['yaw_deg'][most]:+.0f} deg")
    from facetwin.rendering.visualize import image_grid

    return image_grid(rows, columns=3)


def comparison_picture(test, preds: dict, faces, rows: int = 3, size: int = 256, photo: bool = True) -> np.ndarray:
    """Rows of test frames (evenly spaced): the crop with the annotator's labels (green), the
    base model and the person model (shaded mesh over the crop, projected landmarks red).
    ``photo=False``: on grey instead of the frame."""
    from facetwin.rendering.visualize import image_grid

    n = len(test)
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(rows, n))})
    return image_grid(comparison_rows(test, preds, faces, picks, size, photo), columns=3)


def comparison_rows(test, preds: dict, faces, picks: list[int], size: int = 256, photo: bool = True,
                    label: str = "annotator labels") -> list[np.ndarray]:
    """Tiles (3 per frame in ``picks``): the frame with the labels, base, person."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageDraw

    from facetwin.rendering.visualize import draw_landmarks, shaded_overlay

    tiles = []
    for i in picks:
        img = test[i]["image"][None]
        S = img.shape[-1]
        f = size / S
        big = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)[0]
        if not photo:
            big = torch.full_like(big, 0.25)
            if "occluder" in test[i]:  # where the occluder is, as a flat patch (no pixel of the frame)
                occ = F.interpolate(test[i]["occluder"][None], size=(size, size), mode="nearest")[0]
                big = torch.where(occ > 0, torch.tensor([0.2, 0.35, 0.6])[:, None, None], big)
        labels = preds["base"]["labels"][i] * f
        row = [draw_landmarks(big, gt=labels, radius=2.0)]
        for m in ("base", "person"):
            p = preds[m]
            ov = shaded_overlay(big, torch.from_numpy(p["vertices"][i])[None], torch.as_tensor(faces),
                                torch.tensor([p["scale_px"][i] * f]), torch.from_numpy(p["translation_px"][i] * f)[None], opacity=0.5)
            row.append(draw_landmarks(ov, pred=p["landmarks"][i] * f, gt=labels, radius=2.0))
        for j, (tile, title) in enumerate(zip(row, (label, "base", "person"))):
            pil = Image.fromarray(np.ascontiguousarray(tile))
            d = ImageDraw.Draw(pil)
            nme = ""
            if j:
                from facetwin.evaluation.nme import per_image_nme

                e = per_image_nme(preds[title]["landmarks"][i], preds[title]["labels"][i])["overall"][0]
                nme = f"  NME {e:.4f}"
            d.rectangle([0, 0, size, 16], fill=(0, 0, 0))
            d.text((4, 2), title + nme, fill=(255, 255, 255))
            tiles.append(np.asarray(pil))
    return tiles
