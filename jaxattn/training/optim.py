"""Optimizers, learning-rate and teacher-forcing schedules by name: the registries
`OPTIMIZERS`, `LR_SCHEDULES` and `TEACHER_FORCING_SCHEDULES` are what `config.train.optimizer`
/ `lr_schedule` / `teacher_forcing_schedule` may name (config.py reads them), so a new one is
one entry here.

'plateau' is the one schedule driven by validation: its current rate is a hyperparameter in
the optimizer state (`optax.inject_hyperparams`, so checkpoints hold it and a resume goes on
with it), lowered by `reduce_on_plateau`, which the training loop calls after a validation.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from jaxattn.errors import TrainingError


def warmup_conflict(schedule: str, warmup: int, total: int, steps: str = "") -> str | None:
    """Why lr_schedule `schedule` cannot warm up for `warmup` of the run's `total` steps
    (`steps`: how total came about, for the message), or None. Config-decidable with
    train.num_train_steps (`config.validate`), after the data is read with num_epochs."""
    if schedule == "warmup_cosine" and warmup >= total:
        return (
            f"must be smaller than the run's {total} training steps{steps} for "
            "lr_schedule='warmup_cosine' (it decays to 0 after the warmup): lower "
            "train.warmup_steps or train longer"
        )
    return None


def _warmup_cosine(lr: float, warmup: int, total: int):
    if why := warmup_conflict("warmup_cosine", warmup, total):
        raise TrainingError(f"train.warmup_steps ({warmup}) {why}.")
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(total, 2))


def _rsqrt(lr: float, warmup: int, total: int):
    """Linear warmup, then lr * sqrt(warmup / step) (the Transformer's)."""
    w = max(warmup, 1)
    return lambda s: lr * jnp.minimum((s + 1) / w, jnp.sqrt(w / jnp.maximum(s + 1, w)))


def _warmup_constant(lr: float, warmup: int, total: int):
    """Linear warmup, then lr: the plateau schedule before any reduction."""
    w = max(warmup, 1)
    return lambda s: lr * jnp.minimum((s + 1) / w, 1.0)


# name: (learning_rate, warmup_steps, total_steps) -> schedule
LR_SCHEDULES = {
    "constant": lambda lr, warmup, total: optax.constant_schedule(lr),
    "cosine": lambda lr, warmup, total: optax.cosine_decay_schedule(lr, max(total, 1)),
    "warmup_cosine": _warmup_cosine,
    "rsqrt": _rsqrt,
    "plateau": _warmup_constant,
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
        raise TrainingError(
            f"Unknown lr_schedule {tc.lr_schedule!r}; choose one of {sorted(LR_SCHEDULES)}."
        )
    return LR_SCHEDULES[tc.lr_schedule](tc.learning_rate, tc.warmup_steps, total_steps)


def make_optimizer(tc: ml_collections.ConfigDict, total_steps: int):
    """The optimizer `tc.optimizer` names (see `OPTIMIZERS`) on `make_schedule`'s schedule,
    after global-norm clipping when tc.grad_clip > 0."""
    if tc.optimizer not in OPTIMIZERS:
        raise TrainingError(
            f"Unknown optimizer {tc.optimizer!r}; choose one of {sorted(OPTIMIZERS)}."
        )
    schedule = make_schedule(tc, total_steps)
    if tc.lr_schedule == "plateau":
        # The current plateau rate lives in the optimizer state; the warm-up scales the update
        # (for these optimizers the same as scaling the rate).
        inner = OPTIMIZERS[tc.optimizer]
        opt = optax.chain(
            optax.inject_hyperparams(lambda learning_rate: inner(tc, learning_rate))(
                learning_rate=tc.learning_rate
            ),
            optax.scale_by_schedule(lambda s: schedule(s) / tc.learning_rate),
        )
    else:
        opt = OPTIMIZERS[tc.optimizer](tc, schedule)
    if tc.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(tc.grad_clip), opt)
    return opt


def plateau_rate(opt_state) -> float | None:
    """The plateau schedule's current rate in `opt_state` (None for the other schedules)."""
    found = optax.tree_utils.tree_get(opt_state, "learning_rate")
    return None if found is None else float(found)


def current_learning_rate(tc: ml_collections.ConfigDict, schedule, opt_state, step: int):
    """The rate of the update after `step` updates, as logged: the schedule's value, for
    'plateau' scaled by the reductions made so far."""
    lr = float(schedule(step))
    rate = plateau_rate(opt_state) if tc.lr_schedule == "plateau" else None
    return lr if rate is None else lr * rate / tc.learning_rate


def reduce_on_plateau(tc: ml_collections.ConfigDict, opt_state, since_best: int):
    """After a validation that is the `since_best`-th in a row without a better best_metric:
    (opt_state, the new rate) with the plateau rate x tc.plateau_factor (not below
    tc.min_learning_rate) at every tc.plateau_patience-th such validation, else (opt_state,
    None). Other schedules: unchanged."""
    if tc.lr_schedule != "plateau" or not since_best or since_best % tc.plateau_patience:
        return opt_state, None
    rate = plateau_rate(opt_state)
    new = max(rate * tc.plateau_factor, tc.min_learning_rate)
    if new >= rate:
        return opt_state, None
    old = optax.tree_utils.tree_get(opt_state, "learning_rate")
    return optax.tree_utils.tree_set(opt_state, learning_rate=jnp.asarray(new, old.dtype)), new


# ------------------------------------------------------------------- scheduled sampling
# The teacher-forcing ratio over training steps (Bengio et al. 2015, "Scheduled sampling"):
# the probability that a decoder step is fed the reference token rather than the model's own
# prediction. A decaying schedule goes from `teacher_forcing_ratio` (step 0) down towards
# `teacher_forcing_min`: ratio(step) = min + (start - min) * f(step), with f below. The step
# is the number of updates made before this one (TrainState.step), a traced int inside the
# jitted train_step, so no schedule recompiles per step. 'constant' returns the Python float
# itself: the train step stays static (ratio 1.0: the fast teacher-forced scan).
def _tf_linear(tc):
    """f = max(0, 1 - step / teacher_forcing_decay_steps): the minimum from that step on."""
    return lambda step: jnp.maximum(0.0, 1.0 - step / tc.teacher_forcing_decay_steps)


def _tf_exponential(tc):
    """f = decay_rate ** step (Bengio et al.'s k^i, k = teacher_forcing_decay_rate < 1)."""
    return lambda step: jnp.power(tc.teacher_forcing_decay_rate, step)


def _tf_inverse_sigmoid(tc):
    """f = k / (k + exp(step / k)) (Bengio et al.'s, k = teacher_forcing_sigmoid_k >= 1): near
    1 at first, one half at step k * ln(k)."""
    k = float(tc.teacher_forcing_sigmoid_k)
    return lambda step: k / (k + jnp.exp(step / k))


# name: train config -> f(step) in [0, 1], or None for the constant ratio
TEACHER_FORCING_SCHEDULES = {
    "constant": lambda tc: None,
    "linear": _tf_linear,
    "exponential": _tf_exponential,
    "inverse_sigmoid": _tf_inverse_sigmoid,
}


def teacher_forcing_schedule(tc: ml_collections.ConfigDict):
    """step -> the teacher-forcing ratio `tc.teacher_forcing_schedule` names (see
    `TEACHER_FORCING_SCHEDULES`): a float32 array for a decaying schedule, the Python float
    `tc.teacher_forcing_ratio` for 'constant' (configs of older versions have no schedule)."""
    name = tc.get("teacher_forcing_schedule", "constant")
    if name not in TEACHER_FORCING_SCHEDULES:
        raise TrainingError(
            f"Unknown teacher_forcing_schedule {name!r}; choose one of "
            f"{sorted(TEACHER_FORCING_SCHEDULES)}."
        )
    decay = TEACHER_FORCING_SCHEDULES[name](tc)
    start = float(tc.teacher_forcing_ratio)
    if decay is None:
        return lambda step: start
    low = float(tc.teacher_forcing_min)

    def ratio(step):
        f = decay(jnp.asarray(step, jnp.float32))
        return (low + (start - low) * f).astype(jnp.float32)

    return ratio
