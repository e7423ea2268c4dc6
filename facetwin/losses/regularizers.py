"""L_reg: priors on the identity β, expression ψ, albedo α and the lighting."""

from __future__ import annotations

import torch


def l2_regularizer(coefficients: torch.Tensor, target: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Mean over the batch of the squared L2 norm: (B, n) → scalar, ``mean_b |x_b - target|²``.

    For β and α, which are N(0, I)-scaled, this is the Gaussian prior's negative log-likelihood
    (up to a factor 2). For ψ given as blendshape weights in [0, 1] the same plain L2 towards 0
    is the prior: the neutral face is the default and each active blendshape costs its square.
    """
    x = coefficients - torch.as_tensor(target, dtype=coefficients.dtype, device=coefficients.device)
    return (x * x).flatten(1).sum(1).mean()


def light_regularizer(light: torch.Tensor) -> torch.Tensor:
    """DECA's white-light prior: (B, 9, 3) SH coefficients → scalar mean squared deviation of
    each coefficient's RGB triple from its grey mean (keeps skin colour in the albedo)."""
    return ((light - light.mean(-1, keepdim=True)) ** 2).mean()
