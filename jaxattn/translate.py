"""Translating batches with a trained model: ids in, token lists and attention weights out.

Shared by validation during training, `scripts/evaluate.py` and `scripts/translate.py`.
"""

from __future__ import annotations

import numpy as np

from jaxattn import search


def decode_batch(model, variables, batch, *, bos_id: int, eos_id: int, max_len: int,
                 beam_size: int = 1, alpha: float = 0.0):
    """Greedy (beam_size 1) or beam search on one batch.

    Returns (tokens [B, max_len] int array, lengths [B], weights [B, max_len, S], scores [B]).
    """
    src, src_len = batch["src"], batch["src_len"]
    if beam_size <= 1:
        r = search.greedy_search(model, variables, src, src_len, bos_id=bos_id, eos_id=eos_id,
                                 max_len=max_len)
        return (np.asarray(r.tokens), np.asarray(r.lengths), np.asarray(r.weights),
                np.asarray(r.scores))
    r = search.beam_search(model, variables, src, src_len, bos_id=bos_id, eos_id=eos_id,
                           max_len=max_len, beam_size=beam_size, alpha=alpha, n_best=1)
    return (np.asarray(r.tokens)[:, 0], np.asarray(r.lengths)[:, 0],
            np.asarray(r.weights)[:, 0], np.asarray(r.scores)[:, 0])


def translate_batches(model, variables, batches, vocab, *, max_len: int, beam_size: int = 1,
                      alpha: float = 0.0):
    """Translates every real row of `batches` (rows with src_len 0 are padding and skipped).

    Returns a list of dicts {'tokens': [str], 'weights': [out_len, src_len] array, 'score'}.
    """
    out = []
    for batch in batches:
        tokens, lengths, weights, scores = decode_batch(
            model, variables, batch, bos_id=vocab.bos_id, eos_id=vocab.eos_id, max_len=max_len,
            beam_size=beam_size, alpha=alpha,
        )
        src_len = np.asarray(batch["src_len"])
        for i in range(len(src_len)):
            if src_len[i] == 0:
                continue
            words = vocab.decode(tokens[i].tolist())
            out.append({
                "tokens": words,
                # rows: each emitted token incl. EOS; columns: source positions incl. EOS
                "weights": weights[i, : int(lengths[i]), : int(src_len[i])],
                "score": float(scores[i]),
            })
    return out
