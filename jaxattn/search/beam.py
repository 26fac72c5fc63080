"""Beam search with the length penalty of Wu et al. (2016), in a `lax.while_loop`.

Keeps `beam_size` alive hypotheses and a pool of the `n_best` best finished ones. Each step
takes the top `beam_size` of all (alive hypothesis, next token) extensions; those that end in
EOS move to the pool (normalized by ((5 + len) / 6) ** alpha) and free their slot, which the
next step refills, so beam_size=1 is exactly greedy. A sentence is done when no hypothesis is
alive or when no alive one can still beat the worst of the pool. Finished hypotheses rank
before ones cut off at `max_len`.

Beam search can end worse than greedy (the greedy prefix may fall out of the beam). With
keep_greedy=True (the default) the greedy hypothesis, decoded alongside (one more row of each
sentence in the beam loop when the rows are few, else its own loop), joins the n-best list too,
so beam search never scores below greedy; keep_greedy=False is textbook beam search.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from jaxattn.search.core import (
    NO_CONSTRAINTS,
    Constraints,
    SearchResult,
    check_inputs,
    coverage_penalty,
    few_rows,
    gather,
    length_penalty,
    staged_loop,
    start,
    step,
    top_k,
)
from jaxattn.search.greedy import (
    GreedyState,
    greedy_init,
    greedy_loop,
    greedy_result,
    greedy_update,
)
from jaxattn.search.options import check_value


@struct.dataclass
class BeamState:
    """The beam loop's carry (K = beam_size, N = n_best, T = max_len)."""

    t: jax.Array  # [] int32: steps taken
    state: Any  # the decoder state, leaves [B * R, ...]: R = K rows a sentence (+ greedy's)
    prev: jax.Array  # [B * R] int32: each row's last token
    alive_logp: jax.Array  # [B, K] float32: alive log-probs; -inf = an empty slot
    alive_tokens: jax.Array  # [B, K, T] int32
    alive_weights: jax.Array  # [B, K, T, S] float32
    fin_scores: jax.Array  # [B, N] float32: the finished pool, sorted; -inf = empty
    fin_logp: jax.Array  # [B, N] float32
    fin_lengths: jax.Array  # [B, N] int32
    fin_tokens: jax.Array  # [B, N, T] int32
    fin_weights: jax.Array  # [B, N, T, S] float32
    done: jax.Array  # [B] bool: nothing alive can still enter the pool
    greedy: GreedyState | None  # keep_greedy: the greedy hypothesis (row K of each sentence;
    # its decoder state and last token are in `state` and `prev`), else None


