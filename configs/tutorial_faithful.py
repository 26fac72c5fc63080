"""The tutorial exactly, faults included (for a faithful reproduction of its numbers):
pad = SOS (id 0) and no UNK, loss averaged over every position including padding, unmasked
attention, an encoder that reads padding, and every filtered pair used for training."""

import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "base.py"))


def get_config():
    config = _base["get_config"]()
    config.data.tutorial_ids = True
    config.data.split_fractions = (1.0, 0.0, 0.0)
    config.model.mask_attention = False
    config.model.encoder_lengths = False
    config.train.loss_over_padding = True
    config.eval.split = "train"  # the tutorial has no held-out split
    return config
