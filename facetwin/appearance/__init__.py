"""Appearance models: the open linear albedo model in the head model's UV space."""

from facetwin.appearance.albedo import ALBEDO_FILE, AlbedoModel, load_albedo_model, uniform_albedo_model

__all__ = ["ALBEDO_FILE", "AlbedoModel", "load_albedo_model", "uniform_albedo_model"]
