"""eng-fra (fra -> eng), tuned for held-out BLEU: the tutorial's data and filter, with a
bidirectional GRU encoder, larger embeddings, stronger dropout, label smoothing, gradient
clipping and a warmup + cosine learning-rate schedule (the small corpus overfits quickly:
the base config's validation loss rises after a few epochs).

    python scripts/train.py --config configs/engfra_tuned.py --workdir runs/engfra_tuned \
        --config.data.path=../shared/data/eng-fra/eng-fra.txt
"""

import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "base.py"))


def get_config():
    config = _base["get_config"]()
    m = config.model
    m.bidirectional, m.bridge = True, "dense"
    m.embed_dim, m.hidden = 256, 256
    m.dropout = 0.4
    t = config.train
    t.batch_size, t.num_epochs = 64, 40
    t.learning_rate, t.lr_schedule, t.warmup_steps = 2e-3, "warmup_cosine", 300
    t.grad_clip, t.label_smoothing = 1.0, 0.1
    t.eval_every = t.checkpoint_every = 1000
    return config
