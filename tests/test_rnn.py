"""Tests for jaxattn.model.rnn: GRU/LSTM cells against NumPy references of the PyTorch formulas, and
the length-aware scanned RNN layer (final carries, zero padding, per-sequence reversal, jit,
grad and vmap)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn.model.rnn import RNN, GRUCell, LSTMCell, make_cell, reverse_padded, valid_mask

B, T, D, H = 4, 6, 5, 7
LENGTHS = np.array([6, 4, 1, 0], np.int32)  # includes a full row and an empty one
CELLS = ["gru", "lstm"]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def dense(p, x):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def np_gru_step(p, carry, x):
    """torch.nn.GRU: gates [r, z, n]; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""
    (h,) = carry
    xr, xz, xn = np.split(dense(p["input_proj"], x), 3, axis=-1)
    hr, hz, hn = np.split(dense(p["hidden_proj"], h), 3, axis=-1)
    r = sigmoid(xr + hr)
    z = sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


def np_lstm_step(p, carry, x):
    """torch.nn.LSTM: gates [i, f, g, o]; c' = f c + i g; h' = o tanh(c')."""
    h, c = carry
    gates = dense(p["input_proj"], x) + dense(p["hidden_proj"], h)
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return (sigmoid(o) * np.tanh(c), c)


NP_STEP = {"gru": np_gru_step, "lstm": np_lstm_step}


def np_rnn(cell, p, x, carry):
    """Runs the NumPy cell over x [T, D] from carry (tuple of [H]); returns outputs, carry."""
    outs = []
    for t in range(x.shape[0]):
        carry = NP_STEP[cell](p, carry, x[t])
        outs.append(carry[0])
    return np.stack(outs), carry


