"""``facetwin evaluate annotator DIR``: NME of the automatic 68-point labels against .pts files."""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag, positive_int, unit_float
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "annotator",
        help="NME of the automatic 68-point labels on an annotated folder (.jpg + .pts).",
        description="Detect and label every annotated image of DIR and report the NME against its .pts "
        "(outer-eye-corner normalised; boundary = points 1-17, inner = 18-68, overall), plus how many "
        "faces the reliability filter rejected and why. NME is computed on the accepted faces.",
    )
    p.add_argument("folder", metavar="DIR", help="folder with image + .pts pairs (e.g. ../shared/data/eval/helen-test)")
    p.add_argument("--min-reliability", type=unit_float, default=0.4, help="reliability threshold (default 0.4)")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N images")
    p.add_argument("--no-progress", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run)


def evaluate_annotator(folder, min_reliability: float = 0.4, limit: int | None = None, progress: bool = True) -> dict:
    import time
    from collections import Counter

    import numpy as np

    from facetwin.data.annotator import annotate
    from facetwin.data.datasets import annotated_pairs
    from facetwin.data.io import load_image
    from facetwin.data.prepare import reason_category
    from facetwin.data.pts import read_pts
    from facetwin.evaluation.nme import ced, failure_rate, per_image_nme

    pairs = annotated_pairs(folder)
    if limit:
        pairs = pairs[:limit]
    preds, gts, reasons, all_preds, all_gts = [], [], Counter(), [], []
    it = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, unit="img", desc="annotator", dynamic_ncols=True)
    t0 = time.perf_counter()
    for image_path, pts_path in it:
        try:
            image, scale = load_image(image_path)
            gt = read_pts(pts_path, n_points_expected=68) * scale
        except FacetwinError as exc:
            reasons[reason_category(str(exc))] += 1
            continue
        labels, reason = annotate(image, faces="all", min_reliability=min_reliability)
        if not labels:
            reasons[reason_category(reason)] += 1
            continue
        # The annotated face is the detection nearest to the ground truth (images may show several).
        centre = gt.mean(0)
        label = min(labels, key=lambda l: np.linalg.norm(l.landmarks.mean(0) - centre))
        if np.linalg.norm(label.landmarks.mean(0) - centre) > 0.5 * np.ptp(gt[:, 0]):
            reasons["no face (annotated face not detected)"] += 1
            continue
        all_preds.append(label.landmarks / scale)
        all_gts.append(gt / scale)
        if not label.ok:
            reasons[reason_category(label.reason)] += 1
            continue
        preds.append(label.landmarks / scale)
        gts.append(gt / scale)
    seconds = time.perf_counter() - t0
    if not preds:
        raise FacetwinError(f"no face could be labelled in {folder}")
    err = per_image_nme(np.stack(preds), np.stack(gts))
    err_all = per_image_nme(np.stack(all_preds), np.stack(all_gts))
    _, _, auc = ced(err["overall"])
    return {
        "folder": str(folder),
        "n_images": len(pairs),
        "n_evaluated": len(preds),
        "n_filtered": sum(reasons.values()),
        "filtered_reasons": dict(reasons.most_common()),
        "nme_boundary": float(err["boundary"].mean()),
        "nme_inner": float(err["inner"].mean()),
        "nme_overall": float(err["overall"].mean()),
        "nme_overall_median": float(np.median(err["overall"])),
        "auc_0.08": auc,
        "failure_rate_0.08": failure_rate(err["overall"]),
        "nme_overall_unfiltered": float(err_all["overall"].mean()),
        "n_unfiltered": len(all_preds),
        "normalisation": "outer eye corners (points 37, 46)",
        "seconds_per_image": seconds / max(len(pairs), 1),
    }


def run(args) -> dict:
    folder = Path(args.folder)
    if not folder.is_dir():
        raise FacetwinError(f"no such folder: {folder}")
    return evaluate_annotator(folder, args.min_reliability, args.limit, not args.no_progress)
