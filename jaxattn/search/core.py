"""What every search method shares: the result type, argument checks, the length and coverage
penalties, the decoding constraints (`Constraints`: min_len, no_repeat_ngram), and the two
calls that drive a model (`start`: encode + initial state; `step`: one decoder step to
log-probabilities), for one model or an `Ensemble`. A new way to score a step goes here once,
and greedy, beam, sampling and forced decoding all get it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxattn.checks import is_int
from jaxattn.errors import OptionError
from jaxattn.search.options import check_n_best, check_value, concrete


class SearchResult(NamedTuple):
    """Search output. Greedy: shapes as below; beam and `decode`: an n_best axis after the batch.

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


def vocab_sizes(model) -> tuple[int | None, int | None]:
    """(source, target) vocabulary sizes of a `Seq2Seq` (its embedding and output sizes) or
    an `Ensemble`; None where the model does not say (a module of another kind)."""
    if isinstance(model, Ensemble):
        return vocab_sizes(model.models[0])
    return tuple(
        getattr(getattr(model, part, None), "vocab_size", None) for part in ("encoder", "decoder")
    )


def check_ids(name: str, x, vocab: int | None, what: str = "token ids") -> None:
    """ValueError unless every value of x (when known here) is an id in [0, vocab)."""
    values = concrete(x)
    if vocab is None or values is None or values.size == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= vocab:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} holds {bad}, not one of the model's {vocab} {what} "
            f"(0..{vocab - 1}); encode with the vocabulary the model was trained "
            "with."
        )


def check_lengths(name: str, lengths, width, shape) -> jax.Array:
    """lengths as int32 after checking: integers shaped `shape`, each in [0, width]."""
    arr = jnp.asarray(lengths)
    if arr.shape != shape or not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(
            f"{name} must be integer lengths shaped {list(shape)}, got "
            f"{arr.dtype}{list(arr.shape)}."
        )
    values = concrete(lengths)
    if (
        values is not None
        and values.size
        and isinstance(width, int)
        and (values.min() < 0 or values.max() > width)
    ):
        bad = values.min() if values.min() < 0 else values.max()
        raise ValueError(
            f"{name} holds {bad}: lengths must be in [0, {width}] (the padded "
            f"width); 0 marks an empty (padding) row."
        )
    return arr.astype(jnp.int32)


def check_inputs(
    src,
    src_len,
    *,
    eos_id,
    max_len,
    beam_size=1,
    alpha=0.0,
    n_best=1,
    model=None,
    bos_id=None,
    pad_id=None,
):
    """(src int32 [B, S], src_len int32 [B] or None) after checking the search arguments;
    ValueError naming the first bad one (OptionError for decoding options: the ranges of
    `options.OPTIONS`). With `model`, ids (src, eos_id, bos_id) are checked against its
    vocabulary sizes."""
    if not is_int(max_len) or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}.")
    check_value("beam_size", beam_size)
    check_value("n_best", n_best)
    check_value("alpha", alpha, bounded=False)  # any finite exponent; DecodeOptions: >= 0
    check_n_best(n_best, beam_size)
    src_vocab, tgt_vocab = vocab_sizes(model) if model is not None else (None, None)
    for name, v in (("eos_id", eos_id), ("bos_id", bos_id)):
        if v is not None and (not is_int(v) or v < 0 or (tgt_vocab and v >= tgt_vocab)):
            raise ValueError(
                f"{name} must be a target token id (an integer in [0, "
                f"{tgt_vocab or 'vocab size'})), got {v!r}."
            )
    if pad_id is not None and not is_int(pad_id):
        raise ValueError(
            f"pad_id must be an integer (the id after a hypothesis's end), got {pad_id!r}."
        )
    raw, src = src, jnp.asarray(src) if not isinstance(src, jax.Array) else src
    if src.ndim != 2 or not jnp.issubdtype(src.dtype, jnp.integer):
        raise ValueError(
            f"src must be integer token ids shaped [batch, length], got "
            f"{src.dtype}{list(src.shape)}."
        )
    if any(isinstance(d, int) and d == 0 for d in src.shape):
        raise ValueError(
            f"src is empty (shape {list(src.shape)}): give at least one sentence "
            "of at least one position (EOS)."
        )
    check_ids("src", raw, src_vocab, "source ids")
    if src_len is not None:
        src_len = check_lengths("src_len", src_len, src.shape[1], src.shape[:1])
    return src.astype(jnp.int32), src_len


