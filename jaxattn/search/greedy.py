"""Greedy decoding: the argmax token each step, in a `lax.while_loop` that stops once every
sentence has emitted EOS. The same loop samples (sample.py) with another `pick`."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxattn.search.core import (
    NO_CONSTRAINTS,
    Constraints,
    SearchResult,
    argmax,
    check_inputs,
    staged_loop,
    start,
    step,
    token_log_prob,
)


@struct.dataclass
class GreedyState:
    """The greedy loop's carry."""

    t: jax.Array  # [] int32: steps taken
    state: Any  # the decoder state, leaves [B, ...]
    prev: jax.Array  # [B] int32: the last emitted token (BOS first)
    done: jax.Array  # [B] bool: has emitted EOS
    tokens: jax.Array  # [B, T] int32: emitted ids, pad_id after the end
    weights: jax.Array  # [B, T, S] float32: attention of each emitted token, zero after the end
    log_probs: jax.Array  # [B] float32: sum of the emitted tokens' log-probs
    lengths: jax.Array  # [B] int32: tokens emitted, EOS included


def greedy_update(
    c: GreedyState,
    dec_state,
    logits,
    log_z,
    w,
    *,
    eos_id,
    pad_id,
    constraints,
    pick=None,
    pick_args=None,
) -> GreedyState:
    """The carry after one step, from `step`'s (state, logits [B, V], log_z [B], weights
    [B, S]) for c's rows: the argmax token (or pick(logits, t, pick_args) -> [B] int32, e.g.
    a sample), both seeing the logits with `constraints` applied; rows done before stay."""
    live = ~c.done  # [B]: still emitting
    logits = constraints.apply(logits, c.t, c.tokens, eos_id)  # [B, V]
    tok = argmax(logits) if pick is None else pick(logits, c.t, pick_args)  # [B] int32
    tok_logp = token_log_prob(logits, log_z, tok)  # [B]
    return GreedyState(
        t=c.t + 1,
        state=dec_state,
        prev=tok,
        done=c.done | (tok == eos_id),
        tokens=c.tokens.at[:, c.t].set(jnp.where(live, tok, pad_id)),
        weights=c.weights.at[:, c.t].set(jnp.where(live[:, None], w, 0.0)),
        log_probs=jnp.where(live, c.log_probs + tok_logp, c.log_probs),
        lengths=c.lengths + live.astype(jnp.int32),
    )


def greedy_init(batch: int, src_steps: int, state, *, bos_id, pad_id, max_len) -> GreedyState:
    """The carry before the first step of `batch` rows (decoder state `state`)."""
    return GreedyState(
        t=jnp.int32(0),
        state=state,
        prev=jnp.full((batch,), bos_id, jnp.int32),
        done=jnp.zeros((batch,), bool),
        tokens=jnp.full((batch, max_len), pad_id, jnp.int32),
        weights=jnp.zeros((batch, max_len, src_steps), jnp.float32),
        log_probs=jnp.zeros((batch,), jnp.float32),
        lengths=jnp.zeros((batch,), jnp.int32),
    )


def greedy_result(c: GreedyState) -> SearchResult:
    """The SearchResult of a final carry."""
    return SearchResult(c.tokens, c.lengths, c.log_probs, c.log_probs, c.weights, c.done, c.t)


def greedy_loop(
    model,
    variables,
    memory,
    state,
    src_steps,
    *,
    bos_id,
    eos_id,
    pad_id,
    max_len,
    pick=None,
    pick_args=None,
    constraints=NO_CONSTRAINTS,
):
    """Greedy decoding from an encoded batch (state leaves [B, ...]) -> SearchResult, in
    stages that drop finished rows (`staged_loop`).

    pick(logits [B, V], t, pick_args) -> tokens [B] int32 replaces the argmax (e.g. to
    sample); pick_args: its per-row arrays (batch-first, reordered with the rows)."""
    batch = jax.tree.leaves(state)[0].shape[0]
    init = greedy_init(batch, src_steps, state, bos_id=bos_id, pad_id=pad_id, max_len=max_len)

    def cond(c: GreedyState):
        return (c.t < max_len) & ~jnp.all(c.done)

    def body(c: GreedyState, consts) -> GreedyState:
        memory, args = consts
        out = step(model, variables, memory, c.state, c.prev, c.t)
        return greedy_update(
            c,
            *out,
            eos_id=eos_id,
            pad_id=pad_id,
            constraints=constraints,
            pick=pick,
            pick_args=args,
        )

    c = staged_loop(
        cond,
        body,
        init,
        (memory, pick_args),
        batch=batch,
        live=lambda c: ~c.done,
        keep=lambda c: c.replace(state=None, prev=None),
    )
    return greedy_result(c)


@functools.partial(
    jax.jit, static_argnames=("model", "bos_id", "eos_id", "pad_id", "max_len", "constraints")
)
def _greedy(model, variables, src, src_len, *, bos_id, eos_id, pad_id, max_len, constraints):
    memory, state = start(model, variables, src, src_len, max_len)
    return greedy_loop(
        model,
        variables,
        memory,
        state,
        src.shape[1],
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
        constraints=constraints,
    )


def greedy_search(
    model,
    variables,
    src,
    src_len=None,
    *,
    eos_id: int,
    max_len: int,
    bos_id: int | None = None,
    pad_id: int | None = None,
    min_len: int = 0,
    no_repeat_ngram: int = 0,
) -> SearchResult:
    """Greedy decoding, jitted, stopping once every sentence has emitted EOS.

    Picks argmax(logits) each step, as the model's free-running `__call__`.

    Args:
        model: A `Seq2Seq` (any module with encode / init_state / decode_step methods).
        variables: Its variables, ``{'params': params}``.
        src: Source ids [B, S] int.
        src_len: Source lengths [B] int, or None (no padding).
        eos_id: The end-of-sentence id.
        max_len: At most this many steps.
        bos_id: The first input; None = the model's `bos_id`.
        pad_id: The id after a sentence's end; None = eos_id.
        min_len: EOS is not chosen before this many tokens (EOS not counted); 0 = off.
        no_repeat_ngram: n >= 2: no n-gram of the output is repeated; 0 = off. See
            `Constraints`.

    Returns:
        A `SearchResult`: tokens [B, max_len], weights [B, max_len, S], lengths, scores,
        log_probs and finished [B], steps [].
    """
    src, src_len = check_inputs(
        src, src_len, eos_id=eos_id, max_len=max_len, model=model, bos_id=bos_id, pad_id=pad_id
    )
    constraints = Constraints.checked(min_len, no_repeat_ngram, max_len)
    bos_id = model.bos_id if bos_id is None else bos_id
    pad_id = eos_id if pad_id is None else pad_id
    return _greedy(
        model,
        variables,
        src,
        src_len,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
        constraints=constraints,
    )
