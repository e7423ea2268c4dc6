"""Gradient norms on β of each coarse loss term at a checkpoint (which term steers identity?).

8 identity-labelled crops (LFW identities/train) of a prepared folder; the shipped config with the
head-composite identity loss at 64² (``head64``) and the face-region one at 128² (``face128``).

    python benchmarks/beta_gradients.py --data /work/prepared
"""
import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facetwin.losses.coarse import CoarseLossInputs, coarse_losses  # noqa: E402
from facetwin.networks.coarse_encoder import CoarseParams  # noqa: E402
from facetwin.training.coarse_data import ManifestCrops  # noqa: E402
from facetwin.training.coarse_stage import CoarseStage  # noqa: E402
from facetwin.training.config import CoarseConfig, load_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="prepared folder with identities/train crops")
    ap.add_argument("--checkpoint", default=str(Path(__file__).resolve().parents[1] / "facetwin/checkpoints/coarse_encoder.safetensors"))
    args = ap.parse_args()
    ds = ManifestCrops(args.data, 128, augment=False, quiet=True)
    idx = [i for i, k in enumerate(ds.keys) if k.startswith("train/") and "helen" not in k and "utkface" not in k][:8]
    batch = {k: torch.stack([ds[i][k] for i in idx]) for k in ("image", "landmarks", "skin_mask", "identity")}
    res = {}
    for name, over in [("head64", ["render_size=64"]), ("face128", ["render_size=128", "loss.perceptual_region=face"])]:
        cfg = load_config(CoarseConfig, "coarse", over + [f"model.init_checkpoint={args.checkpoint}", f"data.root={args.data}", "identity_images=0"])
        st = CoarseStage(cfg, dataset=ds)

        class Info:
            device = torch.device("cpu")
            is_main = True

        st.setup(Info())
        st.model.eval()
        params = st.model(st.coarse.encoder_input(batch["image"])).detach()
        beta = params.shape.clone().requires_grad_(True)
        p = CoarseParams(**{**params.as_dict(), "shape": beta})
        geo = st.coarse.geometry(p, 128)
        render, rmask, frag = st.render(geo)
        R = render.shape[-1]
        f = R / 128
        img = F.interpolate(batch["image"], size=(R, R), mode="bilinear", antialias=True, align_corners=False)
        skin = (F.interpolate(batch["skin_mask"], size=(R, R), mode="area") > 0.5).float()
        inp = CoarseLossInputs(landmarks2d=geo.landmarks2d * f, landmarks_normal_z=geo.landmarks_normal_z, vertices2d=geo.vertices2d * f,
                               silhouette=st.coarse.silhouette(geo), shape=beta, expression=p.expression, albedo=p.albedo, light=p.light,
                               image=img, gt_landmarks=batch["landmarks"] * f, render=render, render_mask=rmask, skin_mask=skin,
                               perceptual_mask=st.face_region(frag))
        _, terms = coarse_losses(inp, st.weights, identity_loss=st.identity_loss)
        res[name] = {t: float(torch.autograd.grad(terms[t], beta, retain_graph=True)[0].norm())
                     for t in ("identity", "photometric", "silhouette", "inner_landmarks", "shape_reg")}
        res[name]["identity_loss"] = float(terms["identity"].detach()) / st.weights.identity
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