def rand(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def init_carry(cell, seed, batch=B, scale=0.5):
    n = 1 if cell == "gru" else 2
    return tuple(jnp.asarray(scale * rand(seed + i, batch, H)) for i in range(n))


# ---------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_cell_matches_numpy_reference(cell):
    mod = make_cell(cell, H)
    assert isinstance(mod, GRUCell if cell == "gru" else LSTMCell)
    carry = init_carry(cell, 1)
    x = jnp.asarray(rand(0, B, D))
    variables = mod.init(jax.random.key(0), carry, x)
    p = variables["params"]
    gates = 3 if cell == "gru" else 4
    assert p["input_proj"]["kernel"].shape == (D, gates * H)
    assert p["hidden_proj"]["kernel"].shape == (H, gates * H)
    # Non-zero biases so that a swapped bias (input vs hidden) would show.
    p = jax.tree.map(lambda a: a + 0.3 * jnp.asarray(rand(a.size, *a.shape)), p)

    new_carry, out = mod.apply({"params": p}, carry, x)
    np_p = jax.tree.map(np.asarray, p)
    np_carry = tuple(np.asarray(c, np.float64) for c in carry)
    ref = NP_STEP[cell](np_p, np_carry, np.asarray(x, np.float64))
    assert len(new_carry) == len(ref)
    for got, want in zip(new_carry, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out, new_carry[0])

    # step(project_inputs(x)) is the same computation, split in two.
    split = mod.apply(
        {"params": p}, carry, x, method=lambda m, c, x: m.step(c, m.project_inputs(x))
    )
    for a, b in zip(split, new_carry, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_cell_gate_order(cell, random_init):
    """Drive one gate block at a time to saturation and check the textbook effect."""
    mod = make_cell(cell, H)
    carry = init_carry(cell, 3)
    x = jnp.zeros((B, D))
    p = random_init(mod, carry, x)["params"]
    p = jax.tree.map(jnp.zeros_like, p)
    gates = 3 if cell == "gru" else 4

    def run(input_bias=(), hidden_bias=()):
        q = jax.tree.map(lambda a: a, p)
        for key, blocks in (("input_proj", input_bias), ("hidden_proj", hidden_bias)):
            bias = np.zeros(gates * H, np.float32)
            for block, value in blocks:
                bias[block * H : (block + 1) * H] = value
            q[key]["bias"] = jnp.asarray(bias)
        return mod.apply({"params": q}, carry, x)[0]

    def with_bias(block, value):
        return run(input_bias=[(block, value)])

    if cell == "gru":
        h = np.asarray(carry[0])
        # z (block 1) -> 1 keeps the old state.
        np.testing.assert_allclose(run([(1, 50.0), (2, 3.0)])[0], h, atol=1e-6)
        # z -> 0 gives h' = n = tanh(b_in + r * b_hn): r (block 0) gates only the hidden part.
        np.testing.assert_allclose(run([(1, -50.0), (2, 1.0)])[0], np.tanh(1.0), atol=1e-6)
        r_open = run([(0, 50.0), (1, -50.0)], [(2, 1.0)])[0]
        np.testing.assert_allclose(r_open, np.tanh(1.0), atol=1e-6)
        r_shut = run([(0, -50.0), (1, -50.0)], [(2, 1.0)])[0]
        np.testing.assert_allclose(r_shut, 0.0, atol=1e-6)
        # All pre-activations 0 but b_in: z = r = 1/2, h' = (tanh(1) + h) / 2.
        np.testing.assert_allclose(with_bias(2, 1.0)[0], (np.tanh(1.0) + h) / 2, atol=1e-6)
    else:
        h, c = carry
        # All gate pre-activations 0: i = f = o = 1/2, g = 0.
        base = with_bias(0, 0.0)
        np.testing.assert_allclose(base[1], 0.5 * np.asarray(c), atol=1e-6)
        # f (block 1) -> 1: c' = c + i g = c (g = 0).
        np.testing.assert_allclose(with_bias(1, 50.0)[1], c, atol=1e-6)
        # g (block 2) large, i = 1/2: c' = c/2 + 1/2 tanh(g).
        np.testing.assert_allclose(with_bias(2, 50.0)[1], 0.5 * np.asarray(c) + 0.5, atol=1e-6)
        # o (block 3) -> 0 silences h' but not c'.
        got_h, got_c = with_bias(3, -50.0)
        np.testing.assert_allclose(got_h, 0.0, atol=1e-6)
        np.testing.assert_allclose(got_c, base[1], atol=1e-6)
        # i (block 0) -> 0: no input is written, c' = c/2 whatever g is.
        np.testing.assert_allclose(run([(0, -50.0), (2, 3.0)])[1], 0.5 * np.asarray(c), atol=1e-6)


def test_make_cell_unknown():
    with pytest.raises(ValueError, match="Unknown RNN cell"):
        make_cell("rnn_tanh", 4)


@pytest.mark.parametrize("cell", CELLS)
def test_initial_carry(cell):
    carry = make_cell(cell, H).initial_carry(3)
    assert len(carry) == (1 if cell == "gru" else 2)
    for c in carry:
        assert c.shape == (3, H) and c.dtype == jnp.float32
        assert not np.any(np.asarray(c))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def test_valid_mask_and_reverse_padded():
    mask = valid_mask(jnp.asarray([3, 0, 1]), 4)
    np.testing.assert_array_equal(
        mask, [[True, True, True, False], [False] * 4, [True, False, False, False]]
    )
    x = jnp.asarray([[1, 2, 3, 9], [5, 6, 7, 8], [4, 9, 9, 9]])
    out = reverse_padded(x, jnp.asarray([3, 4, 1]))
    np.testing.assert_array_equal(out, [[3, 2, 1, 9], [8, 7, 6, 5], [4, 9, 9, 9]])
    # Trailing feature axes travel with their time step; reversing twice is the identity.
    y = jnp.asarray(rand(0, 3, 4, 2))
    lengths = jnp.asarray([2, 4, 0])
    r = reverse_padded(y, lengths)
    np.testing.assert_array_equal(r[0, :2], y[0, 1::-1])
    np.testing.assert_array_equal(r[2], y[2])
    np.testing.assert_array_equal(reverse_padded(r, lengths), y)


# ---------------------------------------------------------------------------------------------
# RNN layer
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def rnn_setup(random_init):
    """make(cell, reverse=False, seed=0) -> (layer, random variables, x [B, T, D])."""

    def make(cell, reverse=False, seed=0):
        layer = RNN(cell, H, reverse=reverse)
        x = jnp.asarray(rand(seed, B, T, D))
        variables = random_init(layer, x, jnp.asarray(LENGTHS), seed=seed)
        return layer, variables, x

    return make


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_lengths(cell, reverse, rnn_setup):
    """Padded batch == each sequence run alone without padding (NumPy reference): outputs at
    valid positions, zeros on padding, and the final carry is the state after the last valid
    step (forward) or after the first token (backward: the unpadded x[:L] read reversed)."""
    layer, variables, x = rnn_setup(cell, reverse)
    # Garbage in the padding: it must never be read.
    x = jnp.where(valid_mask(jnp.asarray(LENGTHS), T)[..., None], x, 1e3)
    outputs, carry = jax.jit(layer.apply)(variables, x, jnp.asarray(LENGTHS))
    assert outputs.shape == (B, T, H)
    assert len(carry) == (1 if cell == "gru" else 2)
    mask = np.asarray(valid_mask(jnp.asarray(LENGTHS), T))
    assert np.all(np.asarray(outputs)[~mask] == 0.0)

    np_p = jax.tree.map(np.asarray, variables["params"]["cell"])
    for b, length in enumerate(LENGTHS):
        if length == 0:
            for c in carry:
                assert not np.any(np.asarray(c[b])), "an empty sequence keeps the zero carry"
            continue
        seq = np.asarray(x[b, :length], np.float64)
        if reverse:
            seq = seq[::-1]
        alone, alone_carry = np_rnn(cell, np_p, seq, tuple(np.zeros(H) for _ in carry))
        if reverse:
            alone = alone[::-1]
        np.testing.assert_allclose(outputs[b, :length], alone, rtol=1e-5, atol=1e-5)
        for got, want in zip(carry, alone_carry, strict=True):
            np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)
        # The final h is exactly the output at the last step read.
        last = 0 if reverse else length - 1
        np.testing.assert_array_equal(carry[0][b], outputs[b, last])


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_initial_carry_and_reverse_without_lengths(cell, rnn_setup):
    """A given initial carry is where each (reversed) sequence starts; an empty sequence keeps
    it. Without lengths, reverse=True reads every full row backwards. NumPy references."""
    layer, variables, x = rnn_setup(cell, reverse=True)
    carry0 = init_carry(cell, 11)
    np_p = jax.tree.map(np.asarray, variables["params"]["cell"])
    np_x = np.asarray(x, np.float64)
    apply = jax.jit(layer.apply)
    out, carry = apply(variables, x, jnp.asarray(LENGTHS), carry0)
    full, full_carry = apply(variables, x, None, carry0)
    for b, length in enumerate(LENGTHS):
        start = tuple(np.asarray(c[b], np.float64) for c in carry0)
        if length == 0:
            for c, c0 in zip(carry, carry0, strict=True):
                np.testing.assert_array_equal(c[b], c0[b])
        else:
            ref_out, ref_carry = np_rnn(cell, np_p, np_x[b, :length][::-1], start)
            np.testing.assert_allclose(out[b, :length], ref_out[::-1], rtol=1e-5, atol=1e-5)
            for got, want in zip(carry, ref_carry, strict=True):
                np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)
        ref_out, ref_carry = np_rnn(cell, np_p, np_x[b, ::-1], start)
        np.testing.assert_allclose(full[b], ref_out[::-1], rtol=1e-5, atol=1e-5)
        for got, want in zip(full_carry, ref_carry, strict=True):
            np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)


