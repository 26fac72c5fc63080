"""Forced decoding: the model's log-probability of given target sentences (scoring
references or n-best lists, as fairseq's and JoeyNMT's scoring modes), through the same `step`
as the searches, so it scores ensembles alike."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxattn.search.core import (
    check_ids,
    check_inputs,
    check_lengths,
    start,
    step,
    token_log_prob,
    vocab_sizes,
)


class Forced(NamedTuple):
    """token_log_probs [B, T] float32: log p(tgt_t | tgt_<t, src), 0 past tgt_len.
    log_probs [B]: their sum. weights [B, T, S]: attention at each target position."""

    token_log_probs: jax.Array
    log_probs: jax.Array
    weights: jax.Array


@functools.partial(jax.jit, static_argnames=("model", "bos_id"))
def _force(model, variables, src, src_len, tgt, tgt_len, *, bos_id):
    batch, steps = tgt.shape
    memory, state = start(model, variables, src, src_len, steps)
    prev = jnp.concatenate([jnp.full((batch, 1), bos_id, jnp.int32), tgt[:, :-1]], axis=1)

    def body(state, xs):
        prev_t, gold_t, t = xs  # [B], [B], []
        state, logits, log_z, w = step(model, variables, memory, state, prev_t, t)
        return state, (token_log_prob(logits, log_z, gold_t), w)

    _, (tok_logp, weights) = lax.scan(body, state, (prev.T, tgt.T, jnp.arange(steps)))
    real = jnp.arange(steps)[None, :] < tgt_len[:, None]  # [B, T]
    tok_logp = jnp.where(real, tok_logp.T, 0.0)  # [B, T]
    weights = jnp.where(real[..., None], weights.transpose(1, 0, 2), 0.0)  # [B, T, S]
    return Forced(tok_logp, tok_logp.sum(axis=1), weights)


def force_decode(model, variables, src, src_len, tgt, tgt_len=None, *, bos_id=None) -> Forced:
    """Scores target ids under the model (teacher forced), jitted.

    Args:
        model, variables, src, src_len, bos_id: As in `greedy_search`.
        tgt: Target ids [B, T] int, each ending with EOS (counted, as in search scores).
        tgt_len: Target lengths [B] int (EOS included), or None (all T).

    Returns:
        `Forced`: per-token and per-sentence log-probabilities and the attention weights.
    """
    src, src_len = check_inputs(src, src_len, eos_id=0, max_len=1, model=model, bos_id=bos_id)
    raw, tgt = tgt, jnp.asarray(tgt)
    if tgt.ndim != 2 or tgt.shape[0] != src.shape[0] or not jnp.issubdtype(tgt.dtype, jnp.integer):
        raise ValueError(
            f"tgt must be integer ids shaped [{src.shape[0]}, length], got "
            f"{tgt.dtype}{list(tgt.shape)}."
        )
    if isinstance(tgt.shape[1], int) and tgt.shape[1] == 0:
        raise ValueError("tgt has no positions: each target needs at least its EOS.")
    check_ids("tgt", raw, vocab_sizes(model)[1], "target ids")
    tgt_len = (
        jnp.full(tgt.shape[:1], tgt.shape[1], jnp.int32)
        if tgt_len is None
        else check_lengths("tgt_len", tgt_len, tgt.shape[1], tgt.shape[:1])
    )
    bos_id = model.bos_id if bos_id is None else bos_id
    return _force(
        model,
        variables,
        src,
        src_len,
        tgt.astype(jnp.int32),
        tgt_len.astype(jnp.int32),
        bos_id=bos_id,
    )
