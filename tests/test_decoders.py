"""Tests for jaxattn.model.decoders, driven with a hand-made encoder memory: every decoder type and
attention x GRU/LSTM (shapes, attention masking, invariance to extra source padding and to
what the padding holds, finite gradients that never reach padding), teacher forcing against
a step-by-step loop, Luong input feeding, bridges, dropout and vmap."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn.model.attention import make_attention
from jaxattn.model.decoders import (
    DECODERS,
    BahdanauDecoder,
    LegacyDecoder,
    LuongDecoder,
    Memory,
    PlainDecoder,
)
from jaxattn.model.rnn import valid_mask
from jaxattn.model.transformer import TransformerDecoder

V, E, H = 11, 6, 8  # target vocab, embedding, decoder hidden (= encoder output size D)
B, S, T, EXTRA = 3, 6, 5, 3
LENGTHS = np.array([6, 3, 1], np.int32)
BOS = 0


@dataclasses.dataclass(frozen=True)
class Spec:
    id: str
    kind: str  # bahdanau | luong | plain | legacy
    attention: str | None = None
    input_feeding: bool = True
    partial_sum: bool = False  # local attention: weights sum to <= 1

    def make_attention(self):
        if self.attention == "additive":
            return make_attention("additive", hidden=7)
        if self.attention == "general":
            return make_attention("general", query_dim=H)
        if self.attention == "location":
            return make_attention("location", max_length=S + EXTRA)
        if self.attention in ("local_m", "local_p"):
            return make_attention(self.attention, window=2)
        return make_attention(self.attention)


SPECS = [
    *(
        Spec(f"bahdanau-{a}", "bahdanau", a, partial_sum=a.startswith("local"))
        for a in ("additive", "dot", "general", "scaled_dot", "location", "local_m", "local_p")
    ),
    Spec("luong-general-feed", "luong", "general", input_feeding=True),
    Spec("luong-general-nofeed", "luong", "general", input_feeding=False),
    Spec("luong-dot-feed", "luong", "dot", input_feeding=True),
    Spec("plain", "plain"),
    Spec("legacy-location", "legacy", "location"),
]
SPEC_IDS = [s.id for s in SPECS]
CELLS = ["gru", "lstm"]


def make_decoder(spec: Spec, cell: str, **kw):
    common = dict(vocab_size=V, embed_dim=E, hidden=H, cell=cell, **kw)
    if spec.kind == "plain":
        return PlainDecoder(**common)
    if spec.kind == "luong":
        return LuongDecoder(
            attention=spec.make_attention(), input_feeding=spec.input_feeding, **common
        )
    return DECODERS[spec.kind](attention=spec.make_attention(), **common)


def rand(seed, *shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


def make_memory_inputs(cell, src_len=S, num_layers=1, seed=0):
    """keys [B, src_len, H] with large garbage on padding, mask, per-layer finals."""
    mask = valid_mask(jnp.asarray(LENGTHS), src_len)
    keys = jnp.where(mask[..., None], rand(seed, B, src_len, H), 50.0)
    n = 1 if cell == "gru" else 2
    finals = tuple(
        tuple(rand(seed + 10 * layer + i + 1, B, H, scale=0.5) for i in range(n))
        for layer in range(num_layers)
    )
    return keys, mask, finals


def extend(keys, mask):
    """Appends EXTRA padded positions holding garbage keys."""
    junk = rand(99, B, EXTRA, H, scale=30.0)
    keys = jnp.concatenate([keys, junk], axis=1)
    return keys, valid_mask(jnp.asarray(LENGTHS), keys.shape[1])


def make_targets(seed=0, steps=T):
    return jnp.asarray(np.random.default_rng(seed).integers(2, V, size=(B, steps)), jnp.int32)


def memory_of_apply(keys, mask, finals):
    """A memory for calling init_state directly (no attention cache needed)."""
    return Memory(keys=keys, mask=mask, finals=tuple(finals))


def memory_of(m, keys, mask, finals):
    return Memory(keys=keys, mask=mask, finals=tuple(finals), cache=m.precompute(keys))


def decode(m, keys, mask, finals, targets, teacher_forcing=None, train=False):
    """Module method: the scanned decoder over a hand-made memory."""
    memory = memory_of(m, keys, mask, finals)
    return m(memory, targets, bos_id=BOS, teacher_forcing=teacher_forcing, train=train)


@pytest.fixture
def init_decoder(random_init):
    """init_decoder(dec, cell, num_layers=1): random variables of `dec` over a made-up memory."""

    def init(dec, cell, num_layers=1):
        keys, mask, finals = make_memory_inputs(cell, num_layers=num_layers)
        return random_init(dec, keys, mask, finals, make_targets(), method=decode)

    return init


def mean_nll(logits, targets):
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1).mean()


# ---------------------------------------------------------------------------------------------
# Every decoder x cell: shapes, masking, padding invariance, gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_decoder_forward_masking_padding_and_grads(spec, cell, init_decoder):
    """Gradients are checked with GRU cells only (the backward pass doubles the compile time;
    LSTM decoders' gradients are covered end to end in test_models)."""
    with_grads = cell == "gru"
    dec = make_decoder(spec, cell)
    variables = init_decoder(dec, cell)
    targets = make_targets()

    keys, mask, finals = make_memory_inputs(cell)
    keys2, mask2 = extend(keys, mask)

    def loss(params, keys):
        logits, weights, state = dec.apply(
            {"params": params}, keys, mask, finals, targets, method=decode
        )
        return mean_nll(logits, targets), (logits, weights, state)

    @jax.jit  # one compile: value (and gradients) at S, and a forward pass at S + EXTRA
    def run(params, keys, keys2, mask2):
        if with_grads:
            (g_params, g_keys), aux = jax.grad(loss, argnums=(0, 1), has_aux=True)(params, keys)
        else:
            g_params, g_keys, aux = None, None, loss(params, keys)[1]
        padded = dec.apply({"params": params}, keys2, mask2, finals, targets, method=decode)
        return aux, g_params, g_keys, padded

    (logits, weights, state), g_params, g_keys, padded = run(
        variables["params"], keys, keys2, mask2
    )

    # Shapes and dtypes.
    assert logits.shape == (B, T, V) and logits.dtype == jnp.float32
    assert weights.shape == (B, T, S)
    assert len(state.rnn) == 1 and len(state.rnn[0]) == (1 if cell == "gru" else 2)
    assert (state.feed is not None) == (spec.kind == "luong" and spec.input_feeding)
    assert np.all(np.isfinite(logits))

    # Attention weights: exactly 0 on padding; sum to 1 over valid positions (<= 1 for local).
    w = np.asarray(weights)
    pad = ~np.asarray(mask)[:, None, :].repeat(T, axis=1)
    sums = w.sum(-1)
    if spec.kind == "plain":
        assert np.all(w == 0.0)
    else:
        assert np.all(w >= 0.0)
        assert np.all(w[pad] == 0.0)
        if spec.partial_sum:
            assert np.all(sums <= 1.0 + 1e-5) and np.all(sums[0] > 0.1)
        else:
            np.testing.assert_allclose(sums, 1.0, atol=1e-5)

    # Gradients: finite, reaching the parameters, never reaching padded keys.
    if with_grads:
        for leaf in jax.tree.leaves(g_params):
            assert np.all(np.isfinite(leaf))
        assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(g_params["out"]))
        gk = np.asarray(g_keys)
        assert np.all(np.isfinite(gk))
        assert np.all(gk[~np.asarray(mask)] == 0.0)
        if spec.kind == "plain":
            assert np.all(gk == 0.0)
        else:
            assert np.any(gk[np.asarray(mask)] != 0.0)
            attn_grads = jax.tree.leaves(g_params.get("attention", {}))
            assert not attn_grads or any(np.any(np.asarray(g) != 0) for g in attn_grads)

    # Extra source padding holding garbage: same logits, same weights on the old positions,
    # zero weights on the new ones.
    logits2, weights2, _ = padded
    assert weights2.shape == (B, T, S + EXTRA)
    np.testing.assert_allclose(logits2, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights2[..., :S], weights, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(weights2)[..., S:] == 0.0)


