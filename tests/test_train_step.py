"""Numeric checks of jaxattn.training.loop's pieces a run relies on: `train_step`'s loss (masked
mean,
padding ignored, loss over padding, label smoothing, teacher forcing, dropout) against a
hand computation, `eval_step`'s sums, the optimizers (SGD, Adam's betas, AdamW's weight
decay, global-norm clipping) and the learning-rate schedules, value by value."""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxattn.config import default_model_config
from jaxattn.errors import TrainingError
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib
from jaxattn.training.losses import masked_loss_sum, token_losses
from jaxattn.training.optim import (
    make_optimizer,
    make_schedule,
    plateau_rate,
    reduce_on_plateau,
    teacher_forcing_schedule,
)
from jaxattn.training.stopping import ValidationHistory

V, B, S, T = 9, 3, 5, 6
BOS = 1
TGT_LEN = np.array([6, 3, 1], np.int32)


TRAIN_DEFAULTS = dict(  # the train options train_step and make_optimizer read
    optimizer="sgd",
    learning_rate=0.1,
    lr_schedule="constant",
    warmup_steps=0,
    b1=0.9,
    b2=0.999,
    weight_decay=0.0,
    grad_clip=0.0,
    label_smoothing=0.0,
    teacher_forcing_ratio=1.0,
    loss_over_padding=False,
    teacher_forcing_schedule="constant",
    teacher_forcing_min=0.0,
    teacher_forcing_decay_steps=100,
    teacher_forcing_decay_rate=0.9,
    teacher_forcing_sigmoid_k=10.0,
    accumulate=1,
    plateau_factor=0.5,
    plateau_patience=2,
    min_learning_rate=0.0,
)


def make_tc(**overrides):
    return ml_collections.ConfigDict({**TRAIN_DEFAULTS, **overrides})


