"""Sampling: each sentence's next token drawn from the model's distribution, reshaped by a
temperature, top-k and nucleus (top-p) filtering, from an explicit PRNG key; several samples
per sentence, batched and jitted in the greedy loop (greedy.py) with a sampling `pick`.

temperature 0 is greedy exactly (argmax), and so is top_k 1 (but for exact ties). Scores are
the model's own log-probabilities of the sampled tokens (not the filtered distribution's).

Nothing sorts the vocabulary (XLA's CPU sort of [128, 2727] costs ~55 ms a step): top-k takes
`lax.top_k`'s k-th value, draws invert a two-level CDF, and nucleus draws are drawn from the
whole distribution and kept if in the nucleus (`_draw_nucleus`), which is exact.

Randomness is per row: sentence b's n-th sample draws step t from
fold_in(fold_in(key_b, n), t), where key_b is the b-th of the given per-sentence keys (or
fold_in(rng, b) for one key). So a sentence's samples do not depend on the other sentences in
its batch, the batch size or the padding (`Translator` keys sentences by input position).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxattn.search.core import Constraints, SearchResult, argmax, check_inputs, start
from jaxattn.search.greedy import greedy_loop
from jaxattn.search.options import check_value


def _ordered(x):
    """float32 [N, V] -> uint32 keys in the same order (u >= w iff x >= y; -0 is +0)."""
    x = jnp.where(x == 0, 0.0, x.astype(jnp.float32))  # one key for both zeros: they tie
    u = lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.where(u >> 31 == 1, ~u, u | jnp.uint32(2**31))


def _largest_key_with(keys, holds):
    """Per row, the largest uint32 key v with holds(keys >= v) [N] true, by bisection on the
    bits: 32 fused passes over [N, V], no sort (XLA's CPU sort of [128, 2727] takes ~55 ms).
    holds(mask) must be true for the row's smallest key and monotone."""
    lo = keys.min(axis=-1)  # holds
    hi = keys.max(axis=-1)  # may hold; test it last

    def body(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo + 1) // 2  # in (lo, hi]
        ok = holds(keys >= mid[:, None])
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

    lo, _ = lax.fori_loop(0, 32, body, (lo, hi))
    return lo


def filter_logits(logits, temperature, top_k: int = 0, top_p: float = 1.0):
    """The sampling distribution's logits [N, V] from the model's: over the temperature, then
    only the top_k best (0: all) and the smallest set of best tokens whose probability reaches
    top_p (1.0: all); the rest -inf. The best token is always kept; tokens tied with the last
    one kept are kept too."""
    x = logits / jnp.maximum(temperature, 1e-6)  # [N, V]
    top_k = min(top_k, x.shape[-1])
    if top_k and top_k < x.shape[-1]:
        # the k-th best value as the min of top_k's values: XLA's CPU TopK takes ~2 ms at
        # [128, 2727], k=50, but a slice of its output (values[:, -1]) becomes a full sort (~50)
        kth = lax.top_k(x, top_k)[0].min(axis=-1, keepdims=True)  # [N, 1]
        x = jnp.where(x < kth, -jnp.inf, x)
    if top_p < 1.0:
        probs = jax.nn.softmax(x, axis=-1)
        keys = _ordered(x)
        # the last kept token's value: the largest v whose tokens x >= v hold >= top_p
        cut = _largest_key_with(keys, lambda m: jnp.where(m, probs, 0.0).sum(axis=-1) >= top_p)
        x = jnp.where(keys < cut[:, None], -jnp.inf, x)
    return x


_WIDTH = 64  # tokens per block of the two-level CDF
_TRIES = 16  # nucleus draws tried before the exact filter (when top_p >= _MIN_TOP_P)
_MIN_TOP_P = 0.3  # below it, the tries fail too often: the exact filter only


def _blocks(x):
    """exp(x - max) [N, V] in blocks [N, B, W] (zero padded; -inf gives 0) and the block sums
    [N, B]: a two-level CDF, so a draw scans B + W values, not V (XLA's CPU cumsum over
    [128, 2727] costs more than the step's output matmul)."""
    n, v = x.shape
    p = jnp.exp(x - x.max(axis=-1, keepdims=True))  # [N, V], the best token's is 1
    blocks = jnp.pad(p, ((0, 0), (0, -v % _WIDTH))).reshape(n, -1, _WIDTH)  # [N, B, W]
    return blocks, blocks.sum(axis=-1)


def _last_positive(w):
    """Index [N] of the last entry > 0 in each row of w [N, K]."""
    return w.shape[-1] - 1 - jnp.argmax(w[:, ::-1] > 0, axis=-1)


def _inverse_cdf(blocks, sums, keys):
    """One token per row [N] int32, row n drawn by keys[n] from the weights of `_blocks`: the
    first token whose cumulative weight exceeds u * total, u uniform in [0, 1). Rounding never
    picks a zero-weight token."""
    take = lambda a, i: jnp.take_along_axis(a, i[:, None], axis=1)[:, 0]  # noqa: E731
    cdf = jnp.cumsum(sums, axis=-1)  # [N, B]
    t = jax.vmap(jax.random.uniform)(keys) * cdf[:, -1]  # [N]
    blk = jnp.minimum(jnp.sum(cdf <= t[:, None], axis=-1), _last_positive(sums))  # [N]
    row = jnp.take_along_axis(blocks, blk[:, None, None], axis=1)[:, 0]  # [N, W]
    t = jnp.maximum(t - (take(cdf, blk) - take(sums, blk)), 0.0)  # what is left in the block
    j = jnp.sum(jnp.cumsum(row, axis=-1) <= t[:, None], axis=-1)
    return (blk * _WIDTH + jnp.minimum(j, _last_positive(row))).astype(jnp.int32)


def _draw(keys, x):
    """One token per row [N] int32 from softmax(x [N, V]) (-inf: never), row n by keys[n]: by
    inverse CDF, one uniform a row (`jax.random.categorical`'s Gumbel trick draws V)."""
    return _inverse_cdf(*_blocks(x), keys)


def _draw_nucleus(keys, x, top_p: float):
    """`_draw` from filter_logits(x, 1, top_p=top_p) without finding the cut first: draw from
    softmax(x) and keep the token if it is in the nucleus (the tokens strictly better than it
    hold < top_p of the mass), else draw again. A kept draw is exactly a draw from the nucleus,
    and each try succeeds with probability >= top_p (one pass over [N, V] against the exact
    filter's 32); rows that fail `_TRIES` tries draw from the exact filter."""
    n, v = x.shape
    blocks, sums = _blocks(x)
    p = blocks.reshape(n, -1)[:, :v]  # [N, V]
    mass = top_p * sums.sum(axis=-1)  # [N]
    fold = jax.vmap(jax.random.fold_in, (0, None))
    tries = _TRIES if top_p >= _MIN_TOP_P else 0

    def body(s):
        r, idx, done = s
        cand = _inverse_cdf(blocks, sums, fold(keys, r))  # [N]
        xc = jnp.take_along_axis(x, cand[:, None], axis=1)  # [N, 1]
        ok = ~done & (jnp.where(x > xc, p, 0.0).sum(axis=-1) < mass)
        return r + 1, jnp.where(ok, cand, idx), done | ok

    init = (0, jnp.zeros(n, jnp.int32), jnp.zeros(n, bool))
    _, idx, done = lax.while_loop(lambda s: (s[0] < tries) & ~s[2].all(), body, init)

    def exact(idx):
        drawn = _draw(fold(keys, tries), filter_logits(x, 1.0, top_p=top_p))
        return jnp.where(done, idx, drawn)

    return lax.cond(done.all(), lambda i: i, exact, idx)


def row_keys(rng, batch: int):
    """One typed PRNG key per sentence [batch] from `rng`: a key (row b: fold_in(rng, b)) or
    keys shaped [batch] (typed, or raw uint32 [batch, 2])."""
    if rng is None:
        raise ValueError("Sampling needs a PRNG key: pass rng=jax.random.key(seed).")
    rng = jnp.asarray(rng) if not isinstance(rng, jax.Array) else rng
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        if rng.dtype != jnp.uint32 or rng.shape[-1:] != (2,):
            raise ValueError(
                f"rng must be a PRNG key (jax.random.key(seed)) or one per "
                f"sentence, got {rng.dtype}{list(rng.shape)}."
            )
        rng = jax.random.wrap_key_data(rng)
    if rng.shape == ():
        return jax.vmap(jax.random.fold_in, (None, 0))(rng, jnp.arange(batch))
    if rng.shape != (batch,):
        raise ValueError(
            f"rng must be one PRNG key or one per sentence ({batch}), got {list(rng.shape)} keys."
        )
    return rng


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "bos_id",
        "eos_id",
        "pad_id",
        "max_len",
        "num_samples",
        "top_k",
        "top_p",
        "constraints",
    ),
)
def _sample(
    model,
    variables,
    src,
    src_len,
    keys,
    temperature,
    *,
    bos_id,
    eos_id,
    pad_id,
    max_len,
    num_samples,
    top_k,
    top_p,
    constraints,
):
    batch, n = src.shape[0], num_samples
    memory, state = start(model, variables, src, src_len, max_len)
    tile = functools.partial(jnp.repeat, repeats=n, axis=0)  # [B, ...] -> [B * N, ...]
    memory, state = jax.tree.map(tile, memory), jax.tree.map(tile, state)
    fold = jax.vmap(jax.random.fold_in)
    keys = fold(tile(keys), jnp.tile(jnp.arange(n), batch))  # [B * N]: sentence b, sample n

    def pick(logits, t, keys):  # logits [B * N, V], keys [B * N] -> [B * N] int32
        x = filter_logits(logits, temperature, top_k)
        step_keys = fold(keys, jnp.broadcast_to(t, keys.shape))  # [B * N]
        drawn = _draw_nucleus(step_keys, x, top_p) if top_p < 1 else _draw(step_keys, x)
        return jnp.where(temperature > 0, drawn, argmax(logits))

    r = greedy_loop(
        model,
        variables,
        memory,
        state,
        src.shape[1],
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
        pick=pick,
        pick_args=keys,
        constraints=constraints,
    )
    split = lambda x: x.reshape((batch, n) + x.shape[1:])  # noqa: E731 - [B * N, ...] -> [B, N, ...]
    return SearchResult(*(split(x) for x in r[:-1]), r.steps)


