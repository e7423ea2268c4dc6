"""Build the open linear albedo model (facetwin/appearance/assets/open_albedo_model.npz).

    python scripts/build_albedo_model.py                     # full build from real annotated faces
    python scripts/build_albedo_model.py --fallback          # colour-only model (no head model needed)

Full build (see docs/albedo.md):
 1. HELEN-train images with their 68-point .pts labels (../shared/data/train/helen-train) are
    cropped around the face and the open head model is fitted to the labels
    (facetwin.headmodel.fitting.fit_landmarks).
 2. Each crop is unwrapped into the head model's UV space through the fitted mesh with the
    renderer's unwrap and its visibility mask (facetwin.rendering.UVMapper).
 3. Shading is divided out: a 9×3 SH lighting is fitted per image by least squares on the
    visible skin texels with a constant albedo; colour / (shading / mean shading) is the
    albedo estimate (it keeps the face's average colour).
 4. Texels are pooled to the model resolution (64² by default) with their visible fraction as
    weight; unseen texels are filled from their mirror partner (half weight); a robust EM-PCA
    (missing data + outlier rejection) gives the mean and the components; texels never seen
    are filled smoothly (Laplace) from the face. The components are scaled so α ~ N(0, I).
Only derived statistics are written, never an image.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facetwin.appearance.albedo import ALBEDO_FILE, AlbedoModel, uniform_albedo_model, uv_layout_fingerprint
from facetwin.appearance.statistics import (
    fit_sh_constant_albedo,
    harmonic_fill,
    relative_shading,
    robust_em_pca,
    texel_mirror_map,
)
from facetwin.paths import shared_data_dir

# UV regions whose texels are skin for the lighting fit (eyes, lips, mouth are not).
NOT_SKIN = ("lips", "eyes", "eyeballs", "eye_sockets", "mouth_interior", "ears", "neck")


def list_faces(root: Path, limit: int | None) -> list[tuple[Path, Path]]:
    pairs = []
    for pts in sorted(glob.glob(str(root / "*.pts"))):
        imgs = [p for p in glob.glob(pts[:-4] + ".*") if not p.endswith(".pts")]
        if imgs:
            pairs.append((Path(imgs[0]), Path(pts)))
    return pairs[:limit] if limit else pairs


def utkface_faces(root: Path, per_group: int, seed: int = 0) -> list[tuple[Path, np.ndarray]]:
    """UTKFace crops balanced over its five ethnicity labels, with automatic dlib 68-point
    landmarks (faces without a confident detection are skipped)."""
    from PIL import Image

    from facetwin.data.detection import detect_faces
    from facetwin.data.models import shape_predictor_68
    import dlib

    rng = np.random.default_rng(seed)
    groups: dict[str, list[Path]] = {}
    for p in sorted(root.glob("*.jpg")):
        parts = p.name.split("_")
        if len(parts) >= 4 and parts[2] in "01234" and 18 <= int(parts[0]) <= 80:
            groups.setdefault(parts[2], []).append(p)
    out = []
    for key in sorted(groups):
        paths = groups[key]
        for i in rng.permutation(len(paths)):
            if sum(1 for q, _ in out if q.name.split("_")[2] == key) >= per_group:
                break
            img = np.asarray(Image.open(paths[i]).convert("RGB"))
            dets = detect_faces(img)
            if not dets or dets[0].score < 0.3:
                continue
            x0, y0, x1, y1 = dets[0].box
            shape = shape_predictor_68()(img, dlib.rectangle(int(x0), int(y0), int(x1) - 1, int(y1) - 1))
            # dlib points have integer pixel centres; +0.5 gives the project convention
            lm = np.array([[q.x + 0.5, q.y + 0.5] for q in shape.parts()], np.float64)
            out.append((paths[i], lm))
    return out


def load_crop(image_path: Path, pts_path: Path | np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop around the labels (with forehead), resized to size², and its landmarks.

    The crop is RGBA: alpha marks pixels that come from the photo (not the black outside)."""
    from PIL import Image

    from facetwin.data.pts import read_pts

    img = Image.open(image_path).convert("RGB")
    img.putalpha(255)
    lm = read_pts(pts_path) if not isinstance(pts_path, np.ndarray) else pts_path
    lo, hi = lm.min(0), lm.max(0)
    centre = (lo + hi) / 2 - np.array([0.0, 0.12 * (hi[1] - lo[1])])
    half = 0.85 * max(hi[0] - lo[0], hi[1] - lo[1])
    k = 2 * half / size  # input pixels per crop pixel; the affine map may leave the image (black)
    crop = img.transform((size, size), Image.AFFINE, (k, 0, centre[0] - half, 0, k, centre[1] - half), Image.BILINEAR)
    return np.asarray(crop), (lm - (centre - half)) / k


