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
- beam.py: `beam_search` (n-best, length penalty, keep_greedy) and `BeamState`.
"""

from __future__ import annotations

from jaxattn.search.beam import beam_search
from jaxattn.search.core import SearchResult, check_inputs, length_penalty
from jaxattn.search.greedy import greedy_search

__all__ = ["METHODS", "SearchResult", "beam_search", "check_inputs", "decode", "greedy_search",
           "length_penalty"]

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
