"""The one prediction path, shared by training's validation and `Translator`: source id rows ->
length-sorted batches -> `search.decode` -> target ids -> text (JoeyNMT's `predict` idea).

Validation scores the translations users get only if both decode the same batches the same
way, so each step lives here once:

- `plan`: the non-empty sources sorted by length in batches of `batch_size` (fewer padded
  positions), or of at most `batch_tokens` padded source positions (eval.batch_tokens); rows
  padded to a power of two and widths to `source_width` (as training pads), so compiled shapes
  are few; each batch's decoding steps.
- `decode`: the `search.decode` call with the target vocabulary's EOS and BOS.
- `predict`: the batches decoded asynchronously, IN_FLIGHT ahead of the one the host reads;
  the caller puts each sentence back at its input position.
- `hypothesis_ids`, `target_text`: a hypothesis cut at EOS, then detokenized without PAD/BOS.
- `greedy_texts`: all of it for validation (greedy, best text per source).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np

from jaxattn import search
from jaxattn.data.batching import PadLength, pad, token_batches
from jaxattn.model.seq2seq import source_positions

IN_FLIGHT = 4  # batches dispatched ahead of the one being collected


def round_up(n: int, multiple: int) -> int:
    """n rounded up to a multiple of `multiple` (padded widths and decode lengths)."""
    return -(-n // multiple) * multiple


def length_batches(lengths: Sequence[int], batch_size: int) -> list[tuple[list[int], int]]:
    """[(indices, rows)]: the indices sorted by length in chunks of batch_size, each padded
    to `rows`, a power of two (rows past the chunk repeat its last)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [
        (
            order[s : s + batch_size],
            min(batch_size, 1 << (len(order[s : s + batch_size]) - 1).bit_length()),
        )
        for s in range(0, len(order), batch_size)
    ]


def source_width(config) -> Callable[[int], int]:
    """n -> the padded source width S of a batch whose longest row has n positions: as training
    pads (data.pad_to, bucket_boundaries, pad_multiple; models trained without masks see the
    padding they were trained on), at most location attention's positions."""
    pad_length, positions = PadLength.from_config(config.data), source_positions(config.model)
    return lambda n: min(pad_length(n), positions) if positions else pad_length(n)


@dataclasses.dataclass(frozen=True)
class Batch:
    """One decoding batch: `idx` the input positions of its sentences (by length), padded to
    `rows` rows (rows past len(idx) repeat the last) of `padded_len` positions; `max_len`
    decoding steps."""

    idx: list[int]
    rows: int
    padded_len: int
    max_len: int

    @property
    def order(self) -> list[int]:
        """The input position of each of the `rows` rows."""
        return [self.idx[min(r, len(self.idx) - 1)] for r in range(self.rows)]

    def source(self, sources: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, ...]:
        """(src int32[rows, padded_len], src_len int32[rows]) of this batch's rows."""
        return pad([sources[i] for i in self.order], self.padded_len, pad_id)


def plan(
    lengths: Sequence[int],
    batch_size: int,
    padded_len: Callable[[int], int],
    max_len: Callable[[int], int],
    batch_tokens: int = 0,
) -> list[Batch]:
    """The batches of the sources of `lengths` positions (EOS included) that have a token
    (length > 1; the others translate to '' without decoding), sorted by length
    (`length_batches`); widths `padded_len(longest)`, decoding steps `max_len(width)`.
    batch_tokens > 0: instead of batch_size rows, as many as fit rows x width <= batch_tokens
    (`batching.token_batches`; rows a power of two or the width's capacity; a sentence wider
    than the budget is decoded alone)."""
    todo = [i for i, n in enumerate(lengths) if n > 1]
    chunks = length_batches([lengths[i] for i in todo], batch_size)
    if batch_tokens:
        order = sorted(range(len(todo)), key=lambda i: lengths[todo[i]])
        widths = np.array([padded_len(lengths[todo[i]]) for i in order], np.int64)
        cuts = token_batches(widths, batch_tokens, 1, wide_alone=True)
        chunks = [(order[a:b], rows) for a, b, rows in cuts]
    batches = []
    for idx, rows in chunks:
        idx = [todo[i] for i in idx]
        width = padded_len(lengths[idx[-1]])
        batches.append(Batch(idx, rows, width, max_len(width)))
    return batches


