"""Frame-to-frame noise of the projected landmarks in a video, with and without the landmark
refinement (docs/refine.md), beside the annotator's own points.

    python benchmarks/video_jitter.py ../shared/data/videos/liveportrait_d6.mp4 --frames 150

Jitter = mean second difference ‖L(t+1) − 2 L(t) + L(t−1)‖ of the 68 points over consecutive
frames / the outer-eye-corner distance (smooth motion has a small second difference, noise a large
one); also the NME of the mesh's landmarks against the annotator's points (the clip identity β, as
`reconstruct VIDEO` writes them). Results in BENCHMARKS.md ("Landmark accuracy: refinement").
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def landmarks(path: str, frames: int, refine: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mesh landmarks (T, 68, 2), the annotator's/track's points (T, 68, 2)); NaN where no face."""
    from facetwin.inference.reconstructor import FaceTwin
    from facetwin.inference.video import reconstruct_video

    mesh, points = [], []
    for r in reconstruct_video(FaceTwin(detail=None, refine=refine), path, max_frames=frames):
        nan = np.full((68, 2), np.nan)
        mesh.append(r.landmarks2d if r.ok else nan)
        points.append(r.track.label.landmarks if r.ok else nan)
    return np.asarray(mesh), np.asarray(points)


def jitter(x: np.ndarray, iod: np.ndarray) -> float:
    acc = x[2:] - 2 * x[1:-1] + x[:-2]
    return float(np.nanmean(np.linalg.norm(acc, axis=-1).mean(-1) / iod[1:-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    refined, points = landmarks(args.video, args.frames, True)
    encoder, _ = landmarks(args.video, args.frames, False)
    iod = np.linalg.norm(points[:, 45] - points[:, 36], axis=-1)

    def nme(x):
        return float(np.nanmean(np.linalg.norm(x - points, axis=-1).mean(-1) / iod))

    print(json.dumps({"video": args.video, "frames": len(points), "jitter_annotator": jitter(points, iod),
                      "jitter_encoder": jitter(encoder, iod), "jitter_refined": jitter(refined, iod),
                      "nme_vs_annotator_encoder": nme(encoder), "nme_vs_annotator_refined": nme(refined)}))


if __name__ == "__main__":
    main()
