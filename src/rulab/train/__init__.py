"""Training: one readable loop (``fit``), optimizers and schedules, checkpoints."""