def make_batch(pad_fill=0, seed=0):
    """Source and target ids; target positions past tgt_len hold `pad_fill` (None: random)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, V, (B, S)).astype(np.int32)
    src_len = np.array([5, 2, 4], np.int32)
    src[np.arange(S)[None] >= src_len[:, None]] = 0
    tgt = rng.integers(3, V, (B, T)).astype(np.int32)
    pad = np.arange(T)[None] >= TGT_LEN[:, None]
    tgt[pad] = rng.integers(3, V, pad.sum()) if pad_fill is None else pad_fill
    return {
        "src": jnp.asarray(src),
        "src_len": jnp.asarray(src_len),
        "tgt": jnp.asarray(tgt),
        "tgt_len": jnp.asarray(TGT_LEN),
    }


@functools.cache
def model_and_params(dropout=0.0):
    c = default_model_config()
    c.hidden, c.embed_dim, c.dropout = 8, 6, dropout
    model = build_model(c, V, V, BOS)
    b = make_batch()
    shapes = jax.eval_shape(model.init, jax.random.key(0), b["src"], b["src_len"], b["tgt"])
    rng = np.random.default_rng(1)
    params = jax.tree.map(
        lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype), shapes["params"]
    )
    return model, params


@functools.cache
def jitted_step(tc_json, dropout):
    """(jitted train_step, initial TrainState) for a config, made once per config: a new
    optimizer object would make a new TrainState type and so a new compilation."""
    model, params = model_and_params(dropout)
    tc = ml_collections.ConfigDict(json.loads(tc_json))
    state = train_lib.TrainState.create(
        apply_fn=model.apply, params=params, tx=make_optimizer(tc, 100)
    )
    return jax.jit(functools.partial(train_lib.train_step, model=model, tc=tc)), state


def run_step(tc, batch, dropout=0.0, at_step=0):
    """One train_step from the shared random parameters (as if `at_step` updates were made
    before) -> (state, new state, metrics)."""
    step, state = jitted_step(tc.to_json(sort_keys=True), dropout)
    state = state.replace(step=jnp.asarray(at_step, jnp.asarray(state.step).dtype))
    new_state, metrics = step(state, batch, jax.random.key(3))
    return state, new_state, jax.device_get(metrics)


@functools.cache
def forward(dropout=0.0, teacher_forcing_ratio=1.0):
    """Jitted eval-mode logits of the shared model and parameters: batch -> [B, T, V]."""
    model, params = model_and_params(dropout)

    @jax.jit
    def run(batch):
        return model.apply(
            {"params": params},
            batch["src"],
            batch["src_len"],
            batch["tgt"],
            teacher_forcing_ratio=teacher_forcing_ratio,
        )[0]

    return run


def np_token_nll(logits, tgt, smoothing=0.0):
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, np.asarray(tgt)[..., None], -1)[..., 0]
    return (1 - smoothing) * nll - smoothing * logp.mean(-1)


def tree_close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **kw)


def test_train_step_loss_is_masked_mean_and_ignores_padding():
    """Loss = mean NLL over real target tokens only; padding ids change neither loss nor update
    (guards against a loss over padding or a per-sentence denominator)."""
    tc = make_tc()
    batch = make_batch(pad_fill=0)
    state, new, m = run_step(tc, batch)
    logits = forward()(batch)
    nll = np_token_nll(logits, batch["tgt"])
    mask = np.arange(T)[None] < TGT_LEN[:, None]
    assert float(m["loss"]) == pytest.approx(nll[mask].mean(), rel=1e-5)
    assert int(m["tokens"]) == TGT_LEN.sum()
    # the SGD step is -lr * grad of that loss; grad_norm is the gradient's global norm
    grads = jax.tree.map(lambda p, q: (p - q) / tc.learning_rate, state.params, new.params)
    assert float(m["grad_norm"]) == pytest.approx(float(optax.global_norm(grads)), rel=1e-4)
    assert int(new.step) == 1

    _, new2, m2 = run_step(tc, make_batch(pad_fill=None))  # other ids past tgt_len
    assert not np.array_equal(make_batch(pad_fill=None)["tgt"], batch["tgt"])
    assert float(m2["loss"]) == pytest.approx(float(m["loss"]), rel=1e-6)
    tree_close(new2.params, new.params, rtol=1e-6, atol=1e-7)


def test_train_step_loss_over_padding_label_smoothing_and_free_running():
    """loss_over_padding=True averages over every position, label_smoothing reaches the loss,
    and teacher_forcing_ratio=0 trains on the model's own (free-running) predictions (one
    config for all three: one compilation)."""
    batch = make_batch(pad_fill=0)
    tc = make_tc(loss_over_padding=True, label_smoothing=0.2, teacher_forcing_ratio=0.0)
    _, _, m = run_step(tc, batch)
    want = np_token_nll(forward(teacher_forcing_ratio=0.0)(batch), batch["tgt"], 0.2).mean()
    assert float(m["loss"]) == pytest.approx(want, rel=1e-5)
    forced = np_token_nll(forward()(batch), batch["tgt"], 0.2).mean()
    assert abs(forced - want) > 1e-3  # free running made a difference here


@pytest.mark.parametrize("chunk", [4, 64])
def test_loss_chunk_projects_real_rows_only_with_the_same_step(chunk):
    """train.loss_chunk > 0 (the output layer and loss on the real target positions only, in
    chunks; 4: 18 positions in 5 chunks, 10 real, the last 2 skipped) gives the unchunked
    step's loss, gradient norm and update (up to rounding), with label smoothing and dropout
    (the same dropout draws), whatever ids the padding holds."""
    batch = make_batch(pad_fill=None)
    mask = np.arange(T)[None] < TGT_LEN[:, None]
    _, want, m0 = run_step(make_tc(label_smoothing=0.1), batch, dropout=0.3)
    _, new, m = run_step(make_tc(label_smoothing=0.1, loss_chunk=chunk), batch, dropout=0.3)
    assert float(m["loss"]) == pytest.approx(float(m0["loss"]), rel=1e-6)
    assert float(m["grad_norm"]) == pytest.approx(float(m0["grad_norm"]), rel=1e-5)
    tree_close(new.params, want.params, rtol=1e-5, atol=1e-6)
    # and it is the masked mean (no dropout: against the eval-mode logits)
    _, _, m = run_step(make_tc(label_smoothing=0.1, loss_chunk=chunk), batch)
    nll = np_token_nll(forward()(batch), batch["tgt"], 0.1)
    assert float(m["loss"]) == pytest.approx(nll[mask].mean(), rel=1e-5)


def test_default_config_projects_the_real_rows_only():
    """The default train config (loss_chunk 512) takes `Seq2Seq.features` and the chunked
    loss; loss_chunk=0 and loss_over_padding=True the logits of every position."""
    from jaxattn.config import default_train_config

    model, params = model_and_params()
    state = train_lib.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))

    def methods(tc):
        seen = set()

        def record(next_fun, args, kwargs, context):
            if context.module is not None and type(context.module) is type(model):
                seen.add(context.method_name)
            return next_fun(*args, **kwargs)

        step = functools.partial(train_lib.train_step, model=model, tc=tc)
        with nn.intercept_methods(record):
            jax.eval_shape(step, state, make_batch(), jax.random.key(0))
        return seen

    default = default_train_config()
    assert default.loss_chunk > 0
    assert {"features", "output_logits"} <= methods(default)
    for off in (dict(loss_chunk=0), dict(loss_chunk=8, loss_over_padding=True)):
        seen = methods(make_tc(**off))
        assert "__call__" in seen and not {"features", "output_logits"} & seen


def test_masked_loss_sum_is_the_masked_sum_of_token_losses():
    """`masked_loss_sum` over [B, T, H] features equals sum(token_losses * mask) for chunks
    that divide the positions or not, fractional weights included, and so does its gradient."""
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((3, 7, 5)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((5, 11)), jnp.float32)
    tgt = jnp.asarray(rng.integers(0, 11, (3, 7)), jnp.int32)
    mask = jnp.asarray((np.arange(7)[None] < np.array([7, 2, 0])[:, None]) * 0.5, jnp.float32)

    def full(h, kernel):
        return (token_losses(h @ kernel, tgt, 0.2) * mask).sum()

    want, want_grads = jax.value_and_grad(full, argnums=(0, 1))(h, kernel)
    for chunk in (1, 3, 9, 64):

        def chunked(h, kernel, chunk=chunk):
            return masked_loss_sum(h, tgt, mask, lambda x: x @ kernel, 0.2, chunk)

        got, grads = jax.jit(jax.value_and_grad(chunked, argnums=(0, 1)))(h, kernel)
        assert float(got) == pytest.approx(float(want), rel=1e-6)
        tree_close(grads, want_grads, rtol=1e-5, atol=1e-6)


def test_train_step_runs_in_training_mode():
    """The step's forward pass has dropout on (its loss differs from the eval-mode one)."""
    batch = make_batch()
    mask = np.arange(T)[None] < TGT_LEN[:, None]
    ev = forward(dropout=0.5)(batch)
    _, _, m = run_step(make_tc(), batch, dropout=0.5)
    assert abs(float(m["loss"]) - np_token_nll(ev, batch["tgt"])[mask].mean()) > 1e-3