# ---------------------------------------------------------------------------------------------
# Teacher forcing: the scanned loop == a Python loop over step()
# ---------------------------------------------------------------------------------------------

LOOP_CASES = [  # (spec id, cell): each decoder kind once, both cells across them
    ("bahdanau-additive", "gru"),
    ("bahdanau-local_m", "lstm"),
    ("luong-general-feed", "lstm"),
    ("luong-general-nofeed", "gru"),
    ("plain", "lstm"),
    ("legacy-location", "gru"),
]
SPEC_BY_ID = {s.id: s for s in SPECS}


def manual_loop(m, keys, mask, finals, targets, teacher_forcing):
    """Reference: init_state, then step() T times; input = gold where forced, else argmax."""
    memory = memory_of(m, keys, mask, finals)
    state = m.init_state(memory)
    prev = jnp.full((targets.shape[0],), BOS, targets.dtype)
    all_logits, all_weights = [], []
    for t in range(targets.shape[1]):
        gold = jnp.full_like(prev, BOS) if t == 0 else targets[:, t - 1]
        tokens = jnp.where(teacher_forcing[:, t], gold, prev)
        state, logits, weights = m.step(memory, state, tokens, jnp.full((B,), t, jnp.int32))
        prev = jnp.argmax(logits, axis=-1).astype(targets.dtype)
        all_logits.append(logits)
        all_weights.append(weights)
    return jnp.stack(all_logits, 1), jnp.stack(all_weights, 1), state


