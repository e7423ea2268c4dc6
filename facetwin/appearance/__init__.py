"""Appearance models: the open linear albedo model in the head model's UV space."""

from facetwin.appearance.albedo import (
    ALBEDO_FILE,
    AlbedoModel,
    check_uv_layout,
    load_albedo_model,
    uniform_albedo_model,
    uv_layout_fingerprint,
)

__all__ = ["ALBEDO_FILE", "AlbedoModel", "check_uv_layout", "load_albedo_model", "uniform_albedo_model", "uv_layout_fingerprint"]