def sample(
    model,
    variables,
    src,
    src_len=None,
    *,
    rng,
    eos_id: int,
    max_len: int,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    bos_id: int | None = None,
    pad_id: int | None = None,
    min_len: int = 0,
    no_repeat_ngram: int = 0,
) -> SearchResult:
    """Samples `num_samples` translations per sentence, jitted, stopping once all have ended.

    Args:
        model, variables, src, src_len, eos_id, max_len, bos_id, pad_id: As in `greedy_search`.
        rng: A PRNG key (`jax.random.key(0)`; sentence b uses fold_in(rng, b)), or one key
            per sentence, shaped [B]. The same keys give the same samples.
        num_samples: Samples per sentence (N).
        temperature: Divides the logits; 0 = greedy, < 1 sharper, > 1 flatter.
        top_k: Sample among the k most likely tokens only (0: all).
        top_p: Nucleus sampling: among the fewest most likely tokens with total probability
            >= top_p (1.0: all).
        min_len, no_repeat_ngram: As in `greedy_search`, for each sample (banned tokens are
            never drawn).

    Returns:
        A `SearchResult` with a samples axis: tokens [B, N, max_len], weights
        [B, N, max_len, S], lengths/scores/log_probs/finished [B, N] (scores = log_probs).
    """
    check_value("n_best", num_samples, as_name="num_samples")
    src, src_len = check_inputs(
        src, src_len, eos_id=eos_id, max_len=max_len, model=model, bos_id=bos_id, pad_id=pad_id
    )
    keys = row_keys(rng, src.shape[0])
    for name, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
        check_value(name, v)
    constraints = Constraints.checked(min_len, no_repeat_ngram, max_len)
    bos_id = model.bos_id if bos_id is None else bos_id
    pad_id = eos_id if pad_id is None else pad_id
    return _sample(
        model,
        variables,
        src,
        src_len,
        keys,
        jnp.float32(temperature),
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
        num_samples=num_samples,
        top_k=int(top_k),
        top_p=float(top_p),
        constraints=constraints,
    )
