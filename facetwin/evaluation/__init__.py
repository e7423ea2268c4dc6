"""Accuracy measures (68-point NME, CED curves) and the landmark evaluation of a coarse model
(:mod:`facetwin.evaluation.landmarks`)."""