def beam_loop(
    model,
    variables,
    memory,
    state,
    src_steps,
    alpha,
    beta=None,
    src_len=None,
    *,
    bos_id,
    eos_id,
    pad_id,
    max_len,
    beam_size,
    n_best,
    constraints=NO_CONSTRAINTS,
    keep_greedy=False,
):
    """Beam search from an encoded batch (leaves [B, ...]) -> SearchResult with [B, N, ...],
    and with keep_greedy the greedy search's SearchResult [B, ...] (else None), decoded in
    the same steps as one more row of each sentence (one pass over the weights a step).

    A finished hypothesis scores log_prob / length_penalty(len, alpha) + coverage_penalty
    (of its attention over the src_len [B] real positions, beta). `constraints` apply to each
    beam's own output (its history, reordered with the beams)."""
    batch = jax.tree.leaves(state)[0].shape[0]
    k, n, steps = beam_size, n_best, max_len
    r = k + 1 if keep_greedy else k  # rows a sentence: its beams (then greedy's)
    tile = functools.partial(jnp.repeat, repeats=r, axis=0)  # [B, ...] -> [B * R, ...]
    memory, state = jax.tree.map(tile, memory), jax.tree.map(tile, state)
    neg_inf = jnp.float32(-jnp.inf)
    init = BeamState(
        t=jnp.int32(0),
        state=state,
        prev=jnp.full((batch * r,), bos_id, jnp.int32),
        # only beam 0 is live at first (all beams start identical)
        alive_logp=jnp.full((batch, k), neg_inf).at[:, 0].set(0.0),
        alive_tokens=jnp.full((batch, k, steps), pad_id, jnp.int32),
        alive_weights=jnp.zeros((batch, k, steps, src_steps), jnp.float32),
        fin_scores=jnp.full((batch, n), neg_inf),
        fin_logp=jnp.full((batch, n), neg_inf),
        fin_lengths=jnp.zeros((batch, n), jnp.int32),
        fin_tokens=jnp.full((batch, n, steps), pad_id, jnp.int32),
        fin_weights=jnp.zeros((batch, n, steps, src_steps), jnp.float32),
        done=jnp.zeros((batch,), bool),
        greedy=(
            greedy_init(batch, src_steps, None, bos_id=bos_id, pad_id=pad_id, max_len=max_len)
            if keep_greedy
            else None
        ),
    )

    def settled(c: BeamState):  # [B]: the sentence's beams (and greedy hypothesis) are done
        return c.done if c.greedy is None else c.done & c.greedy.done

    def cond(c: BeamState):
        return (c.t < steps) & ~jnp.all(settled(c))

    def body(c: BeamState, consts) -> BeamState:
        memory, src_len = consts
        t, batch = c.t, c.done.shape[0]  # (the stage's batch)
        dec_state, logits, log_z, w = step(model, variables, memory, c.state, c.prev, t)
        g = None
        if keep_greedy:  # row K of each sentence: greedy's
            rows = lambda x: x.reshape((batch, r) + x.shape[1:])  # noqa: E731
            logits, log_z, w = rows(logits), rows(log_z), rows(w)
            kw = dict(eos_id=eos_id, pad_id=pad_id, constraints=constraints)
            g = greedy_update(c.greedy, None, logits[:, k], log_z[:, k], w[:, k], **kw)
            beams = lambda x: x[:, :k].reshape((batch * k,) + x.shape[2:])  # noqa: E731
            logits, log_z, w = beams(logits), beams(log_z), beams(w)
        history = c.alive_tokens.reshape(batch * k, steps)  # row b * K + k, as the logits'
        logits = constraints.apply(logits, t, history, eos_id)  # [B * K, V]
        vocab = logits.shape[-1]
        logp = (logits - log_z[:, None]).reshape(batch, k, vocab)  # fused into cand's pass
        cand = c.alive_logp[:, :, None] + logp  # [B, K, V]
        top_logp, idx = top_k(cand.reshape(batch, k * vocab), k)  # [B, K] best extensions
        parent, tok = idx // vocab, (idx % vocab).astype(jnp.int32)  # [B, K]

        tokens = gather(c.alive_tokens, parent).at[:, :, t].set(tok)  # [B, K, T]
        weights = gather(c.alive_weights, parent)  # [B, K, T, S]
        weights = weights.at[:, :, t].set(gather(w.reshape(batch, k, src_steps), parent))
        first = jnp.arange(batch)[:, None] * r  # [B, 1]: each sentence's first row
        rows_of, prev = first + parent, tok  # [B, K]: each beam's parent row, its token
        if keep_greedy:  # greedy's row stays
            rows_of = jnp.concatenate([rows_of, first + k], axis=1)  # [B, R]
            prev = jnp.concatenate([tok, g.prev[:, None]], axis=1)
        dec_state = jax.tree.map(lambda x: x[rows_of.reshape(-1)], dec_state)

        # extensions ending in EOS join the pool (kept sorted; ties keep the older entry)
        ended = (tok == eos_id) & (top_logp > neg_inf)  # [B, K]
        length = t + 1
        normalized = _plus_coverage(
            top_logp / length_penalty(length, alpha), weights, src_len, beta
        )  # [B, K]
        new_scores = jnp.where(ended, normalized, neg_inf)
        scores = jnp.concatenate([c.fin_scores, new_scores], axis=1)  # [B, N + K]
        fin_scores, sel = lax.top_k(scores, n)  # [B, N]

        def pick(old, new):  # old [B, N, ...], new [B, K, ...] -> the selected [B, N, ...]
            return gather(jnp.concatenate([old, new], axis=1), sel)

        # the rest stay alive; a sentence is done when none is alive or none can still beat
        # the pool's worst: the best alive log-prob over the best length penalty to come
        alive_logp = jnp.where(ended, neg_inf, top_logp)  # [B, K]
        best = alive_logp.max(axis=1)  # [B]
        lp_next = length_penalty(jnp.minimum(length + 1, steps), alpha)
        bound = jnp.maximum(best / lp_next, best / length_penalty(steps, alpha))
        done = c.done | (best == neg_inf) | (bound < fin_scores[:, -1])
        return BeamState(
            t=t + 1,
            state=dec_state,
            prev=prev.reshape(-1),
            alive_logp=jnp.where(done[:, None], neg_inf, alive_logp),
            alive_tokens=tokens,
            alive_weights=weights,
            fin_scores=fin_scores,
            fin_logp=pick(c.fin_logp, top_logp),
            fin_lengths=pick(c.fin_lengths, jnp.full((batch, k), length, jnp.int32)),
            fin_tokens=pick(c.fin_tokens, tokens),
            fin_weights=pick(c.fin_weights, weights),
            done=done,
            greedy=g,
        )

    # (coverage penalties are <= 0, so the bound above holds with them too)
    c = staged_loop(
        cond,
        body,
        init,
        (memory, src_len),
        batch=batch,
        rows=r,
        live=lambda c: ~settled(c),
        keep=lambda c: c.replace(state=None, prev=None),
    )
    greedy = greedy_result(c.greedy) if keep_greedy else None
    return _n_best(c, n, k, alpha, beta, src_len), greedy


