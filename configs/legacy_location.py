"""The pre-June-2023 tutorial: "location" attention, Linear(2H, max_length) over
[embedded; hidden], attn_combine + ReLU before the GRU, H = 256, SGD lr 0.01, teacher forcing
ratio 0.5, one sentence per step (75,000 iterations)."""

import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "base.py"))


def get_config():
    config = _base["get_config"]()
    m = config.model
    m.decoder, m.attention = "legacy", "location"
    m.hidden = m.embed_dim = 256
    m.attention_max_length = config.data.max_length  # covers MAX_LENGTH words + EOS
    t = config.train
    t.batch_size = 1
    t.optimizer, t.learning_rate = "sgd", 0.01
    t.teacher_forcing_ratio = 0.5
    t.num_train_steps = 75_000
    t.log_every, t.eval_every, t.checkpoint_every = 1000, 5000, 5000
    return config
