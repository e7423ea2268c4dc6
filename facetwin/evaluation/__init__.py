"""Accuracy measures (68-point NME, CED curves)."""
