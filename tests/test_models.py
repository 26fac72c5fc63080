"""Tests for jaxattn.model.seq2seq (Seq2Seq, build_model): end-to-end shapes, masking and padding
invariance, teacher forcing ratios against step-by-step loops, free running, jit/grad/vmap,
bridges and config errors, bf16, the tutorial-faithful modes, dropout, and a model that learns
a synthetic reverse task with anti-diagonal attention."""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxattn
from jaxattn import Seq2Seq, build_model, default_model_config
from jaxattn.model.rnn import valid_mask

SRC_V, TGT_V, BOS = 13, 11, 0
B, S, T, EXTRA = 3, 6, 5, 3
LENGTHS = np.array([6, 3, 1], np.int32)


def small_config(**overrides):
    c = default_model_config()
    c.hidden, c.embed_dim = 8, 6
    c.attention_max_length = S + EXTRA
    c.attention_window = 2
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def make_src(seed=0, batch=B, src_len=S, lengths=LENGTHS):
    """Random ids at valid positions, 0 (the tutorial's SOS-as-padding) elsewhere."""
    rng = np.random.default_rng(seed)
    src = rng.integers(2, SRC_V, size=(batch, src_len)).astype(np.int32)
    return jnp.asarray(np.where(np.arange(src_len)[None] < lengths[:, None], src, 0))


def garbage_padding(src, extra, seed=1):
    """Appends `extra` columns; every padded position gets a random id."""
    rng = np.random.default_rng(seed)
    src = np.concatenate([np.asarray(src), np.zeros((src.shape[0], extra), np.int32)], axis=1)
    junk = rng.integers(0, SRC_V, size=src.shape).astype(np.int32)
    return jnp.asarray(np.where(np.arange(src.shape[1])[None] < LENGTHS[:, None], src, junk))


def make_targets(seed=0, batch=B, steps=T):
    return jnp.asarray(np.random.default_rng(seed).integers(2, TGT_V, size=(batch, steps)))


@pytest.fixture
def init(random_init):
    """init(model, src=None, lengths=None, targets=None): random variables of `model`."""

    def make(model, src=None, lengths=None, targets=None):
        src = make_src() if src is None else src
        lengths = jnp.asarray(LENGTHS) if lengths is None else lengths
        targets = make_targets() if targets is None else targets
        return random_init(model, src, lengths, targets)

    return make


def tree_allclose(a, b, **kw):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(x, y, **kw)


def test_importable_from_package():
    for name in (
        "Seq2Seq",
        "build_model",
        "default_model_config",
        "Encoder",
        "RNN",
        "GRUCell",
        "LSTMCell",
        "BahdanauDecoder",
        "LuongDecoder",
        "PlainDecoder",
        "LegacyDecoder",
    ):
        assert hasattr(jaxattn, name), name
        assert name in jaxattn.__all__


def test_default_config_is_the_tutorial():
    """Default config: H = 128 GRU encoder/decoder, additive attention with biases, copy
    bridge; parameter shapes match the tutorial's modules (checked without compiling)."""
    c = default_model_config()
    assert (c.cell, c.hidden, c.decoder, c.attention, c.bridge) == (
        "gru",
        128,
        "bahdanau",
        "additive",
        "copy",
    )
    assert (c.dropout, c.encoder_layers, c.decoder_layers, c.bidirectional) == (0.1, 1, 1, False)
    model = build_model(c, 50, 40, BOS)
    src = jnp.zeros((2, 10), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), src, None, src))["params"]
    enc, dec = shapes["encoder"], shapes["decoder"]
    assert enc["embed"]["embedding"].shape == (50, 128)
    assert enc["fwd_0"]["cell"]["input_proj"]["kernel"].shape == (128, 3 * 128)
    assert dec["embed"]["embedding"].shape == (40, 128)
    assert dec["rnn_0"]["input_proj"]["kernel"].shape == (2 * 128, 3 * 128)  # GRU(2H, H)
    assert dec["out"]["kernel"].shape == (128, 40)
    att = dec["attention"]
    assert att["query_proj"]["kernel"].shape == (128, 128)  # Wa
    assert att["key_proj"]["kernel"].shape == (128, 128)  # Ua
    assert att["energy"]["kernel"].shape == (128, 1) and "bias" in att["energy"]  # Va


# ---------------------------------------------------------------------------------------------
# End to end: shapes, masking, padding invariance
# ---------------------------------------------------------------------------------------------

