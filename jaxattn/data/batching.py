"""Text -> padded id arrays, as training, evaluation and inference all make them.

`encode` gives a sentence's ids then EOS (cut to a number of positions, EOS kept); `pad` stacks
rows into `ids [B, S]` + `lengths [B]`; `PadLength` picks the padded width S of a batch from
its longest row, so that compiled shapes are few and inference pads as training did;
`token_batches` cuts length-sorted pairs into batches of a padded-token budget (train.batch_tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxattn.data.text import Tokenizer
from jaxattn.data.vocab import Vocab


def encode_tokens(vocab: Vocab, tokens: Sequence[str], max_positions: int = 0) -> list[int]:
    """Ids of `tokens` then EOS; with max_positions > 0, cut to that many positions (EOS
    kept)."""
    return end(vocab.encode(tokens), vocab.eos_id, max_positions)


def end(ids: list[int], eos_id: int, max_positions: int = 0) -> list[int]:
    """`ids` (a new list, changed in place) then EOS, cut to max_positions > 0 positions."""
    if max_positions and len(ids) >= max_positions:
        del ids[max_positions - 1 :]
    ids.append(eos_id)
    return ids


def encode(tok: Tokenizer, vocab: Vocab, text: str, max_positions: int = 0) -> list[int]:
    """Ids of `text` (tokenized by `tok`) then EOS; see `encode_tokens`."""
    return encode_tokens(vocab, tok.tokenize(text), max_positions)


def pad(rows: Sequence[list[int]], padded_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (ids int32[B, padded_len] padded with pad_id, lengths int32[B]); B = len(rows)."""
    out = np.full((len(rows), padded_len), pad_id, np.int32)
    lens = np.fromiter(map(len, rows), np.int32, len(rows))
    for r, ids in enumerate(rows):
        out[r, : len(ids)] = ids
    return out, lens


class PadLength:
    """The padded width of a batch whose longest row has `n` positions: `pad_to` if set (and
    n fits), else the next bucket boundary, else n rounded up to a multiple."""

    def __init__(self, pad_to: int, multiple: int, boundaries: tuple[int, ...] = ()):
        self.pad_to, self.multiple, self.boundaries = pad_to, max(multiple, 1), boundaries

    @classmethod
    def from_config(cls, cfg) -> PadLength:
        """From a data config: pad_to, pad_multiple, bucket_boundaries."""
        return cls(cfg.pad_to, cfg.pad_multiple, tuple(cfg.bucket_boundaries))

    def __call__(self, n: int) -> int:
        if self.pad_to and n <= self.pad_to:
            return self.pad_to
        for b in self.boundaries:
            if n <= b:
                return b
        return -(-n // self.multiple) * self.multiple


def token_rows(n: int, capacity: int, multiple: int) -> int:
    """The rows a token batch of `n` pairs pads to (with empty rows): the smallest
    multiple x 2^k >= n, at most `capacity` (a multiple of `multiple`), so that a batch's row
    count is one of a few values and the jitted step compiles few shapes."""
    rows = multiple
    while rows < n:
        rows *= 2
    return min(rows, capacity)


def token_batches(
    widths: np.ndarray, budget: int, multiple: int, *, wide_alone: bool = False
) -> list[tuple[int, int, int]]:
    """Cuts pairs sorted by padded target width into batches of at most `budget` padded target
    tokens: `widths` int[N] (non-decreasing) -> [(start, stop, rows)], pairs [start, stop) in
    a batch of `rows` rows (a multiple of `multiple`, stop - start real ones, the rest
    empty) x widths[stop - 1] positions, rows x width <= budget.

    Greedy: a batch takes the next pairs while they fit at the widest one's width, so only the
    batches cut where the width grows (one per width at most) and the last one are not full.
    The cuts depend on the widths alone. ValueError if `multiple` rows of the widest pair do
    not fit in `budget`; with `wide_alone` (evaluation, where every sentence is translated)
    such pairs get batches of `multiple` rows instead (over the budget).
    """

    def capacity(w: int) -> int:  # rows at width w
        rows = budget // w // multiple * multiple
        return max(rows, multiple) if wide_alone else rows

    if len(widths) and capacity(int(widths[-1])) < multiple:
        raise ValueError(
            f"{multiple} row(s) of {int(widths[-1])} target positions need "
            f"{multiple * int(widths[-1])} tokens, more than the budget of {budget}."
        )
    out, start, n = [], 0, len(widths)
    while start < n:
        stop = start
        while stop < n:  # take the run of pairs of width w that still fits
            w = int(widths[stop])
            end = min(int(np.searchsorted(widths, w, "right")), start + capacity(w))
            if end <= stop:
                break
            stop = end
        out.append(
            (start, stop, token_rows(stop - start, capacity(int(widths[stop - 1])), multiple))
        )
        start = stop
    return out
