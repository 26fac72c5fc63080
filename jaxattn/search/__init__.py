"""Decoding search: one entry, `decode`, over greedy search, beam search and sampling, batched,
jitted and stopping early. Training validation, `Translator`, the benchmarks, the experiments
and export all decode through `decode`, and its options are the rows of one table
(`options.OPTIONS`), so a decoding option is added once, there.

The methods drive any `Seq2Seq` (any decoder, GRU or LSTM, padded batches) through its three
methods (see `core.start` and `core.step`):

    memory = model.apply(v, src, src_len, method="encode")
    state = model.apply(v, memory, max_len, method="init_state")  # a Transformer's cache size
    state, logits, weights = model.apply(v, memory, state, prev, t, method="decode_step")

and loop with `lax.while_loop`, so decoding ends as soon as every sentence is done instead of
always running `max_len` steps; a large batch goes on at half its rows once at most half of
its sentences are live (`core.staged_loop`). Scores are sums of `log_softmax(logits)` of the
emitted tokens, EOS included. Everything is ids only (no vocabulary or text). The jitted cores
are cached per (model, shapes, static options): repeated calls with the same shapes compile
once.

- options.py: the table of decoding options, `DecodeOptions` (checked once) and `METHODS`;
- core.py: `SearchResult`, argument checks, `length_penalty`, `Constraints` (min_len,
  no_repeat_ngram: banned tokens -inf each step, in every method), `start`/`step`, the
  loops' `staged_loop`;
- greedy.py: `greedy_search` and its typed loop carry `GreedyState`;
- beam.py: `beam_search` (n-best, length and coverage penalties, keep_greedy), `BeamState`;
- sample.py: `sample` (temperature, top-k, top-p, from a PRNG key; several per sentence);
- force.py: `force_decode`, the log-probability of given targets (scoring mode).

Every method takes one model or an `Ensemble` of models with the same vocabularies.
"""

from __future__ import annotations

import jax

from jaxattn.errors import OptionError
from jaxattn.search.beam import beam_search
from jaxattn.search.core import (
    Constraints,
    Ensemble,
    SearchResult,
    check_inputs,
    coverage_penalty,
    length_penalty,
)
from jaxattn.search.force import Forced, force_decode
from jaxattn.search.greedy import greedy_search
from jaxattn.search.options import METHODS, OPTIONS, DecodeOptions, Option
from jaxattn.search.sample import filter_logits, sample

__all__ = [
    "METHODS",
    "OPTIONS",
    "Constraints",
    "DecodeOptions",
    "Ensemble",
    "Forced",
    "Option",
    "SearchResult",
    "beam_search",
    "check_inputs",
    "coverage_penalty",
    "decode",
    "filter_logits",
    "force_decode",
    "greedy_search",
    "length_penalty",
    "sample",
]


@jax.jit
def _with_n_best_axis(r: SearchResult) -> SearchResult:
    """[B, ...] -> [B, 1, ...] in one dispatch (seven eager reshapes cost ~3 ms a call)."""
    return SearchResult(*(x[:, None] for x in r[:-1]), r.steps)


def decode(
    model,
    variables,
    src,
    src_len=None,
    options: DecodeOptions | None = None,
    *,
    eos_id: int,
    max_len: int,
    rng=None,
    keep_greedy: bool = True,
    bos_id: int | None = None,
    pad_id: int | None = None,
    **decoding,
) -> SearchResult:
    """Decodes a batch of source ids with one model or an `Ensemble` (variables: a tuple).

    Args:
        model, variables, src, src_len, eos_id, max_len, bos_id, pad_id: As in `greedy_search`.
        options / decoding: a `DecodeOptions`, or its fields as keywords (method='beam',
            beam_size=5, ...; see `OPTIONS`), checked as DecodeOptions checks them
            (OptionError, a ValueError). method: 'greedy' unless given (None is not a method
            here); alpha None: 0. seed is Translator's: decode samples from `rng`.
        rng: The PRNG key of method 'sample' (see `sample`).
        keep_greedy: As in `beam_search`.

    Returns:
        A `SearchResult` that always has the n_best axis (greedy: n_best = 1): tokens
        [B, N, max_len], weights [B, N, max_len, S], lengths/scores/log_probs/finished [B, N],
        steps []. `result.top()` drops the axis.
    """
    if options is None:
        decoding.setdefault("method", "greedy")
        OPTIONS["method"].check(decoding["method"], none=False)
    o = DecodeOptions.make(options, **decoding)
    if rng is not None and o.method != "sample":
        raise OptionError(f"rng is for method='sample'; method={o.method!r} would ignore it.")
    ids = dict(eos_id=eos_id, max_len=max_len, bos_id=bos_id, pad_id=pad_id)
    ids.update(min_len=o.min_len, no_repeat_ngram=o.no_repeat_ngram)  # every method's
    if o.method == "sample":
        return sample(
            model,
            variables,
            src,
            src_len,
            rng=rng,
            num_samples=o.n_best,
            temperature=o.temperature,
            top_k=o.top_k,
            top_p=o.top_p,
            **ids,
        )
    if o.method == "greedy":
        return _with_n_best_axis(greedy_search(model, variables, src, src_len, **ids))
    return beam_search(
        model,
        variables,
        src,
        src_len,
        beam_size=o.beam_size,
        alpha=0.0 if o.alpha is None else o.alpha,
        beta=o.beta,
        n_best=o.n_best,
        keep_greedy=keep_greedy,
        **ids,
    )
