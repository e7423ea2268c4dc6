"""Geometry shared by every stage: rotations, skinning, cameras, mesh normals."""