def _n_best(c: BeamState, n: int, k: int, alpha, beta, src_len) -> SearchResult:
    """The n-best list: finished hypotheses first, then the best alive ones (cut at max_len;
    there are alive ones only if the loop hit max_len)."""
    neg_inf = jnp.float32(-jnp.inf)
    alive_logp, order = lax.top_k(c.alive_logp, min(n, k))  # [B, min(N, K)]
    n_fin = jnp.sum(c.fin_scores > neg_inf, axis=1, keepdims=True)  # [B, 1]
    slot = jnp.arange(n)[None, :]  # [1, N]
    from_fin = slot < n_fin  # [B, N]
    alive_slot = jnp.clip(slot - n_fin, 0, order.shape[1] - 1)  # [B, N]

    def fill(fin, alive):  # fin [B, N, ...], alive [B, min(N, K), ...] (sorted) -> [B, N, ...]
        a = gather(alive, alive_slot)
        m = from_fin.reshape(from_fin.shape + (1,) * (fin.ndim - 2))
        return jnp.where(m, fin, a)

    alive_logp_n = gather(alive_logp, alive_slot)  # [B, N]
    alive_weights = gather(c.alive_weights, order)  # [B, min(N, K), T, S]
    alive_scores = _plus_coverage(
        alive_logp_n / length_penalty(c.t, alpha), gather(alive_weights, alive_slot), src_len, beta
    )  # [B, N]
    return SearchResult(
        tokens=fill(c.fin_tokens, gather(c.alive_tokens, order)),
        lengths=jnp.where(from_fin, c.fin_lengths, c.t),
        scores=jnp.where(from_fin, c.fin_scores, alive_scores),
        log_probs=jnp.where(from_fin, c.fin_logp, alive_logp_n),
        weights=fill(c.fin_weights, alive_weights),
        finished=from_fin,
        steps=c.t,
    )


def _plus_coverage(scores, weights, src_len, beta):
    """scores [B, M] + the coverage penalty of weights [B, M, T, S] over the src_len [B] real
    positions; beta None: no penalty, and nothing computed (beam_search passes None for 0)."""
    if beta is None:
        return scores
    return scores + coverage_penalty(weights, None if src_len is None else src_len[:, None], beta)


