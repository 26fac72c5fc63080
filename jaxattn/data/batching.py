"""Text -> padded id arrays, as training, evaluation and inference all make them.

`encode` gives a sentence's ids then EOS (cut to a number of positions, EOS kept); `pad` stacks
rows into `ids [B, S]` + `lengths [B]`; `PadLength` picks the padded width S of a batch from
its longest row, so that compiled shapes are few and inference pads as training did.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxattn.data.text import Tokenizer
from jaxattn.data.vocab import Vocab


def encode_tokens(vocab: Vocab, tokens: Sequence[str], max_positions: int = 0) -> list[int]:
    """Ids of `tokens` then EOS; with max_positions > 0, cut to that many positions (EOS
    kept)."""
    ids = vocab.encode(tokens)
    if max_positions and len(ids) >= max_positions:
        del ids[max_positions - 1 :]
    ids.append(vocab.eos_id)
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
