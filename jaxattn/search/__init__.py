"""Decoding search: one entry, `decode`, over greedy and beam search, batched, jitted and
stopping early. Training validation, `Translator`, the benchmarks, the experiments and export
all decode through `decode`, so a decoding option is added once, here.

The methods drive any `Seq2Seq` (any decoder, GRU or LSTM, padded batches) through its three
methods (see `core.start` and `core.step`):

    memory = model.apply(v, src, src_len, method="encode")
    state = model.apply(v, memory, method="init_state")
    state, logits, weights = model.apply(v, memory, state, prev, t, method="decode_step")

and loop with `lax.while_loop`, so decoding ends as soon as every sentence is done instead of
always running `max_len` steps. Scores are sums of `log_softmax(logits)` of the emitted tokens,
EOS included. Everything is ids only (no vocabulary or text). The jitted cores are cached per
(model, shapes, static options): repeated calls with the same shapes compile once.

- core.py: `SearchResult`, argument checks, `length_penalty`, `start`/`step`;
- greedy.py: `greedy_search` and its typed loop carry `GreedyState`;
- beam.py: `beam_search` (n-best, length and coverage penalties, keep_greedy), `BeamState`;
- sample.py: `sample` (temperature, top-k, top-p, from a PRNG key; several per sentence);
- force.py: `force_decode`, the log-probability of given targets (scoring mode).

Every method takes one model or an `Ensemble` of models with the same vocabularies.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxattn.search.beam import beam_search
from jaxattn.search.core import (
    Ensemble,
    SearchResult,
    check_inputs,
    coverage_penalty,
    length_penalty,
)
from jaxattn.search.force import Forced, force_decode
from jaxattn.search.greedy import greedy_search
from jaxattn.search.sample import filter_logits, sample

__all__ = [
    "METHODS",
    "Ensemble",
    "Forced",
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

METHODS = ("greedy", "beam", "sample")  # decode(method=...)


# options that only some methods read -> (their value when unused, the methods that read them)
_ONLY_FOR = {
    "beam_size": (1, ("beam",)),
    "beta": (0.0, ("beam",)),
    "rng": (None, ("sample",)),
    "temperature": (1.0, ("sample",)),
    "top_k": (0, ("sample",)),
    "top_p": (1.0, ("sample",)),
}


def _check_unused(method: str, **options) -> None:
    """ValueError for an option that `method` would ignore (set, but not read)."""
    for name, value in options.items():
        unused, methods = _ONLY_FOR[name]
        if method in methods or value is unused:
            continue
        try:
            same = value == unused if unused is not None else False
            same = bool(np.asarray(same)) if not isinstance(same, bool) else same
        except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
            same = False
        if not same:
            given = name if name == "rng" else f"{name}={value!r}"
            raise ValueError(
                f"{given} is for method={' or '.join(map(repr, methods))}"
                f"; method={method!r} would ignore it."
            )


@jax.jit
def _with_n_best_axis(r: SearchResult) -> SearchResult:
    """[B, ...] -> [B, 1, ...] in one dispatch (seven eager reshapes cost ~3 ms a call)."""
    return SearchResult(*(x[:, None] for x in r[:-1]), r.steps)


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
    beta: float = 0.0,
    n_best: int = 1,
    keep_greedy: bool = True,
    rng=None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    bos_id: int | None = None,
    pad_id: int | None = None,
) -> SearchResult:
    """Decodes a batch of source ids with one model or an `Ensemble` (variables: a tuple).

    Args:
        model, variables, src, src_len, eos_id, max_len, bos_id, pad_id: As in `greedy_search`.
        method: One of `METHODS`: 'greedy' (beam_size and n_best 1), 'beam' or 'sample'.
        beam_size, alpha, beta, n_best, keep_greedy: As in `beam_search` (method 'beam').
        rng, temperature, top_k, top_p: As in `sample`; n_best samples per sentence.

    Returns:
        A `SearchResult` that always has the n_best axis (greedy: n_best = 1): tokens
        [B, N, max_len], weights [B, N, max_len, S], lengths/scores/log_probs/finished [B, N],
        steps []. `result.top()` drops the axis.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"Unknown decoding method {method!r}; choose one of {METHODS}.")
    _check_unused(
        method,
        beam_size=beam_size,
        beta=beta,
        rng=rng,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    ids = dict(eos_id=eos_id, max_len=max_len, bos_id=bos_id, pad_id=pad_id)
    if method == "sample":
        return sample(
            model,
            variables,
            src,
            src_len,
            rng=rng,
            num_samples=n_best,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            **ids,
        )
    if method == "greedy":
        if beam_size != 1 or n_best != 1:
            raise ValueError(
                f"method='greedy' keeps one hypothesis: got beam_size={beam_size}, "
                f"n_best={n_best}; use method='beam' for more."
            )
        return _with_n_best_axis(greedy_search(model, variables, src, src_len, **ids))
    return beam_search(
        model,
        variables,
        src,
        src_len,
        beam_size=beam_size,
        alpha=alpha,
        beta=beta,
        n_best=n_best,
        keep_greedy=keep_greedy,
        **ids,
    )