def add_greedy(
    beam: SearchResult, greedy: SearchResult, alpha, beta=None, src_len=None
) -> SearchResult:
    """Puts the greedy hypothesis into each n-best list (unless already there) and re-ranks:
    finished before cut-off ones, then by score. So beam search never does worse than greedy.
    steps: the decoder steps run, the beam's or greedy's (whichever ran longer)."""
    n = beam.tokens.shape[1]
    g = jax.tree.map(lambda x: x[:, None], greedy._replace(steps=None))  # [B, 1, ...]
    g = g._replace(
        scores=_plus_coverage(
            g.log_probs / length_penalty(g.lengths, alpha), g.weights, src_len, beta
        )
    )
    dup = jnp.all(beam.tokens == g.tokens, axis=-1) & (beam.lengths == g.lengths)  # [B, N]
    dup = jnp.any(dup & (beam.finished == g.finished) & (beam.scores > -jnp.inf), axis=1)
    g = g._replace(  # a duplicate ranks last, so it is dropped
        scores=jnp.where(dup[:, None], -jnp.inf, g.scores),
        finished=g.finished & ~dup[:, None],
    )
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), beam._replace(steps=None), g)
    order = jnp.lexsort((-both.scores, ~both.finished), axis=-1)[:, :n]  # [B, N]
    best = jax.tree.map(lambda x: gather(x, order), both)
    return best._replace(steps=jnp.maximum(beam.steps, greedy.steps))  # the steps run


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "bos_id",
        "eos_id",
        "pad_id",
        "max_len",
        "beam_size",
        "n_best",
        "keep_greedy",
        "constraints",
    ),
)
def _beam(
    model,
    variables,
    src,
    src_len,
    alpha,
    beta,
    *,
    bos_id,
    eos_id,
    pad_id,
    max_len,
    beam_size,
    n_best,
    keep_greedy,
    constraints,
):
    memory, state = start(model, variables, src, src_len, max_len)
    ids = dict(
        bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, max_len=max_len, constraints=constraints
    )
    # greedy's hypothesis: one more row of each sentence in the beam loop (few rows: nearly
    # free), else its own loop (a shared one would step every beam until greedy's output ends)
    fold = keep_greedy and few_rows(src.shape[0] * (beam_size + 1))
    result, greedy = beam_loop(
        model,
        variables,
        memory,
        state,
        src.shape[1],
        alpha,
        beta,
        src_len,
        beam_size=beam_size,
        n_best=n_best,
        keep_greedy=fold,
        **ids,
    )
    if keep_greedy and not fold:
        greedy = greedy_loop(model, variables, memory, state, src.shape[1], **ids)
    return add_greedy(result, greedy, alpha, beta, src_len) if keep_greedy else result


def beam_search(
    model,
    variables,
    src,
    src_len=None,
    *,
    eos_id: int,
    max_len: int,
    beam_size: int,
    alpha: float = 0.0,
    beta: float = 0.0,
    n_best: int = 1,
    bos_id: int | None = None,
    pad_id: int | None = None,
    keep_greedy: bool = True,
    min_len: int = 0,
    no_repeat_ngram: int = 0,
) -> SearchResult:
    """Beam search with a length penalty, jitted, stopping early.

    Slots no hypothesis reached (tiny vocabularies only) have score -inf. beam_size=1 gives
    exactly `greedy_search`.

    Args:
        model, variables, src, src_len, eos_id, max_len, bos_id: As in `greedy_search`.
        beam_size: Alive hypotheses per sentence (k).
        alpha: Length penalty exponent (0 = none: scores are raw log-probs).
        beta: Coverage penalty weight (Wu et al. 2016; 0 = none), see `coverage_penalty`.
        n_best: Hypotheses returned per sentence, best first (<= beam_size).
        pad_id: The id after a hypothesis's end; None = eos_id.
        keep_greedy: Also rank the greedy hypothesis (see the module docstring).
        min_len, no_repeat_ngram: As in `greedy_search`, for each beam (and the greedy one).

    Returns:
        A `SearchResult` with an n_best axis: tokens [B, n_best, max_len], weights
        [B, n_best, max_len, S], lengths/scores/log_probs/finished [B, n_best], steps [].
    """
    src, src_len = check_inputs(
        src,
        src_len,
        eos_id=eos_id,
        max_len=max_len,
        beam_size=beam_size,
        alpha=alpha,
        n_best=n_best,
        model=model,
        bos_id=bos_id,
        pad_id=pad_id,
    )
    check_value("beta", beta)
    constraints = Constraints.checked(min_len, no_repeat_ngram, max_len)
    if not isinstance(keep_greedy, (bool, np.bool_)):
        raise ValueError(f"keep_greedy must be True or False, got {keep_greedy!r}.")
    bos_id = model.bos_id if bos_id is None else bos_id
    pad_id = eos_id if pad_id is None else pad_id
    beta = None if isinstance(beta, numbers.Real) and beta == 0 else jnp.float32(beta)
    return _beam(
        model,
        variables,
        src,
        src_len,
        jnp.float32(alpha),
        beta,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
        beam_size=beam_size,
        n_best=n_best,
        keep_greedy=keep_greedy and beam_size > 1,
        constraints=constraints,
    )
