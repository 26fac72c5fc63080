"""The run directory (WORKDIR), one owner per concern, imported in this order (no cycles):

layout        every file and folder name of a run, drawn at its top; the checkpoint
              references (`Step`, `AVERAGED`) and the selector check; paths
files         atomic JSON/text writes, the training lock, file fingerprints
params        reading a checkpoint's parameters: the shape check, written once
checkpointer  `Checkpointer`: Orbax save / resume / keep-best of the training state
run           opening a run (config, text processing), its checkpoints listed and
              resolved by reference, their parameters and meta, the vocabulary check,
              the files written for training, restoring runs for inference
averaging     the mean of the last or best N checkpoints (a client of `run`)
"""
