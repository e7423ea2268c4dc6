"""facetwin: person-specific, animatable 3D face models from in-the-wild photos and videos."""

__version__ = "0.1.0"
