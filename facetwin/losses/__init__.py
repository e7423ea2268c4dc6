"""Loss functions. Each term is a pure function of tensors, testable alone; the coarse-stage
objective (the paper's Eq. 2) is assembled in :mod:`facetwin.losses.coarse`."""

from facetwin.losses.coarse import CoarseLossInputs, CoarseLossWeights, coarse_losses

__all__ = ["CoarseLossInputs", "CoarseLossWeights", "coarse_losses"]
