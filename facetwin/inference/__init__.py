"""Inference API: :class:`facetwin.inference.reconstructor.FaceTwin`."""
