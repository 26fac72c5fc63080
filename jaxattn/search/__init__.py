"""Decoding search: greedy and beam search, batched, jitted, stopping early.

Both drive any `Seq2Seq` (any decoder, GRU or LSTM, padded batches) through its three methods:

    memory = model.apply(v, src, src_len, method="encode")
    state = model.apply(v, memory, method="init_state")
    state, logits, weights = model.apply(v, memory, state, prev, t, method="decode_step")

and loop with `lax.while_loop`, so decoding ends as soon as every sentence is done instead of
always running `max_len` steps. Scores are sums of `log_softmax(logits)` of the emitted tokens,
EOS included. Everything is ids only (no vocabulary or text).

Beam search keeps `beam_size` alive hypotheses and a pool of the `n_best` best finished ones.
Each step takes the top `beam_size` of all (alive hypothesis, next token) extensions; those that
end in EOS move to the pool (normalized by the length penalty ((5 + len) / 6) ** alpha of Wu et
al. 2016) and free their slot, which the next step refills. So beam_size=1 is exactly greedy.
A sentence is done when no hypothesis is alive or when no alive one can still beat the worst of
the pool. Finished hypotheses rank before ones cut off at `max_len`.

Beam search can end worse than greedy (the greedy prefix may fall out of the beam). With
keep_greedy=True (the default) the greedy hypothesis, decoded alongside, joins the n-best list
too, so beam search never scores below greedy; keep_greedy=False is textbook beam search.

The jitted cores are cached per (model, shapes, static options): repeated calls with the same
shapes compile once.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class SearchResult(NamedTuple):
    """Search output. Greedy: shapes as below; beam: an extra n_best axis after the batch.

    tokens [B, T] int32: emitted ids, EOS included, then pad_id. lengths [B] int32: tokens
    emitted, EOS included. scores [B] float32: log_probs / ((5 + len) / 6) ** alpha (greedy:
    = log_probs). log_probs [B]: sum of the emitted tokens' log-probs. weights [B, T, S]:
    attention of each emitted token, zero after the end. finished [B] bool: ended with EOS
    (False: cut at max_len). steps [] int32: decoder steps run (< T when all ended early).
    """

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array
    log_probs: jax.Array
    weights: jax.Array
    finished: jax.Array
    steps: jax.Array

    def top(self) -> SearchResult:
        """The best hypothesis of each sentence: drops the n_best axis of `decode`'s result."""
        return SearchResult(*(x[:, 0] for x in self[:-1]), self.steps)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_inputs(src, src_len, *, eos_id, max_len, beam_size=1, alpha=0.0, n_best=1):
    """(src int32 [B, S], src_len int32 [B] or None) after checking the search arguments;
    ValueError naming the first bad one."""
    for name, v in (("max_len", max_len), ("beam_size", beam_size)):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
    if not _is_int(n_best) or not 1 <= n_best <= beam_size:
        raise ValueError(
            f"Need 1 <= n_best <= beam_size, got n_best={n_best}, beam_size={beam_size}.")
    if not _is_int(eos_id) or eos_id < 0:
        raise ValueError(f"eos_id must be a token id (an integer >= 0), got {eos_id!r}.")
    if isinstance(alpha, (int, float)) and not np.isfinite(alpha):
        raise ValueError(f"alpha (the length penalty) must be a finite number, got {alpha!r}.")
    src = jnp.asarray(src)
    if src.ndim != 2 or not jnp.issubdtype(src.dtype, jnp.integer):
        raise ValueError(f"src must be integer token ids shaped [batch, length], got "
                         f"{src.dtype}{list(src.shape)}.")
    if src_len is not None:
        src_len = jnp.asarray(src_len)
        if src_len.shape != src.shape[:1] or not jnp.issubdtype(src_len.dtype, jnp.integer):
            raise ValueError(f"src_len must be integer lengths shaped [{src.shape[0]}], got "
                             f"{src_len.dtype}{list(src_len.shape)}.")
        src_len = src_len.astype(jnp.int32)
    return src.astype(jnp.int32), src_len