E2E = {
    "tutorial-gru": dict(),
    "bahdanau-bi-2layer-lstm-dense": dict(
        cell="lstm", bidirectional=True, encoder_layers=2, bridge="dense"
    ),
    "luong-general-bi-gru-dense": dict(
        decoder="luong", attention="general", bidirectional=True, bridge="dense"
    ),
    "luong-dot-2x2-lstm": dict(
        decoder="luong", attention="dot", cell="lstm", encoder_layers=2, decoder_layers=2
    ),
    "legacy-location-lstm": dict(decoder="legacy", attention="location", cell="lstm"),
}


@pytest.mark.parametrize("name", list(E2E))
def test_model_shapes_masking_and_padding_invariance(name, init):
    c = small_config(**E2E[name])
    model = build_model(c, SRC_V, TGT_V, BOS)
    variables = init(model)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()
    src2 = garbage_padding(src, EXTRA)

    @jax.jit
    def run(variables, src, src2):
        return model.apply(variables, src, lengths, targets), model.apply(
            variables, src2, lengths, targets
        )

    (logits, weights), (logits2, weights2) = run(variables, src, src2)
    assert logits.shape == (B, T, TGT_V) and logits.dtype == jnp.float32
    assert weights.shape == (B, T, S) and weights2.shape == (B, T, S + EXTRA)
    assert np.all(np.isfinite(logits))
    w, pad = np.asarray(weights), ~np.asarray(valid_mask(lengths, S))[:, None, :]
    if c.decoder == "plain":
        assert np.all(w == 0.0)
    else:
        assert np.all(w[np.broadcast_to(pad, w.shape)] == 0.0)
        sums = w.sum(-1)
        if c.attention.startswith("local"):
            assert np.all(sums <= 1 + 1e-5) and np.all(sums > 0)
        else:
            np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    # Extra padding with garbage ids: identical logits and weights.
    np.testing.assert_allclose(logits2, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights2[..., :S], weights, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(weights2)[..., S:] == 0.0)


# ---------------------------------------------------------------------------------------------
# Teacher forcing ratio and free running, against Python loops over decode_step
# ---------------------------------------------------------------------------------------------


def step_fns(model):
    encode = jax.jit(lambda v, src, n: model.apply(v, src, n, method="encode"))
    init_state = jax.jit(lambda v, memory: model.apply(v, memory, method="init_state"))
    step = jax.jit(
        lambda v, memory, state, prev, t: model.apply(
            v, memory, state, prev, t, method="decode_step"
        )
    )
    return encode, init_state, step


def python_loop(model, variables, src, lengths, targets, forced):
    """decode_step T times; input = gold (targets[t-1], BOS at t = 0) if forced else argmax."""
    encode, init_state, step = step_fns(model)
    memory = encode(variables, src, lengths)
    state = init_state(variables, memory)
    prev = jnp.full((src.shape[0],), BOS, jnp.int32)
    out_logits, out_weights = [], []
    for t in range(targets.shape[1]):
        if forced and t > 0:
            prev = targets[:, t - 1].astype(jnp.int32)
        state, logits, weights = step(variables, memory, state, prev, jnp.int32(t))
        prev = jnp.argmax(logits, -1).astype(jnp.int32)
        out_logits.append(logits)
        out_weights.append(weights)
    return jnp.stack(out_logits, 1), jnp.stack(out_weights, 1)


