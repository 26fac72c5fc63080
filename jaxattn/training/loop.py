"""Training: optimizer, masked loss, jitted data-parallel steps, and the loop with checkpoints.

One code path for one CPU, several local devices and several hosts: parameters are replicated
and each global batch is split over a 1-D device mesh ('data' axis); XLA inserts the gradient
all-reduce. Every random draw comes from `fold_in(PRNGKey(seed), step)`, and the data iterator's
position is checkpointed, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import logging
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from jaxattn import config as config_lib
from jaxattn import data as data_lib
from jaxattn import metrics as metrics_lib
from jaxattn.errors import CheckpointError, ConfigError, TrainingError, first_line
from jaxattn.inference import predict
from jaxattn.model.seq2seq import build_model, position_limits
from jaxattn.rundir import files as workdir_lib
from jaxattn.rundir import run as run_lib
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.rundir.layout import (
    CONFIG_FILE,
    CURVES_FILE,
    EMA,
    VOCAB_FILES,
    checkpoint_dir,
    step_dir,
)
from jaxattn.tools import plots
from jaxattn.training.losses import loss_mask, masked_loss_sum, token_losses
from jaxattn.training.optim import (
    current_learning_rate,
    make_optimizer,
    make_schedule,
    reduce_on_plateau,
    teacher_forcing_schedule,
    warmup_conflict,
)
from jaxattn.training.stopping import ValidationHistory

log = logging.getLogger(__name__)


class TrainState(train_state.TrainState):
    """Flax's TrainState and `ema_params`: the exponential moving average of the parameters
    (float32, the params' tree) when train.ema_decay > 0, else None (no leaves: the state of
    a run without EMA is flax's, leaf for leaf). Checkpoints keep the EMA as an item of its
    own (`rundir.checkpointer`)."""

    ema_params: Any = None


# ------------------------------------------------------------------------ train / eval step
def create_train_state(
    model, tx, key, example: dict, *, sharding=None, ema: bool = False
) -> TrainState:
    """A fresh TrainState: `model` initialized from `key` on an example batch (any batch size;
    {'src', 'src_len', 'tgt'} arrays), with optimizer `tx`; jitted, placed by `sharding`.
    `ema`: with EMA weights, which start as a copy of the parameters."""

    @functools.partial(jax.jit, out_shardings=sharding)
    def init(key, src, src_len, tgt):
        params = model.init({"params": key}, src, src_len, tgt)["params"]
        ema_params = jax.tree.map(jnp.copy, params) if ema else None
        return TrainState.create(apply_fn=model.apply, params=params, tx=tx, ema_params=ema_params)

    return init(key, *(jnp.asarray(example[k]) for k in ("src", "src_len", "tgt")))


def train_step(state: TrainState, batch, base_key, *, model, tc):
    """One optimizer step on a global batch; returns (state, metrics of this step). The
    teacher-forcing ratio is `tc.teacher_forcing_schedule`'s value at state.step.

    With tc.accumulate = A > 1 the batch runs as A micro-batches of B / A rows (rows i, i + A,
    ...: each spread over all devices) one after the other under `lax.scan`, their losses and
    gradients summed, each divided by the whole batch's token count: one update on the
    gradient of the whole batch's mean loss, with the activations of one micro-batch alive at
    a time. Micro-batch i draws its dropout and teacher-forcing keys from fold_in(key, i)."""
    step_key = jax.random.fold_in(base_key, state.step)
    ratio = teacher_forcing_schedule(tc)(state.step)  # a Python float if constant
    mask = loss_mask(batch, tc.loss_over_padding)
    denom = jnp.maximum(mask.sum(), 1.0)  # the whole batch's tokens

    # Always teacher forced, padding masked: the output layer and loss skip the padding.
    chunk = tc.get("loss_chunk", 0) if not tc.loss_over_padding else 0
    forced = isinstance(ratio, float | int) and ratio == 1.0  # a traced ratio draws coins
    real_rows_only = chunk and forced and getattr(model.decoder, "gives_features", False)

    def loss_fn(params, batch, mask, key):
        dropout_key, tf_key = jax.random.split(key)
        if real_rows_only:
            total = real_rows_loss_sum(
                model, params, batch, mask, tc.label_smoothing, chunk, rngs={"dropout": dropout_key}
            )
            return total / denom
        logits, _ = model.apply(
            {"params": params},
            batch["src"],
            batch["src_len"],
            batch["tgt"],
            teacher_forcing_ratio=ratio,
            rng=tf_key,
            train=True,
            rngs={"dropout": dropout_key},
        )
        losses = token_losses(logits, batch["tgt"], tc.label_smoothing) * mask
        return losses.sum() / denom

    grad_fn, a = jax.value_and_grad(loss_fn), tc.get("accumulate", 1)
    if a == 1:
        loss, grads = grad_fn(state.params, batch, mask, step_key)
    else:  # [B, ...] -> [A, B / A, ...]: micro-batch i holds rows i, i + A, ...
        split = lambda x: jnp.swapaxes(x.reshape(-1, a, *x.shape[1:]), 0, 1)  # noqa: E731

        def add(total, xs):
            i, micro_batch, micro_mask = xs
            one = grad_fn(state.params, micro_batch, micro_mask, jax.random.fold_in(step_key, i))
            return jax.tree.map(jnp.add, total, one), None

        zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
        xs = (jnp.arange(a), jax.tree.map(split, batch), split(mask))
        (loss, grads), _ = jax.lax.scan(add, zero, xs)
    state = update_ema(state.apply_gradients(grads=grads), tc)
    return state, {
        "loss": loss,
        "grad_norm": optax.global_norm(grads),
        "tokens": batch["tgt_len"].sum(),
    }


def update_ema(state: TrainState, tc) -> TrainState:
    """The EMA after an update (state.step counts it): ema = d * ema + (1 - d) * params with
    d = tc.ema_decay, or d = 0 (a copy of the params) for the first tc.ema_start updates, so
    that the average leaves out the first, random weights. A state without EMA is returned."""
    if state.ema_params is None:
        return state
    d = jnp.where(state.step <= tc.ema_start, 0.0, tc.ema_decay).astype(jnp.float32)
    ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema_params, state.params)
    return state.replace(ema_params=ema)


def real_rows_loss_sum(model, params, batch, mask, label_smoothing: float, chunk: int, rngs=None):
    """The teacher-forced loss summed over `mask`, the output layer and loss computed on the
    real positions only, `chunk` rows at a time (`losses.masked_loss_sum`: the [B, T, V]
    logits never exist); training when `rngs` (dropout) is given. For a decoder that
    `gives_features`."""
    features = model.apply(
        {"params": params},
        batch["src"],
        batch["src_len"],
        batch["tgt"],
        train=rngs is not None,
        rngs=rngs or {},
        method="features",
    )  # [B, T, H]
    logits_fn = lambda h: model.apply({"params": params}, h, method="output_logits")  # noqa: E731
    return masked_loss_sum(features, batch["tgt"], mask, logits_fn, label_smoothing, chunk)


def eval_step(params, batch, *, model, loss_over_padding: bool, chunk: int = 0):
    """Sums of teacher-forced cross-entropy and token counts on one batch (no label smoothing).
    With chunk > 0 (train.loss_chunk) and padding masked, on the real positions only, as
    training computes it (`real_rows_loss_sum`: an evaluation batch of 256 x 40 positions
    over a 13,000-word vocabulary would otherwise hold 0.5 GB of logits)."""
    mask = loss_mask(batch, loss_over_padding)
    if chunk and not loss_over_padding and getattr(model.decoder, "gives_features", False):
        loss_sum = real_rows_loss_sum(model, params, batch, mask, 0.0, chunk)
        return {"loss_sum": loss_sum, "tokens": mask.sum()}
    logits, _ = model.apply({"params": params}, batch["src"], batch["src_len"], batch["tgt"])
    losses = token_losses(logits, batch["tgt"]) * mask
    return {"loss_sum": losses.sum(), "tokens": mask.sum()}


# ----------------------------------------------------------------------------- sharding
def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every host, axis 'data'."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def to_global(batch: dict, sharding: NamedSharding) -> dict:
    """Per-host numpy batch -> global jax arrays laid out by `sharding`."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


def pad_batch(batch: dict, size: int) -> dict:
    """Pads a batch to `size` rows with empty rows (length 0), so eval shapes stay fixed."""
    n = len(batch["src_len"])
    if n == size:
        return batch
    return {
        k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
        for k, v in batch.items()
    }


# ---------------------------------------------------------------------------------- loop
class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop saves a checkpoint and exits at the next step."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers
                pass
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def validation_scores(
    model, params, data, split, *, config, p_eval_step, replicated, with_bleu: bool = True
) -> dict:
    """Training-time validation on a split: teacher-forced loss/perplexity, and sacreBLEU/chrF
    of greedy translations made by the prediction path `Translator` takes
    (`predict.greedy_texts`: the same batches, search and text), so the BLEU is that of
    scripts/evaluate.py --split with batch size eval.batch_size and max_len eval.max_decode_len
    (sources are encoded by `data`: cut to data.eval_cut positions, where evaluate.py cuts to
    the Translator's input limit; the two differ only for sentences longer than training's).
    """
    ec = config.eval
    batches = data.eval_batches(split, ec.batch_size)  # in order; src [B, S], src_len [B]
    loss_batches = [pad_batch(b, ec.batch_size) for b in batches]
    if ec.batch_tokens:  # by length, rows already rounded
        loss_batches = data.eval_batches(split, ec.batch_size, ec.batch_tokens)
    loss_sum, tokens = 0.0, 0.0
    for b in loss_batches:
        out = p_eval_step(params, to_global(b, replicated))
        loss_sum += float(out["loss_sum"])
        tokens += float(out["tokens"])
    loss = loss_sum / max(tokens, 1.0)
    result = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if with_bleu:
        hyps = predict.greedy_texts(
            model,
            {"params": params},
            predict.source_rows(batches),
            tgt_vocab=data.tgt_vocab,
            tgt_tokenizer=data.tgt_tokenizer,
            src_pad_id=data.src_vocab.pad_id,
            batch_size=ec.batch_size,
            padded_len=predict.source_width(config),
            max_len=ec.max_decode_len,
            batch_tokens=ec.batch_tokens,
        )
        scores = metrics_lib.corpus_scores(hyps, data.references(split))
        result.update(bleu=scores["bleu"], chrf=scores["chrf"])
    return result


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike):
    """Trains (or resumes) a model as `config` says, in `workdir`.

    The config is validated before anything is written; the workdir is locked against a second
    training. Returns (final TrainState, last validation metrics dict).
    """
    if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir):
        raise ConfigError(f"workdir must be a directory path, not {workdir!r}.")
    workdir = os.fspath(workdir)
    config_lib.validate(config, device_count=jax.device_count())
    workdir_lib.prepare(workdir)
    if jax.process_index() != 0:  # process 0 holds the lock for all (a shared filesystem)
        return _train(config, workdir)
    with workdir_lib.Lock(workdir):
        return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str):
    tc = config.train
    is_main = jax.process_index() == 0
    run = _prepare(config, workdir)  # reads and checks; writes nothing
    config = run["config"]  # with the auto fields set (model.attention_max_length=0)
    # Ranked by best_metric even when it is not computed (eval.bleu=False), so that an earlier
    # best survives such a resume.
    ckpt = Checkpointer(workdir, keep_latest=tc.keep_checkpoints, best_metric=tc.best_metric)
    try:
        result = _loop(config, workdir, ckpt, run)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            ckpt.close()
        raise
    ckpt.close()
    if is_main:
        plots.training_curves(metrics_lib.read_metrics(workdir), os.path.join(workdir, CURVES_FILE))
    return result