@pytest.mark.parametrize("spec_id,cell", LOOP_CASES, ids=[f"{s}-{c}" for s, c in LOOP_CASES])
def test_teacher_forcing_matches_step_loop(spec_id, cell, init_decoder):
    dec = make_decoder(SPEC_BY_ID[spec_id], cell)
    variables = init_decoder(dec, cell)
    keys, mask, finals = make_memory_inputs(cell)
    targets = make_targets(seed=3)
    rng = np.random.default_rng(0)
    mixed = rng.random((B, T)) < 0.5
    mixed[0, :] = False  # one fully free-running row
    mixed[1, :] = True  # one fully teacher-forced row
    forcing = jnp.asarray(mixed)

    scanned = jax.jit(lambda v, tf: dec.apply(v, keys, mask, finals, targets, tf, method=decode))
    looped = jax.jit(
        lambda v, tf: dec.apply(v, keys, mask, finals, targets, tf, method=manual_loop)
    )
    got_logits, got_w, got_state = scanned(variables, forcing)
    ref_logits, ref_w, ref_state = looped(variables, forcing)
    np.testing.assert_allclose(got_logits, ref_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_w, ref_w, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got_state), jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    # teacher_forcing=None means always: the same as an all-True mask.
    always = scanned(variables, None)[0]
    np.testing.assert_allclose(
        always, scanned(variables, jnp.ones((B, T), bool))[0], rtol=1e-6, atol=1e-6
    )
    # Free running differs from teacher forcing for an untrained model (its argmax is not
    # the gold token), except at step 0 (BOS either way).
    free = scanned(variables, jnp.zeros((B, T), bool))[0]
    np.testing.assert_allclose(free[:, 0], always[:, 0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(free, always)


# ---------------------------------------------------------------------------------------------
# Luong input feeding
# ---------------------------------------------------------------------------------------------


def test_luong_input_feeding(init_decoder):
    keys, mask, finals = make_memory_inputs("gru")
    targets = make_targets()
    out = {}
    for feed in (True, False):
        dec = LuongDecoder(V, E, H, make_attention("general", query_dim=H), input_feeding=feed)
        variables = init_decoder(dec, "gru")
        in_dim = variables["params"]["rnn_0"]["input_proj"]["kernel"].shape[0]
        assert in_dim == (E + H if feed else E)  # the RNN reads [embedding; previous h~]
        logits, _, state = jax.jit(
            lambda v, dec=dec: dec.apply(v, keys, mask, finals, targets, method=decode)
        )(variables)
        if feed:
            # The fed vector is the last attentional vector tanh(W_c [c; h]) (no dropout in eval).
            feed_vec = np.asarray(state.feed)
            assert feed_vec.shape == (B, H) and np.all(np.abs(feed_vec) < 1) and feed_vec.any()
            last_logits = feed_vec @ np.asarray(variables["params"]["out"]["kernel"])
            last_logits += np.asarray(variables["params"]["out"]["bias"])
            np.testing.assert_allclose(logits[:, -1], last_logits, rtol=1e-5, atol=1e-5)
            init = dec.apply(variables, memory_of_apply(keys, mask, finals), method="init_state")
            assert not np.any(np.asarray(init.feed))  # starts at zero
        else:
            assert state.feed is None
        out[feed] = logits
    assert out[True].shape == out[False].shape == (B, T, V)


def feed_two_steps(m, keys, mask, finals, tokens, delta):
    """Steps 0 and 1 of a Luong decoder; step 1 also from a state whose fed vector is moved by
    `delta`. Returns (state after step 0, step-1 logits, step-1 logits from the moved feed)."""
    memory = memory_of(m, keys, mask, finals)
    state, _, _ = m.step(memory, m.init_state(memory), tokens[:, 0], 0)
    moved = state.replace(feed=state.feed + delta)
    _, logits, _ = m.step(memory, state, tokens[:, 1], 1)
    _, logits_moved, _ = m.step(memory, moved, tokens[:, 1], 1)
    return state, logits, logits_moved


def test_luong_fed_vector_reaches_next_step(init_decoder):
    """The previous attentional vector is read by the next step (input feeding is not silently
    replaced by zeros): moving only the fed vector moves the next step's logits, per row."""
    dec = LuongDecoder(V, E, H, make_attention("general", query_dim=H), input_feeding=True)
    variables = init_decoder(dec, "gru")
    keys, mask, finals = make_memory_inputs("gru")
    delta = jnp.zeros((B, H)).at[1].set(0.5)  # row 1 only
    state, logits, moved = jax.jit(
        lambda v: dec.apply(v, keys, mask, finals, make_targets(), delta, method=feed_two_steps)
    )(variables)
    assert np.all(np.abs(np.asarray(state.feed)).sum(-1) > 0.1)  # a real vector was fed
    diff = np.abs(np.asarray(moved) - np.asarray(logits)).max(-1)
    assert diff[1] > 1e-3
    np.testing.assert_array_equal(diff[[0, 2]], 0.0)


# ---------------------------------------------------------------------------------------------
# Bridges
# ---------------------------------------------------------------------------------------------


def bridge_state(dec, variables, finals, keys=None):
    keys = rand(0, B, S, H) if keys is None else keys
    return dec.apply(variables, memory_of_apply(keys, None, finals), method="init_state")


@pytest.mark.parametrize("enc_cell", CELLS)
@pytest.mark.parametrize("dec_cell", CELLS)
def test_bridge_copy(enc_cell, dec_cell, init_decoder):
    dec = BahdanauDecoder(
        V, E, H, make_attention("additive", hidden=7), cell=dec_cell, num_layers=2, bridge="copy"
    )
    variables = init_decoder(dec, dec_cell, num_layers=2)
    # One encoder carry per decoder layer: layer i gets carry i.
    _, _, finals = make_memory_inputs(enc_cell, num_layers=2, seed=4)
    state = bridge_state(dec, variables, finals).rnn
    assert len(state) == 2
    for layer in range(2):
        np.testing.assert_array_equal(state[layer][0], finals[layer][0])
        if dec_cell == "lstm":
            want_c = finals[layer][1] if enc_cell == "lstm" else np.zeros((B, H))
            np.testing.assert_array_equal(state[layer][1], want_c)
        else:
            assert len(state[layer]) == 1
    # A one-layer encoder feeds its (top) carry to every decoder layer.
    _, _, finals1 = make_memory_inputs(enc_cell, num_layers=1, seed=5)
    state1 = bridge_state(dec, variables, finals1).rnn
    for layer in range(2):
        np.testing.assert_array_equal(state1[layer][0], finals1[0][0])


@pytest.mark.parametrize("cell", CELLS)
def test_bridge_dense_and_zero(cell, init_decoder, random_init):
    attn = make_attention("additive", hidden=7)
    # dense: h0 = tanh(W h_enc + b); works with a wider (e.g. bidirectional) encoder state.
    dec = BahdanauDecoder(V, E, H, attn, cell=cell, bridge="dense")
    wide = ((rand(1, B, 2 * H), rand(2, B, 2 * H)),)
    keys = rand(0, B, S, 2 * H)
    variables = random_init(dec, keys, None, wide, make_targets(), method=decode)
    state = bridge_state(dec, variables, wide, keys).rnn
    p = variables["params"]["bridge_proj"]
    want = np.tanh(np.asarray(wide[0][0]) @ np.asarray(p["kernel"]) + np.asarray(p["bias"]))
    np.testing.assert_allclose(state[0][0], want, rtol=1e-5, atol=1e-6)
    if cell == "lstm":
        assert not np.any(np.asarray(state[0][1]))
    # zero: all-zero initial state whatever the encoder says.
    dec0 = BahdanauDecoder(V, E, H, attn, cell=cell, bridge="zero")
    variables0 = init_decoder(dec0, cell)
    _, _, finals = make_memory_inputs(cell)
    state0 = bridge_state(dec0, variables0, finals).rnn
    assert all(not np.any(np.asarray(c)) for c in state0[0])
    assert "bridge_proj" not in variables0["params"]


def test_bridge_errors(init_decoder):
    attn = make_attention("additive", hidden=7)
    dec = BahdanauDecoder(V, E, H, attn, bridge="copy")
    wide = ((rand(1, B, 2 * H),),)  # e.g. a bidirectional encoder's final state
    keys = rand(0, B, S, 2 * H)
    with pytest.raises(ValueError, match="bridge='copy'.*'dense'"):
        dec.init(jax.random.key(0), keys, None, wide, make_targets(), method=decode)
    bad = BahdanauDecoder(V, E, H, attn, bridge="learned")
    with pytest.raises(ValueError, match="Unknown bridge"):
        init_decoder(bad, "gru")


# ---------------------------------------------------------------------------------------------
# Dropout, stacked layers, vmap
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec_id,layers", [("bahdanau-additive", 1), ("luong-general-feed", 2)])
def test_decoder_dropout(spec_id, layers, init_decoder):
    """With one layer, the Bahdanau decoder's only dropout is the tutorial's, on embeddings."""
    dec = make_decoder(SPEC_BY_ID[spec_id], "lstm", num_layers=layers, dropout=0.3)
    variables = init_decoder(dec, "lstm", num_layers=layers)
    keys, mask, finals = make_memory_inputs("lstm", num_layers=layers)
    targets = make_targets()

    @jax.jit
    def run(key):
        return dec.apply(
            variables,
            keys,
            mask,
            finals,
            targets,
            None,
            True,
            method=decode,
            rngs={"dropout": key},
        )[0]

    ev = jax.jit(lambda: dec.apply(variables, keys, mask, finals, targets, method=decode)[0])()
    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, ev)
    assert np.all(np.isfinite(a))


@pytest.mark.parametrize("forcing", ["none", "mask"])
def test_dropout_masks_are_drawn_per_step(forcing, init_decoder):
    """As in the tutorial's step-by-step loop, each step draws a fresh dropout mask, whether
    teacher forcing is implicit (None) or an explicit all-True mask.

    Parameters are set so that the GRU's new state is tanh(W_n dropout(embedding) + b_n)
    alone (context rows and recurrent weights zeroed, update gate z = 0): feeding the same
    token at every step then gives identical logits at every step in eval mode, and
    different ones in training only if the masks differ between steps.
    """
    dec = BahdanauDecoder(V, E, H, make_attention("additive", hidden=7), dropout=0.5)
    variables = init_decoder(dec, "gru")
    p = jax.tree.map(np.array, variables["params"])  # writable copies
    cell = p["rnn_0"]
    cell["input_proj"]["kernel"][E:] = 0.0  # the context does not reach the cell
    cell["input_proj"]["bias"][H : 2 * H] = -50.0  # z = 0: h' = n
    cell["hidden_proj"]["kernel"][:] = 0.0
    cell["hidden_proj"]["bias"][:] = 0.0
    keys, mask, finals = make_memory_inputs("gru")
    same_token = jnp.full((B, T), BOS, jnp.int32)  # BOS at step 0, then BOS as gold
    teacher_forcing = None if forcing == "none" else jnp.ones((B, T), bool)

    @partial(jax.jit, static_argnums=1)
    def run(key, train):
        return dec.apply(
            {"params": p},
            keys,
            mask,
            finals,
            same_token,
            teacher_forcing,
            train,
            method=decode,
            rngs={"dropout": key},
        )[0]

    ev = np.asarray(run(jax.random.key(0), False))
    np.testing.assert_allclose(ev, np.broadcast_to(ev[:, :1], ev.shape), rtol=1e-6, atol=1e-6)
    tr = np.asarray(run(jax.random.key(0), True))
    for t in range(1, T):
        assert not np.allclose(tr[:, t], tr[:, 0]), f"step {t} reused step 0's dropout mask"


def test_decoder_vmap_over_batches(init_decoder):
    dec = make_decoder(SPEC_BY_ID["bahdanau-additive"], "gru")
    variables = init_decoder(dec, "gru")
    k1, m1, f1 = make_memory_inputs("gru", seed=0)
    k2, m2, f2 = make_memory_inputs("gru", seed=7)
    t1, t2 = make_targets(1), make_targets(2)

    def stack(a, b):
        return jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)

    def fn(k, m, f, t):
        return dec.apply(variables, k, m, f, t, method=decode)[:2]

    logits, weights = jax.jit(jax.vmap(fn))(
        stack(k1, k2), stack(m1, m2), stack(f1, f2), stack(t1, t2)
    )
    assert logits.shape == (2, B, T, V) and weights.shape == (2, B, T, S)
    one = jax.jit(fn)
    for i, args in enumerate([(k1, m1, f1, t1), (k2, m2, f2, t2)]):
        want_logits, want_weights = one(*args)
        np.testing.assert_allclose(logits[i], want_logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(weights[i], want_weights, rtol=1e-5, atol=1e-6)


def test_decoder_classes_registered():
    assert DECODERS == {
        "bahdanau": BahdanauDecoder,
        "luong": LuongDecoder,
        "plain": PlainDecoder,
        "legacy": LegacyDecoder,
        "transformer": TransformerDecoder,
    }


@pytest.mark.parametrize(
    "shape, dtype", [((6, 8), jnp.float32), ((2, 3, 8), jnp.float32), ((6, 8), jnp.bfloat16)]
)
def test_output_projection_gradient_is_a_matmuls(shape, dtype):
    """The output layer's custom-JVP matmul: same value, gradients and JVP as x @ kernel."""
    from jaxattn.model.decoders import _projection

    x = jax.random.normal(jax.random.key(0), shape).astype(dtype)
    kernel = jax.random.normal(jax.random.key(1), (8, 13)).astype(dtype)
    g = jax.random.normal(jax.random.key(2), shape[:-1] + (13,)).astype(dtype)
    loss = lambda f: lambda x, k: (f(x, k).astype(jnp.float32) * g).sum()  # noqa: E731
    want = jax.grad(loss(jnp.matmul), argnums=(0, 1))(x, kernel)
    got = jax.jit(jax.grad(loss(_projection), argnums=(0, 1)))(x, kernel)
    np.testing.assert_array_equal(_projection(x, kernel), jnp.matmul(x, kernel))
    _, t1 = jax.jvp(jnp.matmul, (x, kernel), (x * 0.5, kernel * 2))  # forward mode works too
    _, t2 = jax.jvp(_projection, (x, kernel), (x * 0.5, kernel * 2))
    np.testing.assert_allclose(
        np.asarray(t2, np.float32),
        np.asarray(t1, np.float32),
        rtol=2e-2 if dtype == jnp.bfloat16 else 1e-5,
        atol=1e-5,
    )
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(
            np.asarray(a, np.float32),
            np.asarray(b, np.float32),
            rtol=2e-2 if dtype == jnp.bfloat16 else 1e-5,
            atol=1e-5,
        )