class Unwrapper:
    """Fits the head model to labelled crops and unwraps their albedo estimate into UV space."""

    def __init__(self, head, uv_size: int = 256, crop: int = 256, fit_iterations: int = 300, rigid_iterations: int = 100):
        from facetwin.rendering.uv import UVMapper

        self.head = head
        self.data = head.data
        self.crop = crop
        self.fit_kwargs = dict(iterations=fit_iterations, rigid_iterations=rigid_iterations, yaw_starts_deg=(-50.0, -25.0, 0.0, 25.0, 50.0))
        self.uvm = UVMapper.from_head_model(self.data, uv_size)
        masks = {k: torch.as_tensor(v, dtype=torch.float32)[:, None] for k, v in self.data.masks.items()}
        not_skin = sum(masks[k] for k in NOT_SKIN if k in masks)
        self.skin_region = (self.uvm.attribute_map(1.0 - (not_skin > 0).float()) > 0.99)[:, 0]  # (1, S, S)
        self.covered = self.uvm.mask[:, 0] > 0

    def __call__(self, crops: np.ndarray, landmarks: np.ndarray) -> dict[str, torch.Tensor]:
        from facetwin.data.skin import geometric_face_mask, skin_mask
        from facetwin.geometry.camera import orthographic_screen_vertices
        from facetwin.geometry.mesh import vertex_normals
        from facetwin.headmodel.fitting import fit_landmarks

        B = len(crops)
        lm = torch.as_tensor(landmarks, dtype=torch.float32)
        fit = fit_landmarks(self.head, lm, **self.fit_kwargs)
        with torch.no_grad():
            out = self.head(shape=fit.shape, expression=fit.expression, pose=fit.pose)
            screen = orthographic_screen_vertices(out.vertices, fit.scale, fit.translation2d)
            rgba = torch.as_tensor(crops, dtype=torch.float32).permute(0, 3, 1, 2) / 255
            img, valid = rgba[:, :3], rgba[:, 3:4]
            crops = np.ascontiguousarray(crops[..., :3])
            skin = np.stack([skin_mask(c, l, valid=a[..., 3]) > 0 for c, l, a in zip(crops, landmarks, rgba.permute(0, 2, 3, 1).numpy())])
            face = np.stack([geometric_face_mask(l, c.shape[:2])[0] > 0 for c, l in zip(crops, landmarks)])
            aux = torch.as_tensor(np.stack([skin, face], 1), dtype=torch.float32)
            tex, vis = self.uvm.unwrap(torch.cat([img, aux, valid], 1), screen)
            colour, skin_uv, face_uv = tex[:, :3], tex[:, 3:4], tex[:, 4:5]
            vis = vis * (tex[:, 5:6] > 0.99)  # texels seen inside the photo
            normals = torch.nn.functional.normalize(self.uvm.attribute_map(vertex_normals(out.vertices, self.head.faces)), dim=1)
            vis = vis * (normals[:, 2:3] > 0.15)  # grazing texels are blurred and badly shaded
            flat = lambda t: t.flatten(2).transpose(1, 2)  # (B, C, S, S) → (B, S², C)  # noqa: E731
            w_light = (vis * (skin_uv > 0.5) * self.skin_region[None]).flatten(1)
            light = fit_sh_constant_albedo(flat(colour).double(), flat(normals).double(), w_light.double())
            shading = relative_shading(flat(normals).double(), light, w_light.double()).float()  # (B, S², 3)
            S = self.uvm.size
            shading = shading.transpose(1, 2).reshape(B, 3, S, S)
            ok = vis * (shading.min(1, keepdim=True).values > 0.3)
            albedo = torch.where(ok > 0, colour / shading.clamp_min(0.3), torch.zeros_like(colour))
        return {
            "albedo": albedo, "weight": ok * face_uv.clamp(0, 1), "visible": ok, "light": light.float(),
            "nme": fit.nme(lm), "skin_weight": w_light.reshape(B, 1, S, S),
        }


