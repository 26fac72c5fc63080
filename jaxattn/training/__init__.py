"""Training: the jitted step, the loop with validation and checkpoints, the loss, the optimizers
and schedules, and the divergence guard (`loop.train(config, workdir)` is the entry point)."""