def length_penalty(length, alpha):
    """The length penalty of Wu et al. (2016).

    Args:
        length: Hypothesis lengths (any shape), EOS included.
        alpha: The exponent; 0 = no penalty.

    Returns:
        ((5 + length) / 6) ** alpha, float32 of length's shape (1 for alpha = 0).
    """
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _start(model, variables, src, src_len):
    memory = model.apply(variables, src, src_len, method="encode")
    state = model.apply(variables, memory, method="init_state")
    return memory, state


def _argmax(x):
    """`jnp.argmax(x, axis=-1)` (the first maximal index; NaN counts as maximal) as two plain
    reductions, which XLA's CPU backend runs about twice as fast as argmax's (value, index) one."""
    top = jnp.max(x, axis=-1, keepdims=True)
    hit = (x == top) | jnp.isnan(x)
    index = jnp.arange(x.shape[-1], dtype=jnp.int32)
    return jnp.min(jnp.where(hit, index, x.shape[-1]), axis=-1)


def _step(model, variables, memory, state, prev, t):
    """One decoder step -> (state, log-probs [N, V] float32, logits, weights [N, S] float32)."""
    state, logits, weights = model.apply(variables, memory, state, prev, t, method="decode_step")
    logits = logits.astype(jnp.float32)
    return state, jax.nn.log_softmax(logits), logits, weights.astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# Greedy
# ---------------------------------------------------------------------------------------------


def _greedy_loop(model, variables, memory, state, src_steps, *, bos_id, eos_id, pad_id, max_len):
    """Greedy decoding from an encoded batch (state leaves [B, ...]) -> SearchResult."""
    batch = jax.tree.leaves(state)[0].shape[0]
    carry = dict(
        t=jnp.int32(0),
        state=state,
        prev=jnp.full((batch,), bos_id, jnp.int32),
        done=jnp.zeros((batch,), bool),
        tokens=jnp.full((batch, max_len), pad_id, jnp.int32),
        weights=jnp.zeros((batch, max_len, src_steps), jnp.float32),
        log_probs=jnp.zeros((batch,), jnp.float32),
        lengths=jnp.zeros((batch,), jnp.int32),
    )

    def cond(c):
        return (c["t"] < max_len) & ~jnp.all(c["done"])

    def body(c):
        t, live = c["t"], ~c["done"]  # live [B]: still emitting
        state, logp, logits, w = _step(model, variables, memory, c["state"], c["prev"], t)
        tok = _argmax(logits)  # [B] int32, as the model's own loop (jnp.argmax)
        tok_logp = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]  # [B]
        return dict(
            t=t + 1,
            state=state,
            prev=tok,
            done=c["done"] | (tok == eos_id),
            tokens=c["tokens"].at[:, t].set(jnp.where(live, tok, pad_id)),
            weights=c["weights"].at[:, t].set(jnp.where(live[:, None], w, 0.0)),
            log_probs=jnp.where(live, c["log_probs"] + tok_logp, c["log_probs"]),
            lengths=c["lengths"] + live.astype(jnp.int32),
        )

    c = lax.while_loop(cond, body, carry)
    return SearchResult(
        c["tokens"], c["lengths"], c["log_probs"], c["log_probs"], c["weights"], c["done"], c["t"]
    )


