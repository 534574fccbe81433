"""Training: the one Accelerate loop (`trainer`), its state, set-up, checkpoints, distillation and batching,
and `PruningCallback` for `transformers.Trainer` users (`callback`)."""