class Constraints(NamedTuple):
    """What no hypothesis may do, as -inf log-probabilities at each step (`apply`), the same in
    greedy, beam search (each beam's own output) and sampling. Static (jit compiles once per
    value); the zeros constrain nothing and leave the search's code as it was. Scores stay the
    model's own log-probabilities of the tokens emitted (the allowed ones are not renormalized).
    """

    min_len: int = 0  # EOS -inf while fewer than min_len tokens are out (EOS not counted)
    no_repeat_ngram: int = 0  # n: a token completing an n-gram already in the output -inf

    @classmethod
    def checked(cls, min_len, no_repeat_ngram, max_len) -> Constraints:
        """Constraints after the checks of their options (OptionError naming the option) and
        of min_len against max_len: min_len tokens then EOS must fit in max_len steps."""
        check_value("min_len", min_len)
        check_value("no_repeat_ngram", no_repeat_ngram)
        if min_len and is_int(max_len) and min_len >= max_len:
            raise OptionError(
                f"min_len={min_len} needs max_len >= {min_len + 1} (min_len tokens, then EOS), "
                f"got max_len={max_len}: raise max_len (--max_len) or lower min_len."
            )
        return cls(int(min_len), int(no_repeat_ngram))

    def apply(self, logits, t, tokens, eos_id: int):
        """`step`'s logits [N, V] at step t (tokens out so far) with the banned tokens -inf.

        tokens [N, T]: each row's output, tokens[:, :t] emitted. n-grams are of the output
        alone (BOS not part of one): token w is banned where tokens[:, t-n+1:t] followed by w
        is an n-gram tokens[:, j:j+n], j + n <= t. If the n-gram ban leaves nothing but EOS
        (a vocabulary of a few tokens only), EOS is allowed before min_len.
        """
        n = self.no_repeat_ngram
        if n and tokens.shape[1] > n:  # an n-gram repeats at step n at the earliest
            rows, steps = tokens.shape
            padded = jnp.pad(tokens, ((0, 0), (0, n - 1)))  # windows of every start j: [N, T]
            suffix = lax.dynamic_slice_in_dim(tokens, jnp.maximum(t - (n - 1), 0), n - 1, 1)
            match = jnp.broadcast_to(jnp.arange(steps) <= t - n, (rows, steps))  # [N, T]
            for i in range(n - 1):
                match = match & (padded[:, i : i + steps] == suffix[:, i : i + 1])
            after = padded[:, n - 1 : n - 1 + steps]  # [N, T]: the token after each (n-1)-gram
            hits = jnp.zeros(logits.shape, jnp.int32)
            hits = hits.at[jnp.arange(rows)[:, None], after].add(match.astype(jnp.int32))
            logits = jnp.where(hits > 0, -jnp.inf, logits)
        if self.min_len:
            early = t < self.min_len
            if n:  # EOS is the one token left: allowed
                content = jnp.arange(logits.shape[-1]) != eos_id
                early = early & jnp.any(content & (logits > -jnp.inf), axis=-1)  # [N]
            logits = logits.at[:, eos_id].set(jnp.where(early, -jnp.inf, logits[:, eos_id]))
        return logits


NO_CONSTRAINTS = Constraints()  # the searches' default: nothing banned


def length_penalty(length, alpha):
    """The length penalty of Wu et al. (2016).

    Args:
        length: Hypothesis lengths (any shape), EOS included.
        alpha: The exponent; 0 = no penalty.

    Returns:
        ((5 + length) / 6) ** alpha, float32 of length's shape (1 for alpha = 0).
    """
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def coverage_penalty(weights, src_len, beta):
    """The coverage penalty of Wu et al. (2016): beta * sum_i log(min(sum_j a_ji, 1)) over the
    real source positions i (j: emitted tokens). <= 0; 0 when every position got attention 1.

    Args:
        weights: Attention of each emitted token [..., T, S] (zero after the end).
        src_len: Source lengths broadcastable to weights[..., 0, 0], or None (all real).
        beta: The weight; 0 = no penalty.
    """
    coverage = jnp.minimum(weights.sum(axis=-2), 1.0)  # [..., S]
    if src_len is not None:
        real = jnp.arange(weights.shape[-1]) < jnp.asarray(src_len)[..., None]
        coverage = jnp.where(real, coverage, 1.0)
    return beta * jnp.log(jnp.maximum(coverage, 1e-10)).sum(axis=-1)


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """Several models decoded as one (pass a tuple of their variables): each step, the mean of
    their next-token probabilities (fairseq's rule, in log space) and of their attention
    weights. The members must share the source and target vocabularies."""

    models: tuple

    def __post_init__(self):
        if isinstance(self.models, (list, tuple)):  # a list would not hash (jit's static arg)
            object.__setattr__(self, "models", tuple(self.models))
        if not isinstance(self.models, tuple) or not self.models:
            raise ValueError("An Ensemble needs a tuple of at least one model.")
        if any(isinstance(m, Ensemble) for m in self.models):
            raise ValueError(
                "An Ensemble's members must be models, not Ensembles: list the "
                "models in one Ensemble."
            )
        if len({m.bos_id for m in self.models}) > 1:
            raise ValueError(
                "The ensemble's models start from different BOS ids: their "
                "target vocabularies differ."
            )
        sizes = [vocab_sizes(m) for m in self.models]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"The ensemble's models have different (source, target) vocabulary "
                f"sizes {sizes}: ensembled models must share both vocabularies."
            )

    @property
    def bos_id(self) -> int:
        return self.models[0].bos_id


