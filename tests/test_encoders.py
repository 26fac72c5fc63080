"""Tests for jaxattn.model.encoders.Encoder: shapes, padding invariance (outputs at valid positions
and final states) for GRU/LSTM x uni/bidirectional x 1/2 layers, final states versus outputs,
dropout (embedding and inter-layer), the tutorial's padding-reading mode, jit/grad/vmap, bf16."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn.model.encoders import Encoder
from jaxattn.model.rnn import valid_mask

V, E, H = 13, 6, 5
B, S, EXTRA = 3, 6, 3
LENGTHS = np.array([6, 3, 1], np.int32)
CONFIGS = list(itertools.product(["gru", "lstm"], [False, True], [1, 2]))
CONFIG_IDS = [f"{c}-{'bi' if bi else 'uni'}-{n}l" for c, bi, n in CONFIGS]


def make_src(seed=0, src_len=S, lengths=LENGTHS, pad_id=0):
    """Random ids on valid positions, pad_id elsewhere."""
    rng = np.random.default_rng(seed)
    src = rng.integers(2, V, size=(len(lengths), src_len)).astype(np.int32)
    return jnp.asarray(np.where(np.arange(src_len)[None] < lengths[:, None], src, pad_id))


def garbage_padding(src, extra, seed=1):
    """Appends `extra` columns and overwrites every padded position with random ids."""
    rng = np.random.default_rng(seed)
    src = np.concatenate([np.asarray(src), np.zeros((src.shape[0], extra), np.int32)], axis=1)
    junk = rng.integers(0, V, size=src.shape).astype(np.int32)
    valid = np.arange(src.shape[1])[None] < LENGTHS[:, None]
    return jnp.asarray(np.where(valid, src, junk))


def assert_finals_close(a, b, **kw):
    assert len(a) == len(b)
    for carry_a, carry_b in zip(a, b, strict=True):
        assert len(carry_a) == len(carry_b)
        for x, y in zip(carry_a, carry_b, strict=True):
            np.testing.assert_allclose(x, y, **kw)


@pytest.mark.parametrize("cell,bidirectional,num_layers", CONFIGS, ids=CONFIG_IDS)
def test_encoder_shapes_finals_and_padding_invariance(cell, bidirectional, num_layers, random_init):
    enc = Encoder(V, E, H, cell=cell, num_layers=num_layers, bidirectional=bidirectional)
    src = make_src()
    lengths = jnp.asarray(LENGTHS)
    variables = random_init(enc, src, lengths)
    apply = jax.jit(enc.apply)
    out, finals = apply(variables, src, lengths)

    dirs = 2 if bidirectional else 1
    assert enc.output_dim == H * dirs
    assert out.shape == (B, S, H * dirs)
    assert isinstance(finals, tuple) and len(finals) == num_layers
    for carry in finals:
        assert len(carry) == (1 if cell == "gru" else 2)
        assert all(c.shape == (B, H * dirs) for c in carry)
    mask = np.asarray(valid_mask(lengths, S))
    assert np.all(np.asarray(out)[~mask] == 0.0)
    assert np.all(np.abs(np.asarray(out)[mask]).sum(-1) > 0)

    # The top layer's final h: forward half = output at the last valid step, backward half =
    # output at position 0 (the backward RNN ends there).
    top_h = np.asarray(finals[-1][0])
    out_np = np.asarray(out)
    for b, length in enumerate(LENGTHS):
        np.testing.assert_array_equal(top_h[b, :H], out_np[b, length - 1, :H])
        if bidirectional:
            np.testing.assert_array_equal(top_h[b, H:], out_np[b, 0, H:])

    # Extra padding filled with garbage ids changes nothing at valid positions nor the finals.
    src2 = garbage_padding(src, EXTRA)
    out2, finals2 = apply(variables, src2, lengths)
    assert out2.shape == (B, S + EXTRA, H * dirs)
    np.testing.assert_allclose(np.asarray(out2)[:, :S][mask], out_np[mask], rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(out2)[:, S:] == 0.0)
    assert np.all(np.asarray(out2)[:, :S][~mask] == 0.0)
    assert_finals_close(finals2, finals, rtol=1e-6, atol=1e-6)

    if not (bidirectional and num_layers == 2):
        return  # (the per-row check below costs a compile; the richest configs suffice)
    # A row alone (no padding at all, lengths=None) gives the same numbers as in the batch.
    row = 1
    alone, alone_finals = apply(variables, src[row : row + 1, : LENGTHS[row]], None)
    np.testing.assert_allclose(alone[0], out_np[row, : LENGTHS[row]], rtol=1e-6, atol=1e-6)
    assert_finals_close(
        alone_finals,
        tuple(tuple(c[row : row + 1] for c in carry) for carry in finals),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_encoder_without_lengths_reads_padding(bidirectional, random_init):
    """lengths=None is the tutorial: padding is read, so the final state depends on it."""
    enc = Encoder(V, E, H, bidirectional=bidirectional)
    src = make_src()
    src2 = garbage_padding(src, 0)  # same shape, different padding ids
    variables = random_init(enc, src)
    apply = jax.jit(enc.apply)
    out_a, fin_a = apply(variables, src, None)
    out_b, fin_b = apply(variables, src2, None)
    assert not np.allclose(fin_a[0][0][1:], fin_b[0][0][1:])  # rows 1, 2 have padding
    np.testing.assert_allclose(fin_a[0][0][0], fin_b[0][0][0], atol=1e-6)  # row 0 has none
    # Padding outputs are not zeroed without lengths.
    assert np.any(np.asarray(out_a)[2, 1:] != 0)
    mask = np.asarray(valid_mask(jnp.asarray(LENGTHS), S))
    if bidirectional:  # the backward direction reads the padding first
        assert not np.allclose(np.asarray(out_a)[mask], np.asarray(out_b)[mask])
    else:  # the forward direction is causal: valid outputs come before any padding
        np.testing.assert_allclose(np.asarray(out_a)[mask], np.asarray(out_b)[mask], atol=1e-6)
    # With lengths, the two agree (padding never read).
    with_len = [apply(variables, s, jnp.asarray(LENGTHS)) for s in (src, src2)]
    assert_finals_close(with_len[0][1], with_len[1][1], rtol=1e-6, atol=1e-6)


def test_encoder_embedding_dropout(random_init):
    enc = Encoder(V, E, H, cell="lstm", dropout=0.5)
    src, lengths = make_src(), jnp.asarray(LENGTHS)
    variables = random_init(enc, src, lengths)

    @jax.jit
    def run(key):
        return enc.apply(variables, src, lengths, train=True, rngs={"dropout": key})

    @jax.jit
    def run_eval():
        return enc.apply(variables, src, lengths)  # no rng needed

    ev = run_eval()
    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    np.testing.assert_array_equal(a[0], b[0])  # same rng -> same result
    assert_finals_close(a[1], b[1], rtol=0, atol=0)
    assert not np.allclose(a[0], c[0])  # another rng -> another mask
    assert not np.allclose(a[0], ev[0])  # train differs from eval
    np.testing.assert_array_equal(ev[0], run_eval()[0])  # eval is deterministic
    mask = np.asarray(valid_mask(lengths, S))
    assert np.all(np.asarray(a[0])[~mask] == 0.0)  # padding stays zero in training too
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(lambda: enc.apply(variables, src, lengths, train=True))  # needs an rng


@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_inter_layer_dropout(num_layers, random_init):
    """rnn_dropout acts only between stacked layers (as torch.nn.GRU(dropout=...))."""
    enc = Encoder(V, E, H, num_layers=num_layers, dropout=0.0, rnn_dropout=0.5)
    src, lengths = make_src(), jnp.asarray(LENGTHS)
    variables = random_init(enc, src, lengths)

    @jax.jit
    def run(key):
        ev = enc.apply(variables, src, lengths)[0]
        return ev, enc.apply(variables, src, lengths, train=True, rngs={"dropout": key})[0]

    ev, tr = run(jax.random.key(3))
    if num_layers == 1:
        np.testing.assert_allclose(tr, ev, atol=1e-6)
    else:
        assert not np.allclose(tr, ev)
        np.testing.assert_array_equal(tr, run(jax.random.key(3))[1])


def test_encoder_grad_and_vmap():
    enc = Encoder(V, E, H, cell="gru", num_layers=2, bidirectional=True)
    src, lengths = make_src(), jnp.asarray(LENGTHS)
    variables = jax.jit(enc.init)(jax.random.key(0), src, lengths)  # the real initializers

    def loss(params, src):
        out, finals = enc.apply({"params": params}, src, lengths)
        return jnp.sum(jnp.tanh(out)) + sum(jnp.sum(c**2) for carry in finals for c in carry)

    grads = jax.jit(jax.grad(loss))(variables["params"], src)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
    # Embedding rows of ids that only occur in padding get no gradient.
    emb_grad = np.asarray(grads["embed"]["embedding"])
    used = set(np.asarray(src)[np.asarray(valid_mask(lengths, S))].tolist())
    for i in range(V):
        assert np.any(emb_grad[i] != 0) == (i in used)

    # vmap over an extra leading axis (two batches) == each batch alone.
    srcs = jnp.stack([src, make_src(seed=5)])
    lens = jnp.stack([lengths, jnp.asarray([2, 6, 4], jnp.int32)])
    out, finals = jax.jit(jax.vmap(enc.apply, in_axes=(None, 0, 0)))(variables, srcs, lens)
    assert out.shape == (2, B, S, 2 * H)
    one = jax.jit(enc.apply)
    for i in range(2):
        o, f = one(variables, srcs[i], lens[i])
        np.testing.assert_allclose(out[i], o, rtol=1e-6, atol=1e-6)
        assert_finals_close(
            tuple(tuple(c[i] for c in carry) for carry in finals), f, rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_encoder_bfloat16(cell, random_init):
    enc = Encoder(V, E, H, cell=cell, bidirectional=True, dtype=jnp.bfloat16)
    src, lengths = make_src(), jnp.asarray(LENGTHS)
    variables = random_init(enc, src, lengths)
    ref_enc = Encoder(V, E, H, cell=cell, bidirectional=True)

    @jax.jit
    def run(variables):
        return enc.apply(variables, src, lengths), ref_enc.apply(variables, src, lengths)[0]

    (out, finals), ref = run(variables)
    for a in (out, *finals[0]):
        assert np.all(np.isfinite(np.asarray(a, np.float32)))
    # Parameters stay float32; the same parameters in float32 give nearly the same result.
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=5e-2)
    mask = np.asarray(valid_mask(lengths, S))
    assert np.all(np.asarray(out, np.float32)[~mask] == 0.0)