def test_rnn_unroll_same_result(rnn_setup):
    cell = "lstm"
    layer, variables, x = rnn_setup(cell)
    lengths = jnp.asarray(LENGTHS)
    out1, c1 = jax.jit(layer.apply)(variables, x, lengths)
    out3, c3 = jax.jit(RNN(cell, H, unroll=3).apply)(variables, x, lengths)
    np.testing.assert_allclose(out1, out3, rtol=1e-6, atol=1e-6)
    for a, b in zip(c1, c3, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_grad_ignores_padding(cell, reverse, rnn_setup):
    """Gradients are finite and exactly zero with respect to padded inputs."""
    layer, variables, x = rnn_setup(cell, reverse)
    lengths = jnp.asarray(LENGTHS)

    def loss(params, x):
        out, carry = layer.apply({"params": params}, x, lengths)
        return jnp.sum(out**2) + sum(jnp.sum(jnp.sin(c)) for c in carry)

    g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
    for leaf in jax.tree.leaves(g_params):
        assert np.all(np.isfinite(leaf))
        assert np.any(np.asarray(leaf) != 0)
    mask = np.asarray(valid_mask(lengths, T))
    g_x = np.asarray(g_x)
    assert np.all(g_x[~mask] == 0.0)
    assert np.all(np.abs(g_x[mask]).sum(-1) > 0)


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_vmap(cell, rnn_setup):
    """vmap over an extra leading axis (two batches) == applying to each batch."""
    layer, variables, x = rnn_setup(cell, reverse=True)
    xs = jnp.stack([x, jnp.asarray(rand(9, B, T, D))])
    lengths = jnp.stack([jnp.asarray(LENGTHS), jnp.asarray([2, 6, 3, 5], jnp.int32)])
    out, carry = jax.jit(jax.vmap(layer.apply, in_axes=(None, 0, 0)))(variables, xs, lengths)
    assert out.shape == (2, B, T, H)
    one = jax.jit(layer.apply)
    for i in range(2):
        o, c = one(variables, xs[i], lengths[i])
        np.testing.assert_allclose(out[i], o, rtol=1e-6, atol=1e-6)
        for a, b in zip(carry, c, strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-6)