@functools.partial(jax.jit, static_argnames=("model", "bos_id", "eos_id", "pad_id", "max_len"))
def _greedy(model, variables, src, src_len, *, bos_id, eos_id, pad_id, max_len):
    memory, state = _start(model, variables, src, src_len)
    return _greedy_loop(
        model,
        variables,
        memory,
        state,
        src.shape[1],
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
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

    Returns:
        A `SearchResult`: tokens [B, max_len], weights [B, max_len, S], lengths, scores,
        log_probs and finished [B], steps [].
    """
    src, src_len = check_inputs(src, src_len, eos_id=eos_id, max_len=max_len)
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
    )


# ---------------------------------------------------------------------------------------------
# Beam
# ---------------------------------------------------------------------------------------------


def _gather(x, idx):
    """x [B, K, ...], idx [B, M] -> x[b, idx[b, m], ...] of shape [B, M, ...]."""
    return jax.vmap(lambda xb, ib: xb[ib])(x, idx)


def _beam_loop(
    model,
    variables,
    memory,
    state,
    src_steps,
    alpha,
    *,
    bos_id,
    eos_id,
    pad_id,
    max_len,
    beam_size,
    n_best,
):
    """Beam search from an encoded batch (leaves [B, ...]) -> SearchResult with [B, N, ...]."""
    batch = jax.tree.leaves(state)[0].shape[0]
    k, n, steps = beam_size, n_best, max_len
    tile = functools.partial(jnp.repeat, repeats=k, axis=0)  # [B, ...] -> [B * K, ...]
    memory, state = jax.tree.map(tile, memory), jax.tree.map(tile, state)
    neg_inf = jnp.float32(-jnp.inf)
    carry = dict(
        t=jnp.int32(0),
        state=state,  # leaves [B * K, ...]
        prev=jnp.full((batch * k,), bos_id, jnp.int32),
        # alive hypotheses; only beam 0 is live at first (all beams start identical)
        alive_logp=jnp.full((batch, k), neg_inf).at[:, 0].set(0.0),  # [B, K], -inf = empty
        alive_tokens=jnp.full((batch, k, steps), pad_id, jnp.int32),
        alive_weights=jnp.zeros((batch, k, steps, src_steps), jnp.float32),
        # pool of the n best finished hypotheses, sorted by score
        fin_scores=jnp.full((batch, n), neg_inf),  # [B, N] normalized, -inf = empty
        fin_logp=jnp.full((batch, n), neg_inf),
        fin_lengths=jnp.zeros((batch, n), jnp.int32),
        fin_tokens=jnp.full((batch, n, steps), pad_id, jnp.int32),
        fin_weights=jnp.zeros((batch, n, steps, src_steps), jnp.float32),
        done=jnp.zeros((batch,), bool),
    )

    def cond(c):
        return (c["t"] < steps) & ~jnp.all(c["done"])

    def body(c):
        t = c["t"]
        state, logp, _, w = _step(model, variables, memory, c["state"], c["prev"], t)
        vocab = logp.shape[-1]
        cand = c["alive_logp"][:, :, None] + logp.reshape(batch, k, vocab)  # [B, K, V]
        top_logp, idx = lax.top_k(cand.reshape(batch, k * vocab), k)  # [B, K] best extensions
        parent, tok = idx // vocab, (idx % vocab).astype(jnp.int32)  # [B, K]

        tokens = _gather(c["alive_tokens"], parent).at[:, :, t].set(tok)  # [B, K, T]
        weights = _gather(c["alive_weights"], parent)  # [B, K, T, S]
        weights = weights.at[:, :, t].set(_gather(w.reshape(batch, k, src_steps), parent))
        flat = (jnp.arange(batch)[:, None] * k + parent).reshape(-1)  # [B * K]
        state = jax.tree.map(lambda x: x[flat], state)

        # extensions ending in EOS join the pool (kept sorted; ties keep the older entry)
        ended = (tok == eos_id) & (top_logp > neg_inf)  # [B, K]
        length = t + 1
        new_scores = jnp.where(ended, top_logp / length_penalty(length, alpha), neg_inf)
        scores = jnp.concatenate([c["fin_scores"], new_scores], axis=1)  # [B, N + K]
        fin_scores, sel = lax.top_k(scores, n)  # [B, N]

        def pick(old, new):  # old [B, N, ...], new [B, K, ...] -> the selected [B, N, ...]
            return _gather(jnp.concatenate([old, new], axis=1), sel)

        fin_logp = pick(c["fin_logp"], top_logp)
        fin_lengths = pick(c["fin_lengths"], jnp.full((batch, k), length, jnp.int32))
        fin_tokens = pick(c["fin_tokens"], tokens)
        fin_weights = pick(c["fin_weights"], weights)

        # the rest stay alive; a sentence is done when none is alive or none can still beat
        # the pool's worst: the best alive log-prob over the best length penalty to come
        alive_logp = jnp.where(ended, neg_inf, top_logp)  # [B, K]
        best = alive_logp.max(axis=1)  # [B]
        lp_next = length_penalty(jnp.minimum(length + 1, steps), alpha)
        bound = jnp.maximum(best / lp_next, best / length_penalty(steps, alpha))
        done = c["done"] | (best == neg_inf) | (bound < fin_scores[:, -1])
        alive_logp = jnp.where(done[:, None], neg_inf, alive_logp)
        return dict(
            t=t + 1,
            state=state,
            prev=tok.reshape(-1),
            alive_logp=alive_logp,
            alive_tokens=tokens,
            alive_weights=weights,
            fin_scores=fin_scores,
            fin_logp=fin_logp,
            fin_lengths=fin_lengths,
            fin_tokens=fin_tokens,
            fin_weights=fin_weights,
            done=done,
        )

    c = lax.while_loop(cond, body, carry)

    # Fill the n-best list: finished hypotheses first, then the best alive ones (cut at max_len;
    # there are alive ones only if the loop hit max_len).
    t = c["t"]
    alive_logp, order = lax.top_k(c["alive_logp"], min(n, k))  # [B, min(N, K)]
    n_fin = jnp.sum(c["fin_scores"] > neg_inf, axis=1, keepdims=True)  # [B, 1]
    slot = jnp.arange(n)[None, :]  # [1, N]
    from_fin = slot < n_fin  # [B, N]
    alive_slot = jnp.clip(slot - n_fin, 0, order.shape[1] - 1)  # [B, N]

    def fill(fin, alive):  # fin [B, N, ...], alive [B, min(N, K), ...] (sorted) -> [B, N, ...]
        a = _gather(alive, alive_slot)
        m = from_fin.reshape(from_fin.shape + (1,) * (fin.ndim - 2))
        return jnp.where(m, fin, a)

    alive_logp_n = _gather(alive_logp, alive_slot)  # [B, N]
    return SearchResult(
        tokens=fill(c["fin_tokens"], _gather(c["alive_tokens"], order)),
        lengths=jnp.where(from_fin, c["fin_lengths"], t),
        scores=jnp.where(from_fin, c["fin_scores"], alive_logp_n / length_penalty(t, alpha)),
        log_probs=jnp.where(from_fin, c["fin_logp"], alive_logp_n),
        weights=fill(c["fin_weights"], _gather(c["alive_weights"], order)),
        finished=from_fin,
        steps=t,
    )


def _add_greedy(beam: SearchResult, greedy: SearchResult, alpha) -> SearchResult:
    """Puts the greedy hypothesis into each n-best list (unless already there) and re-ranks:
    finished before cut-off ones, then by score. So beam search never does worse than greedy."""
    n = beam.tokens.shape[1]
    g = greedy._replace(scores=greedy.log_probs / length_penalty(greedy.lengths, alpha))
    g = jax.tree.map(lambda x: x[:, None], g._replace(steps=None))  # [B, 1, ...]
    dup = jnp.all(beam.tokens == g.tokens, axis=-1) & (beam.lengths == g.lengths)  # [B, N]
    dup = jnp.any(dup & (beam.finished == g.finished) & (beam.scores > -jnp.inf), axis=1)
    g = g._replace(  # a duplicate ranks last, so it is dropped
        scores=jnp.where(dup[:, None], -jnp.inf, g.scores),
        finished=g.finished & ~dup[:, None],
    )
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), beam._replace(steps=None), g)
    order = jnp.lexsort((-both.scores, ~both.finished), axis=-1)[:, :n]  # [B, N]
    best = jax.tree.map(lambda x: _gather(x, order), both)
    return best._replace(steps=beam.steps)


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
    ),
)
def _beam(
    model,
    variables,
    src,
    src_len,
    alpha,
    *,
    bos_id,
    eos_id,
    pad_id,
    max_len,
    beam_size,
    n_best,
    keep_greedy,
):
    memory, state = _start(model, variables, src, src_len)
    ids = dict(bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, max_len=max_len)
    result = _beam_loop(
        model,
        variables,
        memory,
        state,
        src.shape[1],
        alpha,
        beam_size=beam_size,
        n_best=n_best,
        **ids,
    )
    if keep_greedy and beam_size > 1:
        greedy = _greedy_loop(model, variables, memory, state, src.shape[1], **ids)
        result = _add_greedy(result, greedy, alpha)
    return result


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
    n_best: int = 1,
    bos_id: int | None = None,
    pad_id: int | None = None,
    keep_greedy: bool = True,
) -> SearchResult:
    """Beam search with a length penalty, jitted, stopping early.

    Slots no hypothesis reached (tiny vocabularies only) have score -inf. beam_size=1 gives
    exactly `greedy_search`.

    Args:
        model, variables, src, src_len, eos_id, max_len, bos_id: As in `greedy_search`.
        beam_size: Alive hypotheses per sentence (k).
        alpha: Length penalty exponent (0 = none: scores are raw log-probs).
        n_best: Hypotheses returned per sentence, best first (<= beam_size).
        pad_id: The id after a hypothesis's end; None = eos_id.
        keep_greedy: Also rank the greedy hypothesis (see the module docstring).

    Returns:
        A `SearchResult` with an n_best axis: tokens [B, n_best, max_len], weights
        [B, n_best, max_len, S], lengths/scores/log_probs/finished [B, n_best], steps [].
    """
    src, src_len = check_inputs(src, src_len, eos_id=eos_id, max_len=max_len,
                                beam_size=beam_size, alpha=alpha, n_best=n_best)
    bos_id = model.bos_id if bos_id is None else bos_id
    pad_id = eos_id if pad_id is None else pad_id
    return _beam(
        model,
        variables,
        src,
        src_len,
        jnp.float32(alpha),
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
        beam_size=beam_size,
        n_best=n_best,
        keep_greedy=keep_greedy and beam_size > 1,  # one compilation for beam_size=1
    )


METHODS = ("greedy", "beam")  # decode(method=...)


def decode(
    model,
    variables,
    src,
    src_len=None,
    *,
    eos_id: int,
    max_len: int,
    method: str = "greedy",
    beam_size: int = 1,
    alpha: float = 0.0,
    n_best: int = 1,
    keep_greedy: bool = True,
    bos_id: int | None = None,
    pad_id: int | None = None,
) -> SearchResult:
    """THE decoding entry: training validation, `Translator`, the benchmarks, the experiments
    and export all decode through here, so a decoding option is added once, here.

    Args:
        model, variables, src, src_len, eos_id, max_len, bos_id, pad_id: As in `greedy_search`.
        method: One of `METHODS`: 'greedy' (beam_size, n_best must be 1) or 'beam'.
        beam_size, alpha, n_best, keep_greedy: As in `beam_search` (method 'beam').

    Returns:
        A `SearchResult` that always has the n_best axis (greedy: n_best = 1): tokens
        [B, N, max_len], weights [B, N, max_len, S], lengths/scores/log_probs/finished [B, N],
        steps []. `result.top()` drops the axis.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown decoding method {method!r}; choose one of {METHODS}.")
    ids = dict(eos_id=eos_id, max_len=max_len, bos_id=bos_id, pad_id=pad_id)
    if method == "greedy":
        if beam_size != 1 or n_best != 1:
            raise ValueError(f"method='greedy' keeps one hypothesis: got beam_size={beam_size}, "
                             f"n_best={n_best}; use method='beam' for more.")
        r = greedy_search(model, variables, src, src_len, **ids)
        return SearchResult(*(x[:, None] for x in r[:-1]), r.steps)
    return beam_search(model, variables, src, src_len, beam_size=beam_size, alpha=alpha,
                       n_best=n_best, keep_greedy=keep_greedy, **ids)