def _members(model, variables):
    if not isinstance(model, Ensemble):
        return None
    if not isinstance(variables, (tuple, list)) or len(variables) != len(model.models):
        raise ValueError(
            f"An Ensemble of {len(model.models)} models needs a tuple of as many variable dicts."
        )
    return tuple(zip(model.models, variables, strict=True))


def start(model, variables, src, src_len, steps: int):
    """Encodes a batch: (memory, initial decoder state for `steps` decoding steps), every leaf
    batch first [B, ...] (an Ensemble: tuples of its members')."""
    members = _members(model, variables)
    if members is not None:
        pairs = [start(m, v, src, src_len, steps) for m, v in members]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    memory = model.apply(variables, src, src_len, method="encode")
    # init_state(memory, steps) sizes a fixed cache (the Transformer's); a model whose
    # init_state takes the memory only (any module of the protocol) gets that.
    sized = "steps" in inspect.signature(type(model).init_state).parameters
    state = model.apply(variables, memory, *((steps,) if sized else ()), method="init_state")
    return memory, state


def step(model, variables, memory, state, prev, t):
    """One decoder step -> (state, logits [N, V] float32, log_z [N] float32, attention weights
    [N, S] float32); the log-probs are logits - log_z[:, None].

    The normalizer comes apart from the logits so that no [N, V] log-softmax is written each
    step: greedy search needs the emitted token's log-prob only (one fused exp-sum pass), beam
    search adds log_z into its candidates' scores. An Ensemble's "logits" are its combined
    log-probs (log_z = 0)."""
    members = _members(model, variables)
    if members is not None:
        out = [
            step(m, v, mem, st, prev, t)
            for (m, v), mem, st in zip(members, memory, state, strict=True)
        ]
        logp = jnp.stack([o[1] - o[2][:, None] for o in out])  # [M, N, V]
        logp = jax.nn.logsumexp(logp, axis=0) - math.log(len(out))
        weights = jnp.mean(jnp.stack([o[3] for o in out]), axis=0)
        return tuple(o[0] for o in out), logp, jnp.zeros(logp.shape[:1], jnp.float32), weights
    state, logits, weights = model.apply(variables, memory, state, prev, t, method="decode_step")
    logits = logits.astype(jnp.float32)
    return state, logits, jax.nn.logsumexp(logits, axis=-1), weights.astype(jnp.float32)


def token_log_prob(logits, log_z, tokens):
    """log-probs of tokens [N] under `step`'s (logits [N, V], log_z [N]) -> [N] float32."""
    return jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0] - log_z


def argmax(x):
    """`jnp.argmax(x, axis=-1)` (the first maximal index; NaN counts as maximal) as two plain
    reductions, which XLA's CPU backend runs about twice as fast as argmax's (value, index)
    one; the index is reduced as a float (exact below 2**24), which its CPU reductions
    vectorize and an int32 min they do not (~25% less at [576, 2727])."""
    top = jnp.max(x, axis=-1, keepdims=True)
    hit = (x == top) | jnp.isnan(x)
    dtype = jnp.float32 if x.shape[-1] < 2**24 else jnp.int32
    index = jnp.arange(x.shape[-1], dtype=dtype)
    return jnp.min(jnp.where(hit, index, x.shape[-1]), axis=-1).astype(jnp.int32)


TOP_K_BLOCK = 128  # `top_k`'s block width: one max pass ranks the blocks, then k blocks


def top_k(x, k: int, block: int = TOP_K_BLOCK):
    """`lax.top_k(x, k)` over the last axis of x [..., L]: the same values and indices, ties to
    the lower index, at the cost of about one pass over x. XLA's CPU TopK takes ~15 ms at beam
    search's [128, 5 x 6,285] (20x a max pass), so the blocks of `block` consecutive
    positions are ranked by their maxima, and TopK runs on the k best blocks only.

    Exact: a block's max ranks it by its best element (value, then index), so the block of one
    of the k best elements is among the k best blocks (else k elements would be better). The
    chosen blocks are read in index order, so equal values keep lax.top_k's order (the lower
    index first). NaN ranks above everything, as in lax.top_k (NaN blocks rank as +inf; a row
    holding both NaN and +inf may differ: beam candidates are log-probs, never +inf). Without
    more than k blocks, lax.top_k itself.
    """
    length = x.shape[-1]
    full = length // block  # whole blocks; a shorter one at the end holds the rest
    if full <= k:
        return lax.top_k(x, k)
    lead = x.shape[:-1]
    ranked = jnp.where(jnp.isnan(x), jnp.inf, x)  # NaN first, as lax.top_k (a fused select)
    maxima = ranked[..., : full * block].reshape(*lead, full, block).max(axis=-1)  # [..., nb]
    if full * block < length:
        maxima = jnp.concatenate([maxima, ranked[..., full * block :].max(-1, keepdims=True)], -1)
    _, blocks = lax.top_k(maxima, k)  # [..., k]
    blocks = jnp.sort(blocks, axis=-1)  # in index order: equal values keep the lower index
    idx = (blocks[..., None] * block + jnp.arange(block)).reshape(*lead, k * block)
    # positions past the end (in the last block only, last in order) read -inf: never chosen
    # before the >= k real candidates
    values, pos = lax.top_k(
        jnp.take_along_axis(x, idx, axis=-1, mode="fill", fill_value=-jnp.inf), k
    )  # [..., k]
    return values, jnp.take_along_axis(idx, pos, axis=-1)


