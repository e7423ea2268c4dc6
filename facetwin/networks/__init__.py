"""Neural networks: the ViT encoder (timm/MAE-compatible names), adapters, coarse encoder, MAE."""
