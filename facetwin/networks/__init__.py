"""Neural networks: the ViT encoder (timm/MAE-compatible names), adapters, the coarse encoder,
the encoder's pre-training network (``vit_pretrain``), the dlib face descriptor."""