def _prepare(config, workdir: str) -> dict:
    """Everything decided before the first file of the run is written: the saved steps (and
    that they fit this config), the data (and that one batch fits in it), the rules that need
    the data (warmup against the epochs' steps, the model's position limits), the model, its
    parameter count and whether training it fits in memory. Its 'config' has the auto fields
    set (model.attention_max_length=0: the widest training source, or a resumed run's value),
    the config the run saves."""
    tc = config.train
    auto = config
    if not config.model.attention_max_length:  # auto: a resumed run keeps its saved value
        saved = run_lib.read_config_file(os.path.join(workdir, CONFIG_FILE))
        if saved is not None:
            config = with_attention_max_length(config, saved.model.attention_max_length)
    steps = run_lib.check_resumable(workdir, config)  # the saved steps; nothing created
    data = data_lib.build(config.data, vocab_dir=workdir if steps else None, seed=config.seed)
    # token batches (train.batch_tokens): rows a multiple of the devices x the micro-batches
    tokens = dict(batch_tokens=tc.batch_tokens, row_multiple=jax.device_count() * tc.accumulate)
    if not steps and not auto.model.attention_max_length:  # auto, a new run: from the data
        src_width = data.largest_batch_shape(tc.batch_size, **tokens, seed=config.seed)[1]
        config = with_attention_max_length(auto, src_width)
        log.info("model.attention_max_length=0 (auto): %d, the widest source.", src_width)
    if config.eval.split not in data.splits or not data.num_examples(config.eval.split):
        raise ConfigError(
            f"config.eval.split={config.eval.split!r}: the corpus has no such split or it is "
            f"empty (it has {', '.join(data.splits)}); set --config.eval.split or "
            "data.split_fractions."
        )
    data.check_batch_fits(tc.batch_size // jax.process_count(), jax.process_count(), **tokens)
    steps_per_epoch = max(data.num_examples("train") // tc.batch_size, 1)
    if tc.batch_tokens:  # the token batches' real plan
        steps_per_epoch = data.steps_per_epoch(0, jax.process_count(), **tokens, seed=config.seed)
    largest = data.largest_batch_shape(tc.batch_size, **tokens, seed=config.seed)
    total_steps = tc.num_train_steps if tc.num_train_steps > 0 else tc.num_epochs * steps_per_epoch
    how = f" (num_epochs {tc.num_epochs} x {steps_per_epoch} steps an epoch)"
    if tc.num_train_steps <= 0 and (
        why := warmup_conflict(tc.lr_schedule, tc.warmup_steps, total_steps, how)
    ):
        raise ConfigError(f"config.train.warmup_steps={tc.warmup_steps} {why}.")
    model = build_model(
        config.model, len(data.src_vocab), len(data.tgt_vocab), bos_id=data.tgt_vocab.bos_id
    )
    check_positions(config.model, largest)
    tx = make_optimizer(tc, total_steps)
    example = data.example_batch(2)  # [2, S], [2, T]
    abstract = jax.eval_shape(
        lambda: create_train_state(model, tx, jax.random.PRNGKey(0), example, ema=tc.ema_decay > 0)
    )
    n_params = sum(x.size for x in jax.tree.leaves(abstract.params))
    log.info(
        "Model: %s parameters; %d steps (%d per epoch), global batch %s on %d devices.",
        f"{n_params:,}",
        total_steps,
        steps_per_epoch,
        f"<= {tc.batch_tokens} target tokens" if tc.batch_tokens else tc.batch_size,
        jax.device_count(),
    )
    check_memory(abstract, largest, len(data.tgt_vocab), tc.accumulate)
    return dict(
        config=config,
        tokens=tokens,
        steps=steps,
        data=data,
        model=model,
        tx=tx,
        example=example,
        abstract=abstract,  # the train state's shapes (a resume restores into them)
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
    )


def _loop(config, workdir: str, ckpt: Checkpointer, run: dict):
    tc = config.train
    is_main = jax.process_index() == 0
    steps, data, model, total_steps = run["steps"], run["data"], run["model"], run["total_steps"]
    vocab_files = [f for f in VOCAB_FILES if not steps or os.path.exists(os.path.join(workdir, f))]

    mesh = make_mesh()
    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P("data"))
    per_host = tc.batch_size // jax.process_count()
    train_iter = data.train_iterator(
        per_host,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        **run["tokens"],
    )
    init_key, base_key = jax.random.split(jax.random.PRNGKey(config.seed))
    # A resume restores into the state's shapes: no initialized state beside the restored one.
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), run["abstract"]
    )
    restored, start_step = ckpt.restore_latest(abstract, train_iter)
    if restored is not None:
        state = jax.device_put(restored, replicated)
        del restored
        log.info("Resumed from step %d in %s.", start_step, workdir)
    else:
        state = create_train_state(
            model, run["tx"], init_key, run["example"], sharding=replicated, ema=tc.ema_decay > 0
        )
    history = ValidationHistory.restored(tc, ckpt, start_step)
    if stopped := history.stop_reason(tc.early_stopping_patience):
        log.warning(
            "The run stopped early at step %d: %s. Nothing to train; raise "
            "--config.train.early_stopping_patience to train further.",
            start_step,
            stopped,
        )
        return state, history.last()
    start_step = int(state.step)

    p_train_step = jax.jit(
        functools.partial(train_step, model=model, tc=tc),
        in_shardings=(replicated, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    p_eval_step = jax.jit(
        functools.partial(
            eval_step,
            model=model,
            loss_over_padding=tc.loss_over_padding,
            chunk=tc.get("loss_chunk", 0),
        ),
        out_shardings=replicated,
    )
    score = functools.partial(
        validation_scores,
        model,
        data=data,
        split=config.eval.split,
        config=config,
        p_eval_step=p_eval_step,
        replicated=replicated,
        with_bleu=config.eval.bleu,
    )  # score(params) -> the validation metrics
    writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
    schedule = make_schedule(tc, total_steps)
    run_files_written = False
    ckpt_dir = checkpoint_dir(workdir)

    def save(step, metrics=None, force=False):
        """Writes config.json and the vocabularies (atomically) with the run's first save, so
        that they exist exactly when a checkpoint uses them, then the checkpoint."""
        nonlocal run_files_written
        try:
            if not run_files_written and is_main:
                run_lib.write_config(workdir, config)
                if not steps:
                    data.save_vocabs(workdir)
            run_files_written = True
            meta = {
                "config": config_lib.to_json(config),
                "vocab_sha256": workdir_lib.fingerprints(workdir, vocab_files),
                "validations": history.records,  # early stopping and plateau read them back
            }
            ckpt.save(step, state, train_iter, meta, metrics=metrics, force=force)
            ckpt.wait() if force else None
        except (OSError, ValueError, RuntimeError) as e:
            last = [
                s for s in ckpt.all_steps() if s < step and os.path.isdir(step_dir(workdir, s))
            ][-1:] or ["none"]
            full = any(x in str(e) for x in ("No space left", "RESOURCE_EXHAUSTED"))
            raise CheckpointError(
                f"Saving a checkpoint in {ckpt_dir} failed ("
                + ("the disk is full" if full else first_line(e))
                + "). Free disk space or fix "
                f"the directory, then rerun to resume from the last complete checkpoint (step "
                f"{last[0]})."
            ) from None

    last_valid: dict = {}
    pending: list = []  # device metrics since the last log
    guard = DivergenceGuard(
        tc.divergence_factor, len(data.tgt_vocab), warmup=max(tc.divergence_warmup, tc.warmup_steps)
    )
    t_log = time.time()
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        disable=not (is_main and tc.progress_bar),
        dynamic_ncols=True,
        desc="train",
    )
    try:
        with _StopFlag() as stop:
            for step in range(start_step, total_steps):
                batch = next(train_iter)
                state, m = p_train_step(state, to_global(batch, sharded), base_key)
                pending.append(m)
                done = step + 1
                bar.update(1)
                run_eval = done % tc.eval_every == 0 or done == total_steps
                will_save = run_eval or done % tc.checkpoint_every == 0 or bool(stop.signal)
                if done % tc.log_every == 0 or will_save:  # checks the loss before any save
                    host = jax.device_get(pending)
                    pending = []
                    loss = check_loss(host, done, guard, ckpt, tc.checkpoint_every)
                    tokens = sum(int(h["tokens"]) for h in host) * jax.process_count()
                    tps = tokens / max(time.time() - t_log, 1e-9)
                    t_log = time.time()
                    writer.write(
                        done,
                        "train",
                        {
                            "loss": loss,
                            "grad_norm": float(np.mean([h["grad_norm"] for h in host])),
                            "tokens_per_sec": tps,
                            "learning_rate": current_learning_rate(
                                tc, schedule, state.opt_state, done
                            ),
                        },
                    )
                    bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
                metrics = None
                if run_eval:
                    try:
                        metrics = score(state.params)
                        if state.ema_params is not None:  # the EMA's too: twice the time
                            ema = score(state.ema_params)
                            metrics.update({f"{EMA}_{k}": v for k, v in ema.items()})
                    except Exception as e:  # noqa: BLE001 - keep the work, then report
                        save(done, force=True)
                        raise TrainingError(
                            f"Validation at step {done} failed ({first_line(e)}); the checkpoint"
                            f" of step {done} is saved. Fix config.eval (e.g. a smaller "
                            "--config.eval.batch_size) and rerun to resume."
                        ) from e
                    writer.write(done, "valid", metrics)
                    last_valid = metrics
                    bar.write(
                        f"step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                    )
                    history.add(done, metrics)
                    state = _after_validation(tc, state, history, replicated, done)
                if will_save:
                    save(done, metrics, force=bool(stop.signal))
                if run_eval and (stopped := history.stop_reason(tc.early_stopping_patience)):
                    log.info("Stopped early at step %d, checkpoint saved: %s.", done, stopped)
                    break
                if stop.signal:
                    log.warning(
                        "Got %s: saved a checkpoint at step %d and stopped. Rerun the "
                        "same command to resume.",
                        stop.signal,
                        done,
                    )
                    raise KeyboardInterrupt(f"{stop.signal} at step {done}")
    finally:
        bar.close()
        writer.close()
    return state, last_valid


def _after_validation(tc, state: TrainState, history: ValidationHistory, sharding, step: int):
    """The state with the plateau schedule's rate lowered if this validation calls for it."""
    opt_state, rate = reduce_on_plateau(tc, state.opt_state, history.since_best())
    if rate is None:
        return state
    log.info(
        "Step %d: %d validations without a better %s; learning rate lowered to %.4g.",
        step,
        history.since_best(),
        tc.best_metric,
        rate,
    )
    return jax.device_put(state.replace(opt_state=opt_state), sharding)


class DivergenceGuard:
    """Tells a run that blew up or is not learning from one that is, from per-step losses.

    Its scale is `init_loss` = log(V), the loss of a uniform guess over the V target tokens:
    a model starts near it, and a model that learns anything (even word frequencies) goes
    below it. With F = train.divergence_factor, a problem is:

    - a loss or gradient norm that is NaN or inf;
    - a loss over F x log(V): far worse than guessing (checked from the first step);
    - a loss over both F x the median of the recent per-step losses and log(V): a spike back
      past guessing. (A rise from 0.03 to 0.36 late in a run that has learned its task stays
      far below log(V): a hard batch, not divergence.)
    - from step `warmup` on, a median of the recent losses still at or above log(V): the run is
      not learning.

    F = 0 checks only NaN/inf. The history is per-step and kept in memory only: a resumed run
    starts it anew (the guard never changes what is trained, so resume stays bit-exact).
    """

    def __init__(
        self,
        factor: float,
        vocab_size: int,
        *,
        warmup: int = 1000,
        window: int = 200,
        min_history: int = 20,
    ):
        self.factor, self.warmup, self.min_history = factor, warmup, min_history
        self.vocab_size, self.init_loss = vocab_size, math.log(max(vocab_size, 2))
        self.losses: collections.deque[float] = collections.deque(maxlen=window)

    def check(self, losses, norms, step: int) -> str | None:
        """Records the per-step `losses` (and gradient `norms`) that end at global `step`;
        returns what is wrong, or None. Nothing is recorded when something is wrong."""
        losses, norms = np.asarray(losses, np.float64), np.asarray(norms, np.float64)
        if not (np.isfinite(losses).all() and np.isfinite(norms).all()):
            return f"Loss became {losses.mean()} (gradient norm {norms.max()})"
        worst, f, guess = float(losses.max()), self.factor, self.init_loss
        if not f:
            return None
        uniform = (
            f"a uniform guess over the {self.vocab_size:,} target tokens (log V = {guess:.3g})"
        )
        if worst > f * guess:
            return f"Loss {worst:.4g} is over {f:g}x the loss of {uniform}: the run blew up"
        if len(self.losses) >= self.min_history:
            median = float(np.median(self.losses))
            if worst > max(f * median, guess):
                return (
                    f"Loss {worst:.4g} is over {f:g}x the median {median:.4g} of the last "
                    f"{len(self.losses)} steps and worse than {uniform}: the run diverged"
                )
        self.losses.extend(losses.tolist())
        if step >= self.warmup and len(self.losses) >= self.min_history:
            median = float(np.median(self.losses))
            if median >= guess:
                return (
                    f"The median loss of the last {len(self.losses)} steps, {median:.4g}, is "
                    f"no better than {uniform} after {step} steps (train.divergence_warmup "
                    f"= {self.warmup}): the run is not learning"
                )
        return None


def check_loss(
    host: list[dict], step: int, guard: DivergenceGuard, ckpt: Checkpointer, checkpoint_every: int
) -> float:
    """The mean loss of the logged steps (per-step metrics in `host`); TrainingError, with
    nothing saved, if `guard` finds a problem."""
    losses = [h["loss"] for h in host]
    problem = guard.check(losses, [h["grad_norm"] for h in host], step)
    if problem:
        ckpt.wait()
        saved = ckpt.all_steps()
        kept = (
            f"The last good checkpoint (step {saved[-1]}) is kept; rerun to resume from it "
            "once the config is fixed"
            if saved
            else f"Nothing is saved: this came before the run's first checkpoint "
            f"(train.checkpoint_every = {checkpoint_every}); the rerun starts from scratch"
        )
        fix = (
            "Check the learning rate (too high or too low), its warm-up and the data"
            if "not learning" in problem
            else "Lower the learning rate or set config.train.grad_clip"
        )
        raise TrainingError(
            f"{problem} at step {step}; stopped without saving. {kept}. {fix}; "
            "config.train.divergence_factor=0 checks only NaN/inf."
        )
    return float(np.mean(losses))


def available_memory() -> tuple[int | None, str]:
    """(bytes one device can use, what they are): the device's limit on GPU/TPU, the free host
    memory (MemAvailable) on CPU; None if unknown."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        limit = (device.memory_stats() or {}).get("bytes_limit")
        return limit, f"the memory of one {device.device_kind}"
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kib * 1024, "the available host memory"
    except (OSError, StopIteration, ValueError):
        return None, "memory"


def with_attention_max_length(config, n: int) -> ml_collections.ConfigDict:
    """A copy of config with model.attention_max_length = n (config itself is not changed)."""
    config = copy.deepcopy(config)
    config.model.attention_max_length = n
    return config


def check_positions(c, batch_shape: tuple[int, int, int]) -> None:
    """TrainingError, before anything is written, when the widest training batch (batch_shape:
    (B, S, T), as the data pads it) has more source or target positions than model config
    c's model can take (a learned positional table, location attention), instead of failing
    at the first such batch, hours into a run."""
    _, src_width, tgt_width = batch_shape
    for side, limit, field in position_limits(c):
        width = src_width if side == "source" else tgt_width
        if width > limit:
            raise TrainingError(
                f"The widest training batch has {width} {side} positions (EOS and padding "
                f"included), more than the model's {limit} ({field}): raise {field} to at "
                f"least {width}, or drop long pairs with data.max_length."
            )


def check_memory(
    abstract_state: TrainState,
    batch_shape: tuple[int, int, int],
    tgt_vocab: int,
    accumulate: int = 1,
) -> None:
    """ConfigError, before anything is allocated, when training cannot fit in memory.

    The estimate is a lower bound (so it never refuses a run that fits): per device, the train
    state (parameters and optimizer slots), one gradient (two when accumulating: the sum and
    a micro-batch's), and the float32 logits of its share of the widest batch, of one of
    `accumulate` micro-batches, with their gradient, [B / accumulate, T, V] twice; the
    recurrent activations come on top. CPU devices share the host's memory, so there it
    counts every local device.
    """
    limit, what = available_memory()
    if not limit:
        return
    state = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state))
    params = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state.params))
    rows, _, tgt_len = batch_shape
    logits = 2 * 4 * tgt_vocab * tgt_len * -(-rows // (jax.device_count() * accumulate))
    need = state + params * (1 + (accumulate > 1)) + logits
    if jax.local_devices()[0].platform == "cpu":
        need *= jax.local_device_count()
    if need > limit:
        gb = lambda n: f"{n / 1e9:.3g} GB"  # noqa: E731
        n_params = sum(x.size for x in jax.tree.leaves(abstract_state.params))
        raise ConfigError(
            f"Training this model needs at least {gb(need)} per device ({n_params:,} "
            f"parameters with their optimizer state and gradient: {gb(state + params)}; the "
            f"logits of a batch of {rows} x {tgt_len} target positions over {tgt_vocab:,} "
            f"words: {gb(logits)}), more than {what} ({gb(limit)}). Lower "
            "--config.model.hidden, embed_dim or the layer counts, or "
            "--config.train.batch_size (batch_tokens) (or use a device with more memory)."
        )
