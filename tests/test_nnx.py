"""jaxattn models used from Flax NNX through `nnx.bridge.ToNNX`: lazy init gives the Linen
parameter tree, calls (including `encode`/`decode_step` methods) match `Linen.apply` with the same
parameters, `nnx.Optimizer` trains with dropout drawn from an `nnx.Rngs` stream, and the
trained parameters drive `jaxattn.search` (greedy and beam) through the Linen model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxattn import AdditiveAttention, BahdanauDecoder, Encoder, Seq2Seq, search

V, B, S = 12, 8, 6
BOS, EOS = 0, 1


def make_model(dropout: float = 0.0) -> Seq2Seq:
    encoder = Encoder(V, 16, 32, dropout=dropout)
    decoder = BahdanauDecoder(V, 16, 32, AdditiveAttention(32), dropout=dropout)
    return Seq2Seq(encoder, decoder, bos_id=BOS)


def reverse_batch(seed: int = 0):
    """Source ids 2..V-1 (no BOS/EOS), all of length S; targets reversed, then EOS."""
    src = jax.random.randint(jax.random.key(seed), (B, S), 2, V)
    tgt = jnp.concatenate([src[:, ::-1], jnp.full((B, 1), EOS, src.dtype)], axis=1)
    return src, jnp.full((B,), S, jnp.int32), tgt


def linen_variables(nnx_model) -> dict:
    """The Linen variables {'params': ...} of a ToNNX-wrapped model."""
    return {"params": nnx.to_pure_dict(nnx.state(nnx_model, nnx.Param))}


def test_lazy_init_matches_linen_tree_and_outputs():
    model = make_model()
    src, src_len, tgt = reverse_batch()
    m = nnx.bridge.ToNNX(model, rngs=nnx.Rngs(0)).lazy_init(src, src_len, tgt)
    variables = linen_variables(m)
    linen_init = model.init(jax.random.key(1), src, src_len, tgt)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, linen_init)

    logits, weights = m(src, src_len, tgt)
    ref_logits, ref_weights = model.apply(variables, src, src_len, tgt)
    assert logits.shape == (B, S + 1, V) and weights.shape == (B, S + 1, S)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-6)
    np.testing.assert_allclose(weights, ref_weights, atol=1e-6)

    # Methods of the Linen module are methods of the wrapper.
    memory = m.encode(src, src_len)
    state = m.init_state(memory)
    state, step_logits, step_weights = m.decode_step(memory, state, jnp.full((B,), BOS), 0)
    ref_memory = model.apply(variables, src, src_len, method="encode")
    np.testing.assert_allclose(memory.keys, ref_memory.keys, atol=1e-6)
    np.testing.assert_allclose(step_logits, logits[:, 0], atol=1e-5)
    np.testing.assert_allclose(step_weights, weights[:, 0], atol=1e-6)


@pytest.mark.slow
def test_nnx_optimizer_trains_and_drives_search():
    model = make_model(dropout=0.1)
    src, src_len, tgt = reverse_batch()
    m = nnx.bridge.ToNNX(model, rngs=nnx.Rngs(params=0, dropout=1)).lazy_init(src, src_len, tgt)
    optimizer = nnx.Optimizer(m, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(m, optimizer, src, src_len, tgt):
        def loss_fn(m):
            logits, _ = m(src, src_len, tgt, train=True)  # dropout keys from the Rngs stream
            return optax.softmax_cross_entropy_with_integer_labels(logits, tgt).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(m)
        optimizer.update(m, grads)
        return loss

    before = linen_variables(m)
    losses = [float(train_step(m, optimizer, src, src_len, tgt)) for _ in range(30)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    assert int(optimizer.step[...]) == 30
    after = linen_variables(m)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after)
    assert all(jax.tree.leaves(moved))

    # Search drives the Linen model with the NNX module's parameters.
    variables = linen_variables(m)
    greedy = search.greedy_search(model, variables, src, src_len, eos_id=EOS, max_len=S + 1)
    free_logits, _ = model.apply(variables, src, src_len, max_len=S + 1)
    np.testing.assert_array_equal(greedy.tokens[:, 0], jnp.argmax(free_logits[:, 0], -1))
    beam = search.beam_search(
        model, variables, src, src_len, eos_id=EOS, max_len=S + 1, beam_size=3
    )
    assert beam.tokens.shape[0] == B and beam.tokens.shape[-1] == S + 1
    assert bool(jnp.all(beam.scores[:, 0] >= greedy.scores - 1e-5))


def test_dropout_keys_come_from_the_rngs_stream():
    """Each train=True call draws a fresh dropout key; evaluation is deterministic."""
    model = make_model(dropout=0.5)
    src, src_len, tgt = reverse_batch()
    m = nnx.bridge.ToNNX(model, rngs=nnx.Rngs(params=0, dropout=1)).lazy_init(src, src_len, tgt)
    first, _ = m(src, src_len, tgt, train=True)
    second, _ = m(src, src_len, tgt, train=True)
    assert not np.allclose(first, second)
    eval1, _ = m(src, src_len, tgt)
    eval2, _ = m(src, src_len, tgt)
    np.testing.assert_array_equal(eval1, eval2)