def gather(x, idx):
    """x [B, K, ...], idx [B, M] -> x[b, idx[b, m], ...] of shape [B, M, ...]."""
    return jax.vmap(lambda xb, ib: xb[ib])(x, idx)


# A decoder step over fewer rows than this costs about the same whatever their number (it
# reads every weight once): `staged_loop` does not halve a batch below it, and beam search
# decodes keep_greedy's hypothesis in the beam's rows below it (in its own loop above).
FEW_ROWS = 64


def few_rows(rows: int) -> bool:
    """Whether a step over `rows` rows is under FEW_ROWS (costs about a step of one row);
    False for a symbolic size (an export for any batch)."""
    return isinstance(rows, int) and rows < FEW_ROWS


def stages(batch: int, rows: int = 1) -> list[int]:
    """The sentences each stage of `staged_loop` holds: `batch`, then half of it if that half
    (of `rows` rows a sentence) still holds FEW_ROWS rows. One halving only: each stage is
    compiled, and the Multi30k test set (sorted by length) gained 12% (beam 5) and 5% (greedy)
    at batch 128 from it against 14% and 5% from halving down to FEW_ROWS, which compiled
    twice as long. A symbolic batch (an export for any batch size) is one stage."""
    if isinstance(batch, int) and (batch // 2) * rows >= FEW_ROWS:
        return [batch, batch // 2]
    return [batch]


def _rows(idx, n: int, length: int):
    """The rows of sentences idx [M] in a leaf of `length` rows over n sentences (length / n
    consecutive rows a sentence)."""
    if length % n:
        raise ValueError(f"a loop leaf of {length} rows over {n} sentences: not batch-first")
    r = length // n
    return idx if r == 1 else (idx[:, None] * r + jnp.arange(r)).reshape(-1)


def _take(tree, idx, n: int):
    """The rows of sentences idx of every batch-first leaf (scalars: shared, kept)."""
    return jax.tree.map(lambda x: x if x.ndim == 0 else x[_rows(idx, n, x.shape[0])], tree)


def _put(full, part, idx, n: int):
    """full (n sentences) with the rows of sentences idx replaced by part's (scalars: part's)."""
    return jax.tree.map(
        lambda f, x: x if x.ndim == 0 else f.at[_rows(idx, n, f.shape[0])].set(x), full, part
    )


def staged_loop(cond, body, carry, consts, *, batch: int, live, keep, rows: int = 1):
    """`lax.while_loop(cond, lambda c: body(c, consts), carry)` that drops finished sentences.

    A decoding step costs every row of the batch, finished or not, and a batch (even sorted
    by length) runs until its longest output ends. So the loop runs in stages (`stages`): once
    at most half of a stage's sentences are live (live(c) -> [B'] bool), the live ones (and
    finished ones to fill) go on in a loop of half as many rows. Each row computes on its own,
    so the outputs are the single loop's (up to float rounding: matmuls of other sizes).
    Every leaf of carry and consts is batch-first (the `batch` sentences, `rows` consecutive
    rows each or one) or a scalar shared by all (the step). Returns keep(the final carry)
    over the whole batch in its order: keep drops what the result does not need (the decoder
    state: not copied back)."""
    sizes = stages(batch, rows)
    if len(sizes) == 1:
        return keep(lax.while_loop(cond, lambda c: body(c, consts), carry))
    half = sizes[1]
    carry = lax.while_loop(
        lambda c: cond(c) & (jnp.sum(live(c)) > half), lambda c: body(c, consts), carry
    )
    full = keep(carry)
    pick = jnp.argsort(~live(carry), stable=True)[:half]  # live first
    carry, rest = _take(carry, pick, batch), _take(consts, pick, batch)
    carry = lax.while_loop(cond, lambda c: body(c, rest), carry)
    return _put(full, keep(carry), pick, batch)
