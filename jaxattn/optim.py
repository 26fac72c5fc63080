"""Optimizers and learning-rate schedules by name: the registries `OPTIMIZERS` and
`LR_SCHEDULES` are what `config.train.optimizer` / `lr_schedule` may name (config.py reads
them), so a new one is one entry here."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from jaxattn.errors import TrainingError


def _warmup_cosine(lr: float, warmup: int, total: int):
    if warmup >= total:
        raise TrainingError(
            f"train.warmup_steps ({warmup}) must be smaller than the run's {total} training "
            "steps for lr_schedule='warmup_cosine'; lower --config.train.warmup_steps or train "
            "longer.")
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(total, 2))


def _rsqrt(lr: float, warmup: int, total: int):
    """Linear warmup, then lr * sqrt(warmup / step) (the Transformer's)."""
    w = max(warmup, 1)
    return lambda s: lr * jnp.minimum((s + 1) / w, jnp.sqrt(w / jnp.maximum(s + 1, w)))


# name: (learning_rate, warmup_steps, total_steps) -> schedule
LR_SCHEDULES = {
    "constant": lambda lr, warmup, total: optax.constant_schedule(lr),
    "cosine": lambda lr, warmup, total: optax.cosine_decay_schedule(lr, max(total, 1)),
    "warmup_cosine": _warmup_cosine,
    "rsqrt": _rsqrt,
}

# name: (train config, schedule) -> optax optimizer. The tutorial's two Adam optimizers
# (encoder, decoder) equal one Adam over all parameters, since Adam's update is per parameter.
OPTIMIZERS = {
    "adam": lambda tc, lr: optax.adam(lr, b1=tc.b1, b2=tc.b2),
    "adamw": lambda tc, lr: optax.adamw(lr, b1=tc.b1, b2=tc.b2, weight_decay=tc.weight_decay),
    "sgd": lambda tc, lr: optax.sgd(lr),
}


def make_schedule(tc: ml_collections.ConfigDict, total_steps: int):
    """The learning-rate schedule `tc.lr_schedule` names (see `LR_SCHEDULES`)."""
    if tc.lr_schedule not in LR_SCHEDULES:
        raise TrainingError(f"Unknown lr_schedule {tc.lr_schedule!r}; choose one of "
                            f"{sorted(LR_SCHEDULES)}.")
    return LR_SCHEDULES[tc.lr_schedule](tc.learning_rate, tc.warmup_steps, total_steps)


def make_optimizer(tc: ml_collections.ConfigDict, total_steps: int):
    """The optimizer `tc.optimizer` names (see `OPTIMIZERS`) on `make_schedule`'s schedule,
    after global-norm clipping when tc.grad_clip > 0."""
    if tc.optimizer not in OPTIMIZERS:
        raise TrainingError(f"Unknown optimizer {tc.optimizer!r}; choose one of "
                            f"{sorted(OPTIMIZERS)}.")
    opt = OPTIMIZERS[tc.optimizer](tc, make_schedule(tc, total_steps))
    if tc.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(tc.grad_clip), opt)
    return opt
