"""The complete run config: every option with its default. configs/*.py start from this.

Sections: `data` (jaxattn.data.default_data_config), `model` (jaxattn.models.
default_model_config), `train` and `eval` (below). A run's config is saved beside its
checkpoints (WORKDIR/config.json), so it fully describes the run.
"""

import ml_collections

from jaxattn.data import default_data_config
from jaxattn.models import default_model_config


def default_train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.batch_size = 32  # global batch, split over all devices and hosts
    c.num_epochs = 80
    c.num_train_steps = -1  # > 0 overrides num_epochs
    c.optimizer = "adam"  # adam | adamw | sgd
    c.learning_rate = 1e-3
    c.lr_schedule = "constant"  # constant | cosine | warmup_cosine | rsqrt
    c.warmup_steps = 0
    c.b1 = 0.9
    c.b2 = 0.999
    c.weight_decay = 0.0  # adamw only
    c.grad_clip = 0.0  # global-norm clipping; 0 = none (the tutorial)
    c.label_smoothing = 0.0
    c.teacher_forcing_ratio = 1.0  # 1.0 = always (the current tutorial)
    c.loss_over_padding = False  # True: the tutorial's loss over all positions
    c.log_every = 100
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.keep_checkpoints = 2  # newest kept (plus the best by validation BLEU)
    c.progress_bar = True
    return c


def default_eval_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.split = "validation"  # validated during training
    c.batch_size = 128
    c.max_decode_len = 20  # decoding steps (the tutorial: MAX_LENGTH)
    c.bleu = True  # greedy sacreBLEU during validation (also ranks the best checkpoint)
    c.beam_size = 1  # for scripts/evaluate.py
    c.length_penalty = 0.0  # alpha of ((5 + len) / 6) ** alpha
    return c


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = default_data_config()
    config.model = default_model_config()
    config.train = default_train_config()
    config.eval = default_eval_config()
    return config