def test_ratio_extremes_match_decode_step_loops(init):
    model = build_model(small_config(**E2E["luong-dot-2x2-lstm"]), SRC_V, TGT_V, BOS)
    variables = init(model)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets().astype(jnp.int32)

    @jax.jit  # one compile for the six variants
    def run(variables, one, zero):
        key = jax.random.key(0)
        return (
            model.apply(variables, src, lengths, targets, teacher_forcing_ratio=1.0),
            model.apply(variables, src, lengths, targets, teacher_forcing_ratio=0.0),
            model.apply(variables, src, lengths, None, max_len=T),
            model.apply(variables, src, lengths, targets),
            # traced ratios (a schedule's values inside train_step): coins, exact at 1 and 0
            model.apply(variables, src, lengths, targets, teacher_forcing_ratio=one, rng=key),
            model.apply(variables, src, lengths, targets, teacher_forcing_ratio=zero, rng=key),
        )

    (
        (forced, forced_w),
        (free, free_w),
        (nothing, nothing_w),
        (default, _),
        traced_one,
        traced_zero,
    ) = run(variables, jnp.float32(1.0), jnp.float32(0.0))
    tree_allclose(traced_one, (forced, forced_w), rtol=1e-5, atol=1e-6)
    tree_allclose(traced_zero, (free, free_w), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="rng"):
        jax.eval_shape(
            lambda: model.apply(
                variables, src, lengths, targets, teacher_forcing_ratio=jnp.float32(1.0)
            )
        )
    ref_forced, ref_forced_w = python_loop(model, variables, src, lengths, targets, True)
    ref_free, ref_free_w = python_loop(model, variables, src, lengths, targets, False)
    np.testing.assert_allclose(forced, ref_forced, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(forced_w, ref_forced_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(free, ref_free, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(free_w, ref_free_w, rtol=1e-5, atol=1e-6)
    assert not np.allclose(forced, free)  # an untrained model's argmax is not the gold token

    # Ratio 0.0 == free running without targets for max_len steps.
    np.testing.assert_allclose(nothing, free, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nothing_w, free_w, rtol=1e-6, atol=1e-6)
    # The default is ratio 1.0 (the current tutorial) and needs no rng.
    np.testing.assert_array_equal(default, forced)


def pick_rows(choose, a, b):
    """Row-wise select between two batched arrays."""
    return jnp.where(jnp.asarray(choose).reshape((-1,) + (1,) * (a.ndim - 1)), a, b)


def test_mixed_teacher_forcing(init):
    """Ratio 0.5: needs an rng; same rng -> same output; every step is either teacher forced
    or free running (checked step by step with decode_step); about half are forced, drawn
    per step and per sentence."""
    model = build_model(small_config(), SRC_V, TGT_V, BOS)
    batch, steps = 16, 6
    lengths = np.random.default_rng(2).integers(1, S + 1, size=batch).astype(np.int32)
    src = make_src(3, batch=batch, lengths=lengths)
    lengths = jnp.asarray(lengths)
    targets = make_targets(4, batch=batch, steps=steps).astype(jnp.int32)
    variables = init(model, src, lengths, targets)

    with pytest.raises(ValueError, match="rng"):
        jax.eval_shape(
            lambda: model.apply(variables, src, lengths, targets, teacher_forcing_ratio=0.5)
        )

    @jax.jit
    def mixed(rng):
        return model.apply(variables, src, lengths, targets, teacher_forcing_ratio=0.5, rng=rng)

    a, b = mixed(jax.random.key(7)), mixed(jax.random.key(7))
    tree_allclose(a, b, rtol=0, atol=0)
    others = [mixed(jax.random.key(k))[0] for k in (8, 9)]
    assert any(not np.allclose(o, a[0]) for o in others)
    logits = np.asarray(a[0])

    # Replay with decode_step, choosing for each row the input (gold or previous argmax) that
    # reproduces the model's logits.
    encode, init_state, step = step_fns(model)
    memory = encode(variables, src, lengths)
    state = init_state(variables, memory)
    prev = jnp.full((batch,), BOS, jnp.int32)
    forced_count = ambiguous = 0
    decisions = [set() for _ in range(batch)]  # per row: forced (True) / free (False) steps
    for t in range(steps):
        gold = jnp.full((batch,), BOS, jnp.int32) if t == 0 else targets[:, t - 1]
        s_gold, l_gold, _ = step(variables, memory, state, gold, jnp.int32(t))
        s_free, l_free, _ = step(variables, memory, state, prev, jnp.int32(t))
        is_gold = np.isclose(l_gold, logits[:, t], atol=1e-5).all(-1)
        is_free = np.isclose(l_free, logits[:, t], atol=1e-5).all(-1)
        assert np.all(is_gold | is_free), f"step {t}: neither forced nor free"
        if t > 0:
            same = np.asarray(gold == prev)
            ambiguous += int(same.sum())
            forced_count += int((is_gold & ~same).sum())
            for row in np.flatnonzero(~same):
                decisions[row].add(bool(is_gold[row]))
        state = jax.tree.map(partial(pick_rows, is_gold), s_gold, s_free)
        prev = jnp.argmax(jnp.asarray(logits[:, t]), -1).astype(jnp.int32)
    decided = batch * (steps - 1) - ambiguous
    assert decided > 40
    assert 0.25 < forced_count / decided < 0.75, (forced_count, decided)
    # The draw is per step, not per sentence: some sentences mix forced and free steps.
    assert sum(len(d) == 2 for d in decisions) >= 3, decisions


def test_free_running_needs_max_len(init):
    model = build_model(small_config(), SRC_V, TGT_V, BOS)
    variables = init(model)
    with pytest.raises(ValueError, match="max_len"):
        jax.eval_shape(lambda: model.apply(variables, make_src(), jnp.asarray(LENGTHS)))


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


def test_grad_jit_vmap(init):
    """LSTM, bidirectional encoder, Luong decoder; mixed teacher forcing and dropout."""
    c = small_config(**E2E["luong-general-bi-gru-dense"], cell="lstm")
    model = build_model(c, SRC_V, TGT_V, BOS)
    variables = init(model)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()

    def loss(params, rng):
        logits, _ = model.apply(
            {"params": params},
            src,
            lengths,
            targets,
            teacher_forcing_ratio=0.5,
            rng=rng,
            train=True,
            rngs={"dropout": rng},
        )
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return nll.mean()

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"], jax.random.key(1))
    assert np.isfinite(value)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    for part in ("encoder", "decoder"):
        assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads[part]))

    # vmap over an extra leading axis: two batches at once == one at a time.
    srcs = jnp.stack([src, make_src(5)])
    lens = jnp.stack([lengths, jnp.asarray([4, 6, 2], jnp.int32)])
    tgts = jnp.stack([targets, make_targets(6)])

    def fn(s, n, t):
        return model.apply(variables, s, n, t)

    logits, weights = jax.jit(jax.vmap(fn))(srcs, lens, tgts)
    assert logits.shape == (2, B, T, TGT_V) and weights.shape == (2, B, T, S)
    one = jax.jit(fn)
    for i in range(2):
        want_logits, want_weights = one(srcs[i], lens[i], tgts[i])
        np.testing.assert_allclose(logits[i], want_logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(weights[i], want_weights, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Config options and errors
# ---------------------------------------------------------------------------------------------


def test_bridge_copy_needs_matching_sizes(init):
    src = make_src()
    bi_copy = build_model(small_config(bidirectional=True, bridge="copy"), SRC_V, TGT_V, BOS)
    with pytest.raises(ValueError, match="bridge='copy'"):
        jax.eval_shape(lambda: init(bi_copy, src))
    for bridge in ("dense", "zero"):
        ok = build_model(small_config(bidirectional=True, bridge=bridge), SRC_V, TGT_V, BOS)
        params = jax.eval_shape(lambda m=ok: init(m, src))["params"]["decoder"]
        assert ("bridge_proj" in params) == (bridge == "dense")
    uni = build_model(small_config(bridge="copy"), SRC_V, TGT_V, BOS)
    assert "bridge_proj" not in jax.eval_shape(lambda: init(uni, src))["params"]["decoder"]


def test_config_errors(init):
    with pytest.raises(ValueError, match="Unknown decoder"):
        build_model(small_config(decoder="mamba"), SRC_V, TGT_V, BOS)
    with pytest.raises(ValueError, match="sizes must match"):  # 8 vs 16 (bidirectional)
        build_model(
            small_config(attention="dot", bidirectional=True, bridge="dense"), SRC_V, TGT_V, BOS
        )
    with pytest.raises(ValueError, match="Unknown attention"):
        build_model(small_config(attention="cosine"), SRC_V, TGT_V, BOS)
    with pytest.raises(ValueError, match="Unknown RNN cell"):
        model = build_model(small_config(cell="rnn"), SRC_V, TGT_V, BOS)
        jax.eval_shape(lambda: init(model))


def test_bfloat16(init):
    c32 = small_config(**E2E["luong-dot-2x2-lstm"])
    c16 = small_config(**E2E["luong-dot-2x2-lstm"], dtype="bfloat16")
    m32, m16 = build_model(c32, SRC_V, TGT_V, BOS), build_model(c16, SRC_V, TGT_V, BOS)
    variables = init(m32)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()
    assert jax.tree.structure(jax.eval_shape(lambda: init(m16))) == jax.tree.structure(variables)

    @jax.jit
    def run(variables):
        return m16.apply(variables, src, lengths, targets), m32.apply(
            variables, src, lengths, targets
        )

    (logits, weights), (ref_logits, _) = run(variables)
    assert logits.dtype == jnp.float32 and logits.shape == (B, T, TGT_V)
    assert np.all(np.isfinite(logits)) and np.all(np.isfinite(np.asarray(weights, np.float32)))
    np.testing.assert_allclose(logits, ref_logits, atol=0.1)  # close to the f32 model
    w = np.asarray(weights, np.float32)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=2e-2)
    pad = ~np.asarray(valid_mask(lengths, S))[:, None, :]
    assert np.all(w[np.broadcast_to(pad, w.shape)] == 0.0)


@pytest.mark.parametrize("flag", ["mask_attention", "encoder_lengths"])
def test_tutorial_faithful_modes(flag, init):
    """mask_attention=False attends to padding; encoder_lengths=False reads it. Both change
    the output on padded input (and do nothing without padding)."""
    c = small_config()
    default = build_model(c, SRC_V, TGT_V, BOS)
    faithful = build_model(small_config(**{flag: False}), SRC_V, TGT_V, BOS)
    assert getattr(faithful, flag) is False and getattr(default, flag) is True
    variables = init(default)  # the flags change no parameters
    lengths, targets = jnp.asarray(LENGTHS), make_targets()
    full = jnp.full((B,), S, jnp.int32)
    src = make_src()

    @jax.jit
    def run(src, lengths):
        return default.apply(variables, src, lengths, targets), faithful.apply(
            variables, src, lengths, targets
        )

    (logits_d, w_d), (logits_f, w_f) = run(src, lengths)
    assert not np.allclose(logits_d, logits_f, atol=1e-4)
    pad = np.broadcast_to(~np.asarray(valid_mask(lengths, S))[:, None, :], w_f.shape)
    if flag == "mask_attention":
        assert np.all(np.asarray(w_f)[pad] > 0)  # weight on padding
        np.testing.assert_allclose(np.asarray(w_f).sum(-1), 1.0, atol=1e-5)
    else:
        assert np.all(np.asarray(w_f)[pad] == 0)  # still masked, but the encoder read padding
    (logits_d, w_d), (logits_f, w_f) = run(src, full)  # no padding: identical
    np.testing.assert_allclose(logits_f, logits_d, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w_f, w_d, rtol=1e-6, atol=1e-6)


def test_dropout_only_in_training(init):
    model = build_model(small_config(dropout=0.3), SRC_V, TGT_V, BOS)
    variables = init(model)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()

    @jax.jit
    def run(key):
        return model.apply(variables, src, lengths, targets, train=True, rngs={"dropout": key})

    evaluate = jax.jit(lambda: model.apply(variables, src, lengths, targets))  # no rng needed
    ev1, ev2 = evaluate(), evaluate()
    tree_allclose(ev1, ev2, rtol=0, atol=0)
    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    tree_allclose(a, b, rtol=0, atol=0)
    assert not np.allclose(a[0], c[0])
    assert not np.allclose(a[0], ev1[0])
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(lambda: model.apply(variables, src, lengths, targets, train=True))


def test_seq2seq_from_modules(init):
    """Seq2Seq composes hand-built modules the same way build_model does."""
    c = small_config()
    built = build_model(c, SRC_V, TGT_V, BOS)
    manual = Seq2Seq(
        encoder=jaxattn.Encoder(SRC_V, c.embed_dim, c.hidden),
        decoder=jaxattn.BahdanauDecoder(
            TGT_V, c.embed_dim, c.hidden, jaxattn.AdditiveAttention(c.hidden)
        ),
        bos_id=BOS,
    )
    variables = init(built)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()

    @jax.jit
    def run(variables):
        return manual.apply(variables, src, lengths, targets), built.apply(
            variables, src, lengths, targets
        )

    got, want = run(variables)
    tree_allclose(got, want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Learning: a synthetic reverse task
# ---------------------------------------------------------------------------------------------

EOS, N_SYMBOLS, MIN_LEN, MAX_LEN = 1, 10, 3, 8
REV_V = N_SYMBOLS + 2  # 0 = BOS (and padding), 1 = EOS, 2.. = symbols


def reverse_batch(rng: np.random.Generator, n: int):
    """Random sources of length MIN_LEN..MAX_LEN; target = reversed source + EOS."""
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, size=n).astype(np.int32)
    src = np.zeros((n, MAX_LEN), np.int32)
    tgt = np.zeros((n, MAX_LEN + 1), np.int32)
    for i, length in enumerate(lengths):
        seq = rng.integers(2, REV_V, size=length)
        src[i, :length] = seq
        tgt[i, :length] = seq[::-1]
        tgt[i, length] = EOS
    return jnp.asarray(src), jnp.asarray(lengths), jnp.asarray(tgt)


@pytest.mark.slow
def test_learns_reverse_task_with_antidiagonal_attention():
    """Hidden 64, Bahdanau decoder, additive attention, Adam 3e-3, masked cross-entropy, at most
    1500 steps of batch 64 (usually 200-300). A bidirectional encoder (dense bridge) makes the
    key at position j the one that singles out token j: with a unidirectional encoder, the key
    at j + 1 also still holds token j and alignments often land one step to the right."""
    c = default_model_config()
    c.hidden, c.embed_dim, c.dropout = 64, 32, 0.0
    c.bidirectional, c.bridge = True, "dense"
    model = build_model(c, REV_V, REV_V, BOS)
    rng = np.random.default_rng(0)
    params = jax.jit(model.init)(jax.random.key(0), *reverse_batch(rng, 2))["params"]
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    def target_mask(lengths, steps):
        return jnp.arange(steps)[None] <= lengths[:, None]  # reversed tokens + EOS

    def loss_fn(params, src, lengths, tgt):
        logits, _ = model.apply({"params": params}, src, lengths, tgt)
        mask = target_mask(lengths, tgt.shape[1]).astype(jnp.float32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, tgt)
        return (nll * mask).sum() / mask.sum()

    @jax.jit
    def train_step(params, opt_state, src, lengths, tgt):
        loss, grads = jax.value_and_grad(loss_fn)(params, src, lengths, tgt)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def evaluate(params, src, lengths, tgt):
        mask = target_mask(lengths, tgt.shape[1])
        forced, weights = model.apply({"params": params}, src, lengths, tgt)
        free, free_weights = model.apply({"params": params}, src, lengths, max_len=tgt.shape[1])

        def accuracy(logits):
            return ((logits.argmax(-1) == tgt) & mask).sum() / mask.sum()

        # At step t < L the weights should peak at source position L - 1 - t.
        t = jnp.arange(tgt.shape[1])[None]
        steps = t < lengths[:, None]
        want = lengths[:, None] - 1 - t
        diag = ((weights.argmax(-1) == want) & steps).sum() / steps.sum()
        free_diag = ((free_weights.argmax(-1) == want) & steps).sum() / steps.sum()
        return accuracy(forced), accuracy(free), diag, free_diag, weights

    valid = reverse_batch(np.random.default_rng(1), 256)
    test = reverse_batch(np.random.default_rng(2), 256)  # same shape: no recompilation
    start, max_steps = time.perf_counter(), 1500
    for step in range(1, max_steps + 1):
        params, opt_state, loss = train_step(params, opt_state, *reverse_batch(rng, 64))
        if step % 100 == 0:
            acc, free_acc, diag, _, _ = evaluate(params, *valid)
            if min(acc, free_acc) >= 0.995 and diag >= 0.98:
                break
    elapsed = time.perf_counter() - start
    assert np.isfinite(loss)

    acc, free_acc, diag, free_diag, weights = (np.asarray(x) for x in evaluate(params, *test))
    report = (
        f"{step} steps, {elapsed:.1f}s: acc {acc:.4f} free {free_acc:.4f} "
        f"diag {diag:.4f} free diag {free_diag:.4f}"
    )
    print(report)  # shown with -s
    assert acc >= 0.99, report
    assert free_acc >= 0.99, report
    assert diag >= 0.95 and free_diag >= 0.95, report
    # Weights on padding stay exactly zero after training.
    pad = ~np.asarray(valid_mask(test[1], MAX_LEN))[:, None, :]
    assert np.all(weights[np.broadcast_to(pad, weights.shape)] == 0.0)
    assert elapsed < 120, report


def test_describe_names_every_architecture():
    from jaxattn.model.seq2seq import describe

    assert describe(small_config()) == "gru bahdanau/additive"
    assert describe(small_config(decoder="plain")) == "gru plain"
    tf = dict(heads=2, encoder_layers=2, decoder_layers=3)
    assert describe(small_config(encoder="transformer", decoder="transformer", **tf)) == (
        "transformer 2+3x8/2h"
    )
    mixed = small_config(encoder="transformer", decoder="luong", attention="general", **tf)
    assert describe(mixed) == "transformer 2x8/2h -> gru luong/general"
    assert describe(small_config(decoder="transformer", **tf)) == "gru -> transformer 3x8/2h"
