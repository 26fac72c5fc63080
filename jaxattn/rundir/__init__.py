"""The run directory (WORKDIR): its layout and every file in it, its lock, the training
checkpoints (Orbax) and the averaged checkpoint."""