def decode(model, variables, src, src_len, options=None, *, tgt_vocab, max_len: int, **kw):
    """`search.decode` of src [B, S], src_len [B] with the target vocabulary's EOS and BOS;
    options: a `DecodeOptions` (None: greedy); kw: `search.decode`'s other keywords (rng, or
    the options by name) -> SearchResult [B, N, ...], asynchronous."""
    return search.decode(
        model,
        variables,
        src,
        src_len,
        options,
        eos_id=tgt_vocab.eos_id,
        bos_id=tgt_vocab.bos_id,
        max_len=max_len,
        **kw,
    )


def predict(
    batches: Sequence[Batch], start: Callable[[Batch], search.SearchResult]
) -> Iterator[tuple[Batch, search.SearchResult]]:
    """(batch, its SearchResult as numpy arrays) for each of `batches`, in order; `start`
    dispatches a batch's decoding (asynchronously), IN_FLIGHT batches ahead of the one read,
    so that the device decodes while the host turns results into text."""
    pending = collections.deque()  # (batch, result) in flight
    for b in batches:
        pending.append((b, start(b)))
        if len(pending) > IN_FLIGHT:
            done, r = pending.popleft()
            yield done, jax.tree.map(np.asarray, r)
    while pending:
        done, r = pending.popleft()
        yield done, jax.tree.map(np.asarray, r)


def hypothesis_ids(r: search.SearchResult, row: int, k: int = 0) -> tuple[list[int], bool]:
    """(ids without EOS, finished) of hypothesis k of a batch row of a host SearchResult
    (tokens [B, N, T], lengths/finished [B, N]); unfinished: cut at max_len."""
    length, finished = int(r.lengths[row, k]), bool(r.finished[row, k])
    ids = r.tokens[row, k, :length].tolist()
    return (ids[:-1] if finished else ids), finished


def target_text(tokenizer, vocab, ids: Sequence[int], words: Sequence[str] | None = None) -> str:
    """Output text: the tokens of `ids` (or `words`, one per id: e.g. <unk>s replaced) but for
    PAD and BOS, detokenized (the form of `Data.references`)."""
    words = [vocab.tokens[i] for i in ids] if words is None else words
    special = {vocab.pad_id, vocab.bos_id}
    return tokenizer.detokenize([w for i, w in zip(ids, words, strict=True) if i not in special])


def source_rows(batches: Sequence[dict]) -> list[list[int]]:
    """Each sentence's ids then EOS, in order, from padded batches ({'src' [B, S], 'src_len'
    [B]}: e.g. `Data.eval_batches`)."""
    return [
        row[:n].tolist()
        for b in batches
        for row, n in zip(np.asarray(b["src"]), np.asarray(b["src_len"]), strict=True)
    ]


def greedy_texts(
    model,
    variables,
    sources: Sequence[Sequence[int]],
    *,
    tgt_vocab,
    tgt_tokenizer,
    src_pad_id: int,
    batch_size: int,
    padded_len: Callable[[int], int],
    max_len: int,
    batch_tokens: int = 0,
) -> list[str]:
    """The greedy translations (text) of source id rows (ids then EOS), in input order: what
    `Translator.translate` gives with the same batch_size (batch_tokens) and max_len ('' for a
    row of EOS alone). Training's validation; `source_rows` gives the rows of
    `Data.eval_batches`."""
    out = [""] * len(sources)
    lengths = [len(s) for s in sources]
    batches = plan(lengths, batch_size, padded_len, lambda _: max_len, batch_tokens)

    def start(b: Batch):
        src, src_len = b.source(sources, src_pad_id)  # [B, S], [B]
        return decode(model, variables, src, src_len, tgt_vocab=tgt_vocab, max_len=b.max_len)

    for b, r in predict(batches, start):
        for row, i in enumerate(b.idx):
            out[i] = target_text(tgt_tokenizer, tgt_vocab, hypothesis_ids(r, row)[0])
    return out