def pool(albedo: torch.Tensor, weight: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted average pooling to size²: (B, 3, S, S), (B, 1, S, S) → same at size."""
    f = albedo.shape[-1] // size
    w = F.avg_pool2d(weight, f)
    a = F.avg_pool2d(albedo * weight, f) / w.clamp_min(1e-6)
    return a, w


def build_full(args) -> AlbedoModel:
    from facetwin.headmodel import load_head_model

    torch.set_num_threads(args.threads)
    head = load_head_model(args.head_model)
    root = Path(args.data) if args.data else shared_data_dir() / "train" / "helen-train"
    faces = list_faces(root, args.limit)
    if not faces:
        sys.exit(f"no labelled faces found in {root}")
    n_helen = len(faces)
    if args.utkface:
        faces = faces + utkface_faces(shared_data_dir() / "train" / "utkface", args.utkface)
    R = args.resolution
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():  # per-face UV statistics of an earlier run
        z = np.load(cache)
        A, Wt, nme = z["albedo"], z["weight"], z["nme"]
    else:
        unwrap = Unwrapper(head, uv_size=args.uv_unwrap, crop=args.crop, fit_iterations=args.fit_iterations)
        A, Wt, nmes = [], [], []
        t0 = time.time()
        for i in range(0, len(faces), args.batch):
            batch = [load_crop(p, q, args.crop) for p, q in faces[i:i + args.batch]]
            res = unwrap(np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch]))
            a, w = pool(res["albedo"], res["weight"], R)
            A.append(a)
            Wt.append(w)
            nmes.append(res["nme"])
            print(f"{i + len(batch)}/{len(faces)} faces, {time.time() - t0:.0f} s", file=sys.stderr)
        A = torch.cat(A).numpy().astype(np.float32)  # (N, 3, R, R)
        Wt = torch.cat(Wt).numpy()[:, 0].astype(np.float32)  # (N, R, R)
        nme = torch.cat(nmes).numpy()
        if cache is not None:  # a private intermediate (derived from the images): keep it out of the repo
            np.savez(cache, albedo=A, weight=Wt, nme=nme)
    print(f"fit NME: median {np.median(nme):.4f}, 90% {np.percentile(nme, 90):.4f}", file=sys.stderr)
    keep = nme < args.max_nme  # badly fitted faces would smear the statistics
    A, Wt = A[keep], Wt[keep]

    # texels: covered by the UV layout at the model resolution
    from facetwin.rendering.uv import UVMapper

    uvm = UVMapper.from_head_model(head.data, R)
    covered = uvm.mask[0, 0].numpy() > 0
    pos = uvm.attribute_map(torch.as_tensor(head.data.v_template))[0].numpy()  # (3, R, R)
    cov_idx = np.flatnonzero(covered.reshape(-1))
    mirror, mirror_ok = texel_mirror_map(pos.reshape(3, -1).T[cov_idx])

    N = len(A)
    X = A.reshape(N, 3, -1)[:, :, cov_idx]  # (N, 3, T)
    W = Wt.reshape(N, -1)[:, cov_idx]       # (N, T)
    W = np.where(W > args.min_fraction, W, 0.0)
    # mirror fill: unseen texels take their partner's value at half weight
    Wm = np.where(mirror_ok, W[:, mirror], 0.0)
    fill = (W == 0) & (Wm > 0)
    X = np.where(fill[:, None], X[:, :, mirror], X)
    W = np.where(fill, 0.5 * Wm, W)
    seen = (W > 0).sum(0) >= max(3, int(args.min_seen * N))  # texels observed in enough faces
    T = int(seen.sum())
    Xs = X[:, :, seen].transpose(0, 2, 1).reshape(N, -1)  # channel-minor (N, T·3)
    Ws = np.repeat(W[:, seen], 3, axis=1)
    print(f"robust PCA of {N} faces × {T} texels", file=sys.stderr)
    pca = robust_em_pca(Xs, Ws, k=args.components, iterations=args.em_iterations, group=3, verbose=True)

    # back to (3, R, R) maps; texels never seen are filled smoothly from the seen ones
    def to_map(vec: np.ndarray) -> np.ndarray:
        m = np.zeros((3, R * R))
        full = np.zeros((3, len(cov_idx)))
        full[:, seen] = vec.reshape(T, 3).T
        m[:, cov_idx] = full
        return m.reshape(3, R, R)

    known = np.zeros(R * R, bool)
    known[cov_idx[seen]] = True
    known = known.reshape(R, R)
    maps = np.concatenate([to_map(pca.mean)] + [to_map(c) for c in pca.components], 0)  # ((K+1)·3, R, R)
    print("filling unseen texels", file=sys.stderr)
    maps = harmonic_fill(maps, known, iterations=args.fill_iterations).reshape(-1, 3, R, R)
    mean, comps = maps[0], maps[1:]
    # re-orthonormalise after the fill (the filled texels add energy); keep the std of the seen part
    flatc = comps.reshape(len(comps), -1)
    q, r = np.linalg.qr(flatc.T)
    q = q * np.sign(np.diag(r))[None]
    comps = q.T.reshape(comps.shape)
    meta = {
        "source": (f"{N} real faces: {n_helen} HELEN-train with manual 68-point labels"
                   + (f" + {len(faces) - n_helen} UTKFace (balanced over its 5 ethnicity labels, dlib landmarks)" if args.utkface else "")
                   + ", research-use data sets; derived statistics only, no image stored"),
        "build_command": "python scripts/build_albedo_model.py " + " ".join(sys.argv[1:]),
        "head_model": head.name,
        "uv_layout": uv_layout_fingerprint(head.data),
        "uv_resolution": str(R),
        "explained_variance": json.dumps([round(float(x), 4) for x in pca.explained]),
        "seen_texel_fraction": f"{T / len(cov_idx):.3f}",
        "faces_used": str(N),
        "faces_rejected_fit": str(int((~keep).sum())),
        "median_fit_nme": f"{float(np.median(nme)):.4f}",
        "licence": "derived from research-use images (HELEN, UTKFace): research use; see docs/albedo.md",
    }
    return AlbedoModel(mean.astype(np.float32), comps.astype(np.float32), pca.std.astype(np.float32), 256, meta)


def build_fallback(args) -> AlbedoModel:
    """Colour-only model: PCA of the median skin colour of real faces (HELEN-train)."""
    from PIL import Image

    from facetwin.data.pts import read_pts
    from facetwin.data.skin import skin_mask

    root = Path(args.data) if args.data else shared_data_dir() / "train" / "helen-train"
    cols = []
    for img_path, pts in list_faces(root, args.limit):
        img = np.asarray(Image.open(img_path).convert("RGB"))
        m = skin_mask(img, read_pts(pts)) > 0
        if m.sum() >= 100:
            cols.append(np.median(img[m].astype(np.float64) / 255, 0))
    cols = np.array(cols)
    mean = cols.mean(0)
    U, S, Vt = np.linalg.svd(cols - mean, full_matrices=False)
    std = S / np.sqrt(len(cols) - 1)
    meta = {
        "source": f"median skin colour of {len(cols)} HELEN-train faces (research-use data set): derived statistics only",
        "build_command": "python scripts/build_albedo_model.py " + " ".join(sys.argv[1:]),
        "kind": "uniform colour (fallback)",
        "licence": "derived from research-use images (HELEN): research use; see docs/albedo.md",
    }
    return uniform_albedo_model(mean, Vt, std, resolution=8, meta=meta)


def evaluate_held_out(model: AlbedoModel, root: Path, limit: int, head_spec: str = "open", batch: int = 64) -> dict:
    """Unwrap held-out labelled faces the same way and fit α by weighted least squares: the RMS
    error (in [0, 1] colour units) of the mean alone and of the model on the seen face texels."""
    from facetwin.headmodel import load_head_model

    head = load_head_model(head_spec)
    unwrap = Unwrapper(head)
    faces = list_faces(root, limit)
    R = model.resolution
    err_mean = err_model = total = 0.0
    for i in range(0, len(faces), batch):
        crops = [load_crop(p, q, 256) for p, q in faces[i:i + batch]]
        res = unwrap(np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops]))
        a, w = pool(res["albedo"], res["weight"], R)
        w = (w > 0.25).float() * w
        alpha = model.project(a, w)
        recon = model.mean + (alpha @ model.scaled_basis).reshape(-1, 3, R, R)
        err_mean += float((w * (a - model.mean) ** 2).sum())
        err_model += float((w * (a - recon) ** 2).sum())
        total += float(3 * w.sum())
    return {"faces": len(faces), "rms_mean_only": (err_mean / total) ** 0.5, "rms_model": (err_model / total) ** 0.5,
            "explained_held_out": 1 - err_model / err_mean}


def write_figures(model: AlbedoModel, out_dir: Path, head_spec: str = "open", n_show: int = 4, size: int = 160) -> list[Path]:
    """docs/images/albedo_components.png (rendered mean ± 2σ of the leading components) and
    docs/images/albedo_uv.png (the mean texture and the components in UV space)."""
    import math

    from PIL import Image

    from facetwin.geometry.camera import orthographic_screen_vertices
    from facetwin.headmodel import load_head_model
    from facetwin.rendering import MeshRenderer, default_lighting

    head = load_head_model(head_spec)
    renderer = MeshRenderer.from_head_model(head.data, image_size=size)
    pose = torch.zeros(1, 5, 3)
    pose[0, 0, 1] = math.radians(20)
    verts = head(pose=pose).vertices
    ext = (verts[0, :, :2].max(0).values - verts[0, :, :2].min(0).values).max()
    face_y = float(verts[0, torch.as_tensor(head.data.masks["face"]), 1].mean())
    s = torch.tensor([0.95 * size / float(ext) * 1.35])
    t = torch.tensor([[size / 2, size / 2 + float(s) * face_y]])
    screen = orthographic_screen_vertices(verts, s, t)
    light = default_lighting(1)

    def render(alpha):
        out = renderer.render(screen, verts, model(alpha), light)
        img = out.image[0] * out.mask[0] + (1 - out.mask[0])  # white background
        return (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    K = min(n_show, model.n_coefficients)
    rows = []
    with torch.no_grad():
        for k in range(K):
            cells = []
            for v in (-2.0, 0.0, 2.0):
                a = torch.zeros(1, model.n_coefficients)
                a[0, k] = v
                cells.append(render(a))
            rows.append(np.concatenate(cells, 1))
        comp = Image.fromarray(np.concatenate(rows, 0))
        # UV: mean, then each component as mean ± 2σ difference (grey = 0)
        R = model.resolution
        uv = [model.mean.permute(1, 2, 0).numpy()]
        for k in range(K):
            d = (model.std[k] * model.components[k]).permute(1, 2, 0).numpy()
            uv.append(0.5 + 2 * d)
        uv_img = Image.fromarray((np.clip(np.concatenate(uv, 1), 0, 1) * 255).astype(np.uint8)).resize(((K + 1) * 2 * R, 2 * R), Image.NEAREST)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "albedo_components.png", out_dir / "albedo_uv.png"]
    comp.save(paths[0])
    uv_img.save(paths[1])
    return paths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ALBEDO_FILE))
    ap.add_argument("--fallback", action="store_true", help="colour-only model (no head model needed)")
    ap.add_argument("--data", default=None, help="folder of images + .pts (default: shared HELEN-train)")
    ap.add_argument("--head-model", default="open")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N faces")
    ap.add_argument("--utkface", type=int, default=100, help="add this many UTKFace faces per ethnicity label (0: none)")
    ap.add_argument("--resolution", type=int, default=128, help="UV resolution of the stored model")
    ap.add_argument("--uv-unwrap", type=int, default=256, help="UV resolution of the unwrap (pooled down)")
    ap.add_argument("--fit-iterations", type=int, default=300, help="Adam steps of the landmark fit")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--components", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-nme", type=float, default=0.08, help="drop faces whose fit is worse (inner NME)")
    ap.add_argument("--min-fraction", type=float, default=0.25, help="texel weight below this counts as unseen")
    ap.add_argument("--min-seen", type=float, default=0.03, help="texels seen in fewer faces are filled")
    ap.add_argument("--em-iterations", type=int, default=30)
    ap.add_argument("--fill-iterations", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=None, help="npz of per-face UV statistics to reuse/write (outside the repo)")
    ap.add_argument("--figures", default=None, help="also write the documentation figures into this folder")
    ap.add_argument("--figures-only", action="store_true", help="only draw the figures of the model at --out")
    ap.add_argument("--evaluate", type=int, default=0, help="report the fit to N held-out HELEN-test faces")
    args = ap.parse_args(argv)
    if args.evaluate:
        model = AlbedoModel.load(args.out)
        root = shared_data_dir() / "eval" / "helen-test"
        print(json.dumps(evaluate_held_out(model, root, args.evaluate, args.head_model)))
        return
    if args.figures_only:
        print(write_figures(AlbedoModel.load(args.out), Path(args.figures or "docs/images"), args.head_model))
        return
    model = build_fallback(args) if args.fallback else build_full(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    if args.figures:
        write_figures(model, Path(args.figures), args.head_model)
    print(json.dumps({"out": args.out, "components": model.n_coefficients, "resolution": model.resolution,
                      **{k: v for k, v in model.meta.items() if k != "build_command"}}))


if __name__ == "__main__":
    main()
