"""Gradient norms on β of each coarse loss term at a model file (which term steers identity?).

8 identity-labelled crops (LFW identities/train) of a prepared folder; the shipped config with the
head-composite identity loss at 64² (``head64``) and the face-region one at 128² (``face128``).

    python benchmarks/beta_gradients.py --data /work/prepared
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facetwin.data.prepared import PreparedDataset  # noqa: E402
from facetwin.losses.coarse import coarse_losses  # noqa: E402
from facetwin.networks.coarse_encoder import CoarseParams  # noqa: E402
from facetwin.training.coarse_stage import CoarseConfig, CoarseStage  # noqa: E402
from facetwin.training.config import load_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="prepared folder with identities/train crops")
    ap.add_argument("--model", "--checkpoint", dest="model", default=str(Path(__file__).resolve().parents[1] / "facetwin/checkpoints/coarse_encoder.safetensors"))
    args = ap.parse_args()
    ds = PreparedDataset(args.data, 128)
    idx = [i for i, k in enumerate(ds.keys) if k.startswith("train/") and "helen" not in k and "utkface" not in k][:8]
    batch = {k: torch.stack([ds[i][k] for i in idx]) for k in ("image", "landmarks", "skin", "identity")}
    res = {}
    for name, over in [("head64", ["render.size=64"]), ("face128", ["render.size=128", "loss.perceptual_region=face"])]:
        cfg = load_config(CoarseConfig, "coarse", over + [f"model.init_checkpoint={args.model}", f"data.root={args.data}",
                                                          "render.identity_images=0"])
        st = CoarseStage(cfg, dataset=ds)

        class Info:
            device = torch.device("cpu")
            is_main = True

        st.setup(Info())
        st.model.eval()
        params = st.model(st.coarse.encoder_input(batch["image"])).detach()
        beta = params.shape.clone().requires_grad_(True)
        p = CoarseParams(**{**params.as_dict(), "shape": beta})
        inp, _ = st.coarse.loss_inputs(p, batch, st.weights)  # the training forward's loss inputs
        _, terms = coarse_losses(inp, st.weights, identity_loss=st.identity_loss)
        res[name] = {t: float(torch.autograd.grad(terms[t], beta, retain_graph=True)[0].norm())
                     for t in ("identity", "photometric", "silhouette", "inner_landmarks", "shape_reg")}
        res[name]["identity_loss"] = float(terms["identity"].detach()) / st.weights.identity
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
