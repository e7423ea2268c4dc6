"""Training engine shared by every stage (config, torchrun/DDP, checkpoints, the Trainer)."""