def test_teacher_forcing_ratio_is_the_share_of_forced_steps():
    """Seq2Seq draws teacher forcing per step and sentence with probability `ratio` (not
    1 - ratio): the mask handed to the decoder is recorded (the decoder itself is skipped)."""
    model, params = model_and_params()
    rng = np.random.default_rng(5)
    src = jnp.asarray(rng.integers(3, V, (64, S)), jnp.int32)
    tgt = jnp.asarray(rng.integers(3, V, (64, 20)), jnp.int32)

    def forcing_mask(ratio):
        seen = []

        def skip_decoder(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and type(context.module) is type(model.decoder):
                seen.append(kwargs["teacher_forcing"])
                return jnp.zeros(tgt.shape + (V,)), jnp.zeros(tgt.shape + (S,)), None
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(skip_decoder):
            model.apply(
                {"params": params},
                src,
                None,
                tgt,
                teacher_forcing_ratio=ratio,
                rng=jax.random.key(0),
            )
        return seen[0]

    assert forcing_mask(1.0) is None  # always forced
    assert not np.asarray(forcing_mask(0.0)).any()
    for ratio in (0.2, 0.8):
        mask = np.asarray(forcing_mask(ratio))
        assert mask.shape == tgt.shape and abs(mask.mean() - ratio) < 0.05
        assert 0 < mask[:, 5].mean() < 1 and 0 < mask[7].mean() < 1  # per step and sentence


# ---------------------------------------------------------------------- scheduled sampling
def test_teacher_forcing_schedules_values():
    """Each schedule's ratio at chosen steps, from its formula: start s = teacher_forcing_ratio,
    minimum m, ratio = m + (s - m) * f(step); 'constant' is the Python float itself."""
    s, m = 0.9, 0.2

    def ratios(name, steps=(0, 1, 5, 50, 100, 250)):
        tc = make_tc(teacher_forcing_schedule=name, teacher_forcing_ratio=s, teacher_forcing_min=m)
        fn = teacher_forcing_schedule(tc)
        return np.array([float(jax.jit(fn)(jnp.asarray(i, jnp.int32))) for i in steps])

    steps = np.array([0, 1, 5, 50, 100, 250], np.float64)
    const = teacher_forcing_schedule(make_tc(teacher_forcing_ratio=s))
    assert const(jnp.asarray(7)) == s and isinstance(const(7), float)
    for name, f in [
        ("linear", np.maximum(0.0, 1 - steps / 100)),  # decay_steps 100
        ("exponential", 0.9**steps),  # decay_rate 0.9
        ("inverse_sigmoid", 10.0 / (10.0 + np.exp(steps / 10.0))),
    ]:  # k = 10
        np.testing.assert_allclose(
            ratios(name), m + (s - m) * f, rtol=1e-6, atol=1e-7, err_msg=name
        )
    np.testing.assert_allclose(ratios("linear")[[0, 3, 4, 5]], [0.9, 0.55, 0.2, 0.2], rtol=1e-6)
    with pytest.raises(TrainingError, match="teacher_forcing_schedule"):
        ratios("cosine")


def test_scheduled_ratio_reaches_the_train_step():
    """A linear schedule from 1 to 0 over 10 steps: train_step's loss is the teacher-forced
    loss at step 0 and the free-running loss from step 10 on, from one compilation (the ratio
    is computed from the traced state.step)."""
    batch = make_batch(pad_fill=0)
    tc = make_tc(teacher_forcing_schedule="linear", teacher_forcing_decay_steps=10)
    mask = np.arange(T)[None] < TGT_LEN[:, None]
    forced = np_token_nll(forward()(batch), batch["tgt"])[mask].mean()
    free = np_token_nll(forward(teacher_forcing_ratio=0.0)(batch), batch["tgt"])[mask].mean()
    assert abs(forced - free) > 1e-3
    losses = {k: float(run_step(tc, batch, at_step=k)[2]["loss"]) for k in (0, 10, 37)}
    assert losses[0] == pytest.approx(forced, rel=1e-5)
    assert losses[10] == pytest.approx(free, rel=1e-5)
    assert losses[37] == pytest.approx(free, rel=1e-5)
    step, _ = jitted_step(tc.to_json(sort_keys=True), 0.0)
    assert step._cache_size() == 1  # no recompilation per step


def test_default_config_keeps_the_teacher_forced_fast_path():
    """The default train config (constant ratio 1.0) hands the decoder teacher_forcing=None,
    its fast teacher-forced scan; a decaying schedule hands it a [B, T] mask of coins."""
    from jaxattn.config import default_train_config

    model, params = model_and_params()
    batch = make_batch()
    state = train_lib.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))
    default = default_train_config()
    assert (default.teacher_forcing_schedule, default.teacher_forcing_ratio) == ("constant", 1.0)

    def forcing(tc):
        seen = []

        def record(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and type(context.module) is type(model.decoder):
                seen.append(kwargs.get("teacher_forcing"))  # features(): no argument
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            jax.eval_shape(
                functools.partial(train_lib.train_step, model=model, tc=tc),
                state,
                batch,
                jax.random.key(0),
            )
        return seen[0]

    assert forcing(default) is None
    for name in ("linear", "exponential", "inverse_sigmoid"):
        assert forcing(make_tc(teacher_forcing_schedule=name)).shape == (B, T)


def test_eval_step_sums():
    """eval_step returns the summed NLL over real tokens and their count (or every position)."""
    model, params = model_and_params()
    batch = make_batch(pad_fill=None)
    logits = forward()(batch)
    nll = np_token_nll(logits, batch["tgt"])
    mask = np.arange(T)[None] < TGT_LEN[:, None]
    for over_padding, want_loss, want_tokens in [
        (False, nll[mask].sum(), TGT_LEN.sum()),
        (True, nll.sum(), B * T),
    ]:
        assert model.decoder.gives_features  # so chunk > 0 takes the real positions' path
        for chunk in (0, 3, 512):  # the full logits; the real positions in chunks
            out = jax.jit(
                functools.partial(
                    train_lib.eval_step, model=model, loss_over_padding=over_padding, chunk=chunk
                )
            )(params, batch)
            assert float(out["loss_sum"]) == pytest.approx(want_loss, rel=1e-5)
            assert float(out["tokens"]) == want_tokens


def make_big_batch(rows=12, seed=5):
    """`rows` sentences of random lengths (so that micro-batches hold unequal token counts)."""
    rng = np.random.default_rng(seed)
    src_len = rng.integers(1, S + 1, rows).astype(np.int32)
    tgt_len = rng.integers(1, T + 1, rows).astype(np.int32)
    src = np.where(np.arange(S) < src_len[:, None], rng.integers(3, V, (rows, S)), 0)
    tgt = np.where(np.arange(T) < tgt_len[:, None], rng.integers(3, V, (rows, T)), 0)
    return {
        "src": jnp.asarray(src, jnp.int32),
        "src_len": jnp.asarray(src_len),
        "tgt": jnp.asarray(tgt, jnp.int32),
        "tgt_len": jnp.asarray(tgt_len),
    }


@pytest.mark.parametrize("accumulate", [2, 4])
def test_accumulated_micro_batches_equal_one_big_batch(accumulate):
    """train.accumulate splits the batch into micro-batches of unequal token counts, whose
    gradients, weighted by their tokens, make the whole batch's: the same loss, gradient
    norm and SGD update as one step on the whole batch (guards against a mean of the
    micro-batches' means, a missed micro-batch, or a second update)."""
    batch = make_big_batch()
    tokens = [int(batch["tgt_len"][i::accumulate].sum()) for i in range(accumulate)]
    assert len(set(tokens)) > 1, tokens  # unequal micro-batches, else a mean of means passes
    _, one, m1 = run_step(make_tc(), batch)
    state, acc, m = run_step(make_tc(accumulate=accumulate), batch)
    assert float(m["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)
    assert float(m["grad_norm"]) == pytest.approx(float(m1["grad_norm"]), rel=1e-5)
    assert int(m["tokens"]) == int(m1["tokens"]) == int(batch["tgt_len"].sum())
    assert int(acc.step) == int(one.step) == 1
    moved = jax.tree.map(jnp.subtract, one.params, state.params)
    assert float(optax.global_norm(moved)) > 1e-3  # the update is not nothing
    tree_close(acc.params, one.params, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------ optimizers
def one_update(tc, grads, params=None, steps=1):
    tx = make_optimizer(tc, total_steps=100)
    params = {"w": jnp.ones(4)} if params is None else params
    opt_state = tx.init(params)
    for _ in range(steps):
        updates, opt_state = tx.update(grads, opt_state, params)
    return np.asarray(updates["w"])


def test_grad_clip_bounds_the_update_norm():
    """With SGD, a gradient of norm 200 clipped at 1.5 gives an update of norm lr * 1.5; a
    gradient below the clip is untouched; grad_clip=0 clips nothing. In train_step too: the
    parameters move by lr * grad_clip (global norm) while the logged grad_norm is unclipped."""
    batch = make_batch()
    for clip in (0.05, 0.0):
        state, new, m = run_step(make_tc(grad_clip=clip), batch)
        moved = float(optax.global_norm(jax.tree.map(jnp.subtract, new.params, state.params)))
        assert float(m["grad_norm"]) > 0.5  # far above the clip
        want = 0.1 * (clip or float(m["grad_norm"]))
        assert moved == pytest.approx(want, rel=1e-4), (clip, moved)
    big = {"w": jnp.array([120.0, -160.0, 0.0, 0.0])}  # norm 200
    u = one_update(make_tc(grad_clip=1.5), big)
    assert np.linalg.norm(u) == pytest.approx(0.1 * 1.5, rel=1e-5)
    np.testing.assert_allclose(u, -0.1 * 1.5 * np.asarray(big["w"]) / 200, rtol=1e-5)
    small = {"w": jnp.array([0.3, -0.4, 0.0, 0.0])}  # norm 0.5
    np.testing.assert_allclose(
        one_update(make_tc(grad_clip=1.5), small), -0.1 * small["w"], rtol=1e-6
    )
    np.testing.assert_allclose(one_update(make_tc(grad_clip=0.0), big), -0.1 * big["w"], rtol=1e-6)


def test_optimizer_updates_match_optax():
    """SGD is plain (no momentum); Adam uses the configured betas; AdamW decays the weights."""
    g = {"w": jnp.array([0.5, -1.0, 2.0, 0.1])}
    np.testing.assert_allclose(one_update(make_tc(), g, steps=3), -0.1 * g["w"], rtol=1e-6)
    for opt, kw in [("adam", {}), ("adamw", {"weight_decay": 0.3})]:
        tc = make_tc(optimizer=opt, learning_rate=0.01, b1=0.5, b2=0.8, **kw)
        ref = getattr(optax, opt)(0.01, b1=0.5, b2=0.8, **kw)
        params = {"w": jnp.arange(1.0, 5.0)}
        state = ref.init(params)
        for i in range(3):  # a changing gradient, so that the betas matter
            updates, state = ref.update({"w": g["w"] * (i + 1) ** 2}, state, params)
        tx = make_optimizer(tc, 100)
        got_state = tx.init(params)
        for i in range(3):
            got, got_state = tx.update({"w": g["w"] * (i + 1) ** 2}, got_state, params)
        np.testing.assert_allclose(got["w"], updates["w"], rtol=1e-5)
    decayed = one_update(
        make_tc(optimizer="adamw", learning_rate=0.01, weight_decay=0.3),
        {"w": jnp.zeros(4)},
        params={"w": jnp.full(4, 2.0)},
    )
    np.testing.assert_allclose(decayed, -0.01 * 0.3 * 2.0, rtol=1e-5)


def test_optimizer_follows_the_schedule():
    """The optimizer's step size is the schedule's value at each step (SGD, warmup_cosine)."""
    tc = make_tc(lr_schedule="warmup_cosine", warmup_steps=4)
    tx = make_optimizer(tc, total_steps=20)
    schedule = make_schedule(tc, 20)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    for step in range(6):
        u, state = tx.update({"w": jnp.ones(2)}, state, params)
        np.testing.assert_allclose(u["w"], -float(schedule(step)), rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------- schedules
def test_schedules_values():
    """Each schedule's value at chosen steps, computed by hand."""
    lr, total = 0.2, 100

    def sched(name, warmup=0):
        return make_schedule(
            make_tc(learning_rate=lr, lr_schedule=name, warmup_steps=warmup), total
        )

    const = sched("constant")
    assert [float(const(s)) for s in (0, 50, 99)] == pytest.approx([lr] * 3)
    cos = sched("cosine")
    for s in (0, 25, 50, 100):
        assert float(cos(s)) == pytest.approx(lr * 0.5 * (1 + np.cos(np.pi * s / total)), abs=1e-7)
    wc = sched("warmup_cosine", warmup=10)
    assert float(wc(0)) == pytest.approx(0.0, abs=1e-8)
    assert float(wc(5)) == pytest.approx(lr / 2, rel=1e-5)
    assert float(wc(10)) == pytest.approx(lr, rel=1e-5)
    assert float(wc(55)) == pytest.approx(lr / 2, rel=1e-5)  # half way down the cosine
    assert float(wc(100)) == pytest.approx(0.0, abs=1e-7)
    rs = sched("rsqrt", warmup=4)
    for s in range(12):  # linear warmup to lr at step 3, then lr * sqrt(4 / (step + 1))
        want = lr * (s + 1) / 4 if s < 4 else lr * np.sqrt(4 / (s + 1))
        assert float(rs(s)) == pytest.approx(want, rel=1e-5)
    pl = sched("plateau", warmup=4)  # linear warmup to lr at step 3, then lr until reduced
    for s in range(8):
        assert float(pl(s)) == pytest.approx(lr * min((s + 1) / 4, 1.0), rel=1e-6)
    assert float(sched("plateau")(0)) == pytest.approx(lr)  # no warmup: lr from the start
    with pytest.raises(TrainingError, match="lr_schedule"):
        sched("linear")


@pytest.mark.parametrize(
    "metric,scores,min_delta,rates",
    [
        # since the best: 0 0 1 2 0 1 2 3 4 5 -> x0.5 at every 2nd, down to 0.02
        (
            "bleu",
            [10, 12, 11, 11, 13, 12, 12, 12, 12, 12],
            0.0,
            [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02],
        ),
        # loss: lower is better; 2.95 is no gain of more than min_delta 0.1 over 3.0
        ("loss", [3.0, 2.95, 2.0, 2.5, 1.95, 1.5], 0.1, [0.1, 0.1, 0.1, 0.1, 0.05, 0.05]),
    ],
)
def test_plateau_lowers_the_rate_at_the_right_validations(metric, scores, min_delta, rates):
    """A scripted sequence of validation scores: the rate in the optimizer state is
    multiplied by plateau_factor at every plateau_patience-th validation in a row without
    an improvement, never below min_learning_rate, and the optimizer steps with it."""
    tc = make_tc(
        lr_schedule="plateau",
        learning_rate=0.1,
        min_learning_rate=0.02,
        best_metric=metric,
        early_stopping_min_delta=min_delta,
        grad_clip=1e3,  # the rate is found inside a chain too
    )
    tx = make_optimizer(tc, total_steps=100)
    params, g = {"w": jnp.ones(2)}, {"w": jnp.array([0.5, -1.0])}
    opt_state = tx.init(params)
    history = ValidationHistory(metric, min_delta)
    got = []
    for step, score in enumerate(scores):
        history.add(step, {metric: score})
        opt_state, _ = reduce_on_plateau(tc, opt_state, history.since_best())
        got.append(plateau_rate(opt_state))
        update, _ = tx.update(g, opt_state, params)
        np.testing.assert_allclose(update["w"], -got[-1] * g["w"], rtol=1e-6)
    assert got == pytest.approx(rates, rel=1e-6)


def test_other_schedules_have_no_plateau_state():
    """Only 'plateau' puts a rate in the optimizer state: the others' checkpoints keep their
    structure, and a plateau of validations changes nothing for them."""
    for name in ("constant", "cosine", "warmup_cosine", "rsqrt"):
        tc = make_tc(lr_schedule=name, warmup_steps=2)
        opt_state = make_optimizer(tc, 100).init({"w": jnp.ones(2)})
        ref = optax.sgd(make_schedule(tc, 100)).init({"w": jnp.ones(2)})
        assert jax.tree.structure(opt_state) == jax.tree.structure(ref)
        assert plateau_rate(opt_state) is None
        assert reduce_on_plateau(tc, opt_state, 2) == (opt_state, None)
