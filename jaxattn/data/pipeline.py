"""The data pipeline: config -> text splits -> tokenizers and vocabularies -> grain batches.

`build(config.data)` is the one entry point; its steps are modules of their own: corpus (the
text of every split), processing (tokenizers, vocabularies), prepared (the training split's
token ids, tokenized once, read a batch's rows at a time), batching (ids, padding).
Validation and test text is held in memory and encoded per batch; training batches read
their rows' ids.

Batches are dicts of numpy arrays (B = rows, S/T = padded lengths):
  src int32[B, S]: source ids then EOS, padded with pad_id;  src_len int32[B] (EOS counted)
  tgt int32[B, T]: target ids then EOS (no BOS: the decoder prepends it);  tgt_len int32[B]
Masks are `arange(S) < src_len[:, None]`.

Shuffling: every epoch is a numpy permutation seeded by (seed, epoch), looked up per batch
inside a grain map over batch indices; grain's own element-wise shuffle and batch cost about
10 us a pair, most of the budget. The iterator's state is the next batch index, so a restored
iterator continues exactly.

Multi-host training: `batch_size` is per shard (host). Each step draws one global batch of
batch_size * shard_count pairs from the shuffled stream; shard i gets rows [i*B, (i+1)*B).
Every shard pads to the same S and T (taken from the whole global batch) and tokenizes only
its own rows.

Token batches (`batch_tokens` > 0, train.batch_tokens): each global batch holds as many pairs
as fit rows x T <= batch_tokens padded target positions, its rows rounded up (with empty
rows, length 0, which the loss mask ignores) to one of a few multiples of `row_multiple` (the
devices, times gradient accumulation), so that the jitted step compiles few shapes; shard i
gets the i-th equal share of the rows. See `_TokenBatches`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Sequence

import grain
import ml_collections
import numpy as np

from jaxattn.data.batching import PadLength, encode, end, pad, token_batches
from jaxattn.data.corpus import load_texts, resolve
from jaxattn.data.prepared import TokenIds, count_dtype, text_processing, train_ids
from jaxattn.data.processing import TextProcessing, save_text_processing
from jaxattn.data.text import Tokenizer
from jaxattn.data.vocab import Vocab
from jaxattn.errors import DataError
from jaxattn.rundir.files import write_json
from jaxattn.rundir.layout import DATA_STATS_FILE, SRC_VOCAB_FILE, TGT_VOCAB_FILE

log = logging.getLogger(__name__)


def build(
    data_cfg: ml_collections.ConfigDict, *, vocab_dir: str | None = None, seed: int = 0
) -> Data:
    """Reads the configured corpus and returns its `Data`.

    Vocabularies (and SentencePiece models) come from `vocab_dir` when it holds them (see
    `Data.save_vocabs`), else from the training split. `seed` is the default shuffling seed
    of `Data.train_iterator`; the split assignment and synthetic data use data_cfg.split_seed.
    """
    resolved = resolve(data_cfg)
    if vocab_dir and (
        os.path.exists(os.path.join(vocab_dir, SRC_VOCAB_FILE))
        != os.path.exists(os.path.join(vocab_dir, TGT_VOCAB_FILE))
    ):
        raise FileNotFoundError(
            f"{vocab_dir} holds only one of {SRC_VOCAB_FILE}, "
            f"{TGT_VOCAB_FILE}; both or neither are needed."
        )
    texts, read_stats, corpus = load_texts(data_cfg, resolved["max_length"])
    tp = text_processing(data_cfg, resolved, texts["train"], corpus, vocab_dir)
    ids = train_ids(data_cfg, resolved, texts["train"], tp, corpus)
    # The tutorial's filter counted words, in every split: its tokens (e.g. subword pieces, more
    # than the words) are not limited again. Other corpora: training pairs, in tokens.
    token_limit = 0 if data_cfg.name == "tutorial" and data_cfg.filter else resolved["max_length"]
    return Data(
        data_cfg,
        texts,
        src_tokenizer=tp.src_tokenizer,
        tgt_tokenizer=tp.tgt_tokenizer,
        src_vocab=tp.src_vocab,
        tgt_vocab=tp.tgt_vocab,
        train_ids=ids,
        read_stats=read_stats,
        max_length=token_limit,
        seed=seed,
    )


def permutation(seed: list[int], n: int) -> np.ndarray:
    """`np.random.default_rng(seed).permutation(n)`, the same order, as int32 when n < 2**31
    (half the memory of the int64 one, per training pair)."""
    perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    np.random.default_rng(seed).shuffle(perm)
    return perm


def _sort_key(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[N] keys ordering pairs by `first`, then `second` (non-negative ints): int32 when
    they fit, else int64."""
    top = (int(first.max(initial=0)) + 1) * (int(second.max(initial=0)) + 1)
    dtype = np.int32 if top < 2**31 else np.int64
    return first.astype(dtype) * dtype(int(second.max(initial=0)) + 1) + second


class _Rows:
    """The kept training pairs' indices into the split, k -> the k-th index not `dropped`,
    without an [N] array: `dropped` (sorted, int64) are the few pairs too long to train on.
    rows[k] for an int array k; len(rows) = the kept pairs."""

    def __init__(self, n: int, dropped: np.ndarray):
        self.n, self.dropped = n, np.asarray(dropped, np.int64)
        self._gaps = self.dropped - np.arange(len(self.dropped))  # kept pairs before each

    def __len__(self) -> int:
        return self.n - len(self.dropped)

    def __getitem__(self, k):
        k = np.asarray(k, np.int64)
        return k + np.searchsorted(self._gaps, k, side="right")


class _TrainBatches:
    """Global batch index j -> this shard's batch; a grain map over MapDataset.range.

    The stream of training pairs is epoch after epoch, each a permutation of the N pairs seeded
    by (seed, epoch); global batch j is stream[j*G:(j+1)*G]. With bucketing (K = bucket_pool
    > 1), pool p = stream[p*K*G:(p+1)*K*G] is sorted by length, cut into K batches, and the
    batches are shuffled (seeded by (seed, p)); global batch j is batch j % K of pool j // K.
    A pure function of j, so grain's iterator state (the next j) resumes it exactly.
    """

    def __init__(
        self, data: Data, seed: int, batch_size: int, shard_index: int, shard_count: int, pool: int
    ):
        self.data, self.seed, self.pool = data, seed, pool
        self.batch_size, self.start = batch_size, shard_index * batch_size
        self.global_batch = batch_size * shard_count
        self._cache: dict = {}  # the last epoch permutation and pool, for speed only

    def __getstate__(self):
        return {**self.__dict__, "_cache": {}}

    def _cached(self, key: tuple, make):
        """make(), kept under `key` as the one entry of its kind (key[0]): an epoch's
        permutation or plan is 4 bytes a training pair."""
        if key not in self._cache:
            for k in [k for k in self._cache if k[0] == key[0]]:
                del self._cache[k]
            self._cache[key] = make()
        return self._cache[key]

    def _stream(self, start: int, stop: int) -> np.ndarray:
        """Training pair indices (0..N-1) at stream positions [start, stop)."""
        n = len(self.data._train_rows)
        parts = []
        for epoch in range(start // n, (stop - 1) // n + 1):
            perm = self._cached(
                ("epoch", epoch),
                lambda e=epoch: permutation([self.seed, e], n),
            )
            parts.append(perm[max(start - epoch * n, 0) : min(stop - epoch * n, n)])
        return np.concatenate(parts)

    def _pool(self, p: int) -> np.ndarray:
        """int[K, G]: pool p sorted by length, cut into K global batches, shuffled."""
        size = self.pool * self.global_batch
        idx = self._stream(p * size, (p + 1) * size)
        counts = self.data._train_counts[idx]  # [K * G, 2]
        order = np.argsort(_sort_key(counts[:, 0], counts[:, 1]), kind="stable")
        batches = idx[order].reshape(self.pool, -1)
        return batches[np.random.default_rng([self.seed, p]).permutation(self.pool)]

    def global_batch_pairs(self, j: int) -> np.ndarray:
        """int[G]: the training pairs of global batch j."""
        if self.pool > 1:
            p, k = divmod(j, self.pool)
            return self._cached(("pool", p), lambda: self._pool(p))[k]
        return self._stream(j * self.global_batch, (j + 1) * self.global_batch)

    def __call__(self, j: int) -> dict[str, np.ndarray]:
        d = self.data
        pairs = self.global_batch_pairs(j)
        longest = d._train_counts[pairs].max(0).astype(int) + 1  # src, tgt positions, EOS
        mine = d._train_rows[pairs[self.start : self.start + self.batch_size]]
        return d._batch(
            "train", mine.tolist(), d._pad_length(int(longest[0])), d._pad_length(int(longest[1]))
        )


class _TokenBatches:
    """Global batch index j -> this shard's token batch; a grain map over MapDataset.range.

    Epoch e is the permutation of the N pairs seeded by (seed, e), cut into pools of `pool`
    pairs; each pool is sorted by padded (target, source) width (ties in permutation order)
    and cut by `batching.token_batches`, and the epoch's batches are shuffled, seeded by
    (seed, e). Every pair is in one batch an epoch. Global batch j is batch j - first(e) of the
    epoch e that holds it (from the epochs' batch counts): a pure function of j, so grain's
    iterator state (the next j) resumes it exactly. With one pool an epoch (the default) the
    cuts, hence the batch count and the shapes, are the same every epoch: only which pairs of
    equal widths share a batch changes.
    """

    def __init__(
        self,
        data: Data,
        seed: int,
        budget: int,
        multiple: int,
        shard_index: int,
        shard_count: int,
        pool: int,
    ):
        self.data, self.seed, self.budget = data, seed, budget
        self.multiple = math.lcm(multiple, shard_count)  # every shard gets rows / shard_count
        self.shard_index, self.shard_count = shard_index, shard_count
        n = len(data._train_rows)
        self.pool = min(pool, n) if pool > 0 else n
        self._counts: list[int] = []  # batches in epochs 0, 1, ...
        self._cache: dict = {}  # the last epoch's plan, for speed only

    __getstate__ = _TrainBatches.__getstate__
    _cached = _TrainBatches._cached

    def plan(self, epoch: int) -> list[tuple[np.ndarray, int]]:
        """Epoch `epoch`'s global batches, in training order: (pairs int[n], rows)."""

        def make():
            n = len(self.data._train_rows)
            perm = permutation([self.seed, epoch], n)
            batches = []
            for start in range(0, n, self.pool):
                idx = perm[start : start + self.pool]
                w = self.data._train_widths(idx)  # [pool, 2] padded (src, tgt) widths
                order = np.argsort(_sort_key(w[:, 1], w[:, 0]), kind="stable")
                idx, w = idx[order], w[order, 1]
                del order
                for a, b, rows in token_batches(w, self.budget, self.multiple):
                    batches.append((idx[a:b], rows))
            order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(batches))
            return [batches[i] for i in order]

        return self._cached(("plan", epoch), make)

    def epoch_batches(self, epoch: int) -> int:
        """The number of global batches in `epoch` (the same in every epoch with one pool)."""
        if self.pool == len(self.data._train_rows):
            epoch = 0
        while len(self._counts) <= epoch:
            self._counts.append(len(self.plan(len(self._counts))))
        return self._counts[epoch]

    def batches(self, num_epochs: int) -> int:
        """The global batches in the first `num_epochs` epochs."""
        return sum(self.epoch_batches(e) for e in range(num_epochs))

    def global_batch(self, j: int) -> tuple[np.ndarray, int]:
        """(pairs int[n], rows) of global batch j."""
        epoch = 0
        while j >= self.epoch_batches(epoch):
            j -= self.epoch_batches(epoch)
            epoch += 1
        return self.plan(epoch)[j]

    def __call__(self, j: int) -> dict[str, np.ndarray]:
        d = self.data
        pairs, rows = self.global_batch(j)
        share = rows // self.shard_count
        mine = d._train_rows[pairs[self.shard_index * share : (self.shard_index + 1) * share]]
        src_width, tgt_width = d._train_widths(pairs).max(0)
        batch = d._batch("train", mine.tolist(), int(src_width), int(tgt_width))
        return d._with_empty_rows(batch, share)


def read_data_stats(directory: str) -> dict:
    """DATA_STATS_FILE of a run ({} for runs from before it, or if unreadable):
    {"train_pairs", "max_source_len", "max_target_len"}."""
    try:
        with open(os.path.join(directory, DATA_STATS_FILE), encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return {}
    return (
        {
            k: v
            for k, v in stats.items()
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0
        }
        if isinstance(stats, dict)
        else {}
    )


class Data:
    """A corpus ready for training and evaluation; made by `build`."""

    def __init__(
        self,
        config,
        texts: dict[str, tuple[list[str], list[str]]],
        *,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        src_vocab: Vocab,
        tgt_vocab: Vocab,
        train_ids: TokenIds,
        read_stats: dict,
        max_length: int,
        seed: int = 0,
    ):
        self.config, self.seed = config, seed
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self._texts = texts  # {split: (sources, targets)}; 'train' read on demand only
        self._train_ids = train_ids
        train_counts = train_ids.counts()  # [N, 2] tokens (no EOS) of every pair, uint8/16
        self._pad_length = PadLength.from_config(config)
        # Training pairs: those that fit max_length and pad_to positions (EOS included).
        limit = min(x for x in (max_length, config.pad_to, 2**31) if x > 0)
        # Per training pair 2 bytes (corpora of tens of millions of pairs): the token counts,
        # uint8 (uint16 for sentences of 255+ tokens); the widths, the kept pairs' indices and
        # the sort keys are computed from them where used.
        fits = (train_counts < limit).all(1)
        self._train_rows = _Rows(len(fits), np.flatnonzero(~fits))  # kept k -> split index
        # [N, 2] token counts (no EOS) of the kept pairs
        self._train_counts = train_counts if fits.all() else train_counts[fits]
        del train_counts, fits
        # counts -> the widths batches pad them to (EOS included): a table up to the longest
        widths = self._padded(np.arange(1, int(self._train_counts.max(initial=0)) + 2))
        self._width_table = widths.astype(count_dtype(int(widths.max())))  # [count] -> width
        if not len(self._train_rows):
            raise DataError(
                f"No training pair has fewer than {limit} tokens a side; raise "
                "config.data.max_length / pad_to."
            )
        self.stats = dict(
            dataset=config.name,
            read=read_stats,
            examples={k: len(v[0]) for k, v in texts.items()},
            train_pairs=len(self._train_rows),
            train_too_long=len(train_ids) - len(self._train_rows),
            src_vocab=len(src_vocab),
            tgt_vocab=len(tgt_vocab),
            # the longest training sentences, in tokens without EOS (limits for new input)
            max_source_len=int(self._train_counts[:, 0].max()),
            max_target_len=int(self._train_counts[:, 1].max()),
        )
        if self.stats["train_too_long"]:
            log.info(
                "Left out %d of %d training pairs with %d or more tokens a side.",
                self.stats["train_too_long"],
                len(train_ids),
                limit,
            )
        # Evaluation sentences are cut to what training saw (so that one long line cannot
        # blow up an evaluation batch): the training limit, else twice the longest pair.
        self.eval_cut = limit if limit < 2**31 else 2 * (int(self._train_counts.max()) + 1)
        self._eval_checked: set[str] = set()

    # ------------------------------------------------------------------ information
    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._texts)

    def _split(self, split: str) -> tuple[list[str], list[str]]:
        if split not in self._texts:
            raise DataError(
                f"No {split!r} split in this dataset; it has {list(self._texts)}. "
                "(split_fractions=(1, 0, 0) puts every pair in train.)"
            )
        return self._texts[split]

    def num_examples(self, split: str) -> int:
        """Pairs in a split; for 'train', those the training iterator draws from."""
        return len(self._train_rows) if split == "train" else len(self._split(split)[0])

    def _token_batches(
        self,
        batch_tokens: int,
        row_multiple: int,
        shard_count: int = 1,
        seed: int | None = None,
        shard_index: int = 0,
    ) -> _TokenBatches:
        """The token-batch plan that `train_dataset` follows, as shard `shard_index` reads it."""
        self.check_token_budget(batch_tokens, math.lcm(row_multiple, shard_count))
        seed = (self.seed if seed is None else seed) % 2**64
        pool = self.config.bucket_pool
        if pool > 1:  # pools of about bucket_pool batches: pairs a batch holds on average
            tgt = np.bincount(self._train_counts[:, 1])  # pairs per target count
            mean = (tgt * self._width_table[: len(tgt)]).sum() / max(tgt.sum(), 1)
            pool *= max(batch_tokens // int(mean), 1)
        return _TokenBatches(self, seed, batch_tokens, row_multiple, shard_index, shard_count, pool)

    def steps_per_epoch(
        self,
        batch_size: int,
        shard_count: int = 1,
        *,
        batch_tokens: int = 0,
        row_multiple: int = 1,
        seed: int | None = None,
    ) -> int:
        """Global batches an epoch: of batch_size x shard_count pairs, or with batch_tokens
        > 0 those of the first epoch's token batches (every epoch's, with one pool)."""
        if batch_tokens:
            plan = self._token_batches(batch_tokens, row_multiple, shard_count, seed)
            return plan.epoch_batches(0)
        return len(self._train_rows) // (batch_size * shard_count)

    def largest_batch_shape(
        self,
        batch_size: int,
        *,
        batch_tokens: int = 0,
        row_multiple: int = 1,
        seed: int | None = None,
    ) -> tuple[int, int, int]:
        """(rows, S, T): the widest training batch of `batch_size` rows the iterator can
        draw (the longest source and target, EOS included, padded as training pads). With
        batch_tokens > 0: S and T the widest widths of a token batch, rows x T the most
        padded target positions of one (both from the first epoch's plan)."""
        if batch_tokens:
            plan = self._token_batches(batch_tokens, row_multiple, seed=seed).plan(0)
            widths = np.array([self._train_widths(p).max(0) for p, _ in plan])  # [batches, 2]
            positions = max(rows * int(w[1]) for (_, rows), w in zip(plan, widths, strict=True))
            src, tgt = (int(x) for x in widths.max(0))
            return positions // tgt, src, tgt
        longest = self._train_counts.max(0) + 1  # int[2]
        return batch_size, self._pad_length(int(longest[0])), self._pad_length(int(longest[1]))

    def check_token_budget(self, batch_tokens: int, row_multiple: int) -> None:
        """DataError unless `row_multiple` rows of the widest training target fit in
        `batch_tokens` padded target positions (train.batch_tokens)."""
        longest = int(self._train_counts[:, 1].max()) + 1
        width = int(self._width_table[longest - 1])
        if row_multiple * width <= batch_tokens:
            return
        raise DataError(
            f"The longest training target has {longest} positions (EOS included), padded to "
            f"{width}; a batch holds a multiple of {row_multiple} row(s) (the devices), so it "
            f"needs {row_multiple * width} target positions, more than "
            f"train.batch_tokens={batch_tokens}: raise --config.train.batch_tokens to at "
            f"least {row_multiple * width}, or drop long pairs with --config.data.max_length."
        )

    def check_batch_fits(
        self,
        batch_size: int,
        shard_count: int = 1,
        num_epochs: int | None = None,
        *,
        batch_tokens: int = 0,
        row_multiple: int = 1,
    ) -> None:
        """DataError (a ValueError) unless one global batch, times bucket_pool, fits in the
        training pairs (times `num_epochs`, when the iterator is finite); with batch_tokens >
        0, unless the widest pair fits the budget (`check_token_budget`)."""
        n, pool = len(self._train_rows), max(self.config.bucket_pool, 1)
        if batch_tokens:  # every pair is in a batch of every epoch
            return self.check_token_budget(batch_tokens, math.lcm(row_multiple, shard_count))
        if batch_size >= 1 and batch_size * shard_count * pool <= n * (num_epochs or 1):
            return
        raise DataError(
            f"A global batch of {batch_size} x {shard_count} shard(s)"
            + (f" x bucket_pool {pool}" if pool > 1 else "")
            + f" needs more than the {n} training pairs"
            + (f" x {num_epochs} epochs" if num_epochs else "")
            + (
                f" ({self.stats['train_too_long']} more were left out as too long)"
                if self.stats["train_too_long"]
                else ""
            )
            + ": lower --config.train.batch_size"
            + (" or --config.data.bucket_pool" if pool > 1 else "")
            + ", or use a larger corpus."
        )

    def sources(self, split: str) -> list[str]:
        """The split's source sentences as stored (raw text)."""
        return list(self._split(split)[0])

    def references(self, split: str) -> list[str]:
        """Target sentences as a perfect model's detokenized output reads: normalized or
        lowercased as configured, whitespace collapsed; what sacreBLEU should compare with."""
        return [self.tgt_tokenizer.preprocess(t) for t in self._split(split)[1]]

    # ------------------------------------------------------------------ text <-> ids
    def encode_source(self, text: str) -> list[int]:
        """A new source sentence's ids, as training encodes it (normalization, EOS; cut to
        pad_to if set)."""
        return encode(self.src_tokenizer, self.src_vocab, text, self.config.pad_to)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Target tokens -> text (the form of `references`)."""
        return self.tgt_tokenizer.detokenize(tokens)

    def decode_target(self, ids) -> str:
        """Target ids (up to EOS) -> text."""
        return self.detokenize(self.tgt_vocab.decode(ids))

    def save_vocabs(self, directory: str) -> None:
        """Writes the vocabularies (and SentencePiece models) that `build(vocab_dir=...)` and
        evaluation load instead of reading the corpus again, and DATA_STATS_FILE (the number
        of training pairs and the longest training sentences, in tokens without EOS)."""
        tp = TextProcessing(
            self.src_tokenizer, self.tgt_tokenizer, self.src_vocab, self.tgt_vocab, 0
        )
        save_text_processing(self.config, tp, directory)
        write_json(
            os.path.join(directory, DATA_STATS_FILE),
            {k: self.stats[k] for k in ("train_pairs", "max_source_len", "max_target_len")},
        )

    # ------------------------------------------------------------------ batches
    def _train_widths(self, pairs=slice(None)) -> np.ndarray:
        """[n, 2] the padded (source, target) widths (EOS included) of kept training `pairs`."""
        return self._width_table[self._train_counts[pairs]]

    def _padded(self, lengths: np.ndarray) -> np.ndarray:
        """Positions (EOS included) -> the widths batches pad them to: an int32 array of the
        same shape (a table of every length up to the longest, no per-pair temporary)."""
        lengths = np.asarray(lengths)
        table = [self._pad_length(n) for n in range(int(lengths.max(initial=0)) + 1)]
        return np.array(table, np.int32)[lengths]

    def _with_empty_rows(self, batch: dict, rows: int) -> dict[str, np.ndarray]:
        """`batch` with empty rows (pad ids, length 0) after its own, to `rows` rows."""
        fill = dict(src=self.src_vocab.pad_id, tgt=self.tgt_vocab.pad_id, src_len=0, tgt_len=0)
        extra = rows - len(batch["src_len"])
        return {
            k: np.concatenate([v, np.full((extra,) + v.shape[1:], fill[k], v.dtype)])
            for k, v in batch.items()
        }

    def _batch(
        self, split: str, rows: list[int], src_padded_len: int = 0, tgt_padded_len: int = 0
    ) -> dict[str, np.ndarray]:
        """Rows of a split -> padded batch; widths 0 = the rows' own longest (padded)."""
        src_text, tgt_text = self._texts[split]
        try:
            if split == "train":  # the prepared ids, cut as `encode` cuts text
                cut = self.config.pad_to
                src, tgt = (
                    [end(ids, vocab.eos_id, cut) for ids in self._train_ids.rows(side, rows)]
                    for side, vocab in enumerate((self.src_vocab, self.tgt_vocab))
                )
            else:
                cut = self.eval_cut
                src = [encode(self.src_tokenizer, self.src_vocab, src_text[i], cut) for i in rows]
                tgt = [encode(self.tgt_tokenizer, self.tgt_vocab, tgt_text[i], cut) for i in rows]
        except ValueError as e:  # unknown word with tutorial_ids
            raise DataError(
                f"In the {split!r} split: {e} Or train on every pair "
                "(split_fractions=(1, 0, 0)), as the tutorial does."
            ) from None
        s, sl = pad(
            src, src_padded_len or self._pad_length(max(map(len, src))), self.src_vocab.pad_id
        )  # [B, S], [B]
        t, tl = pad(
            tgt, tgt_padded_len or self._pad_length(max(map(len, tgt))), self.tgt_vocab.pad_id
        )  # [B, T], [B]
        return {"src": s, "src_len": sl, "tgt": t, "tgt_len": tl}

    def example_batch(self, rows: int = 2) -> dict[str, np.ndarray]:
        """The first `rows` kept training pairs as a batch: what a model is initialized from
        (its shapes), without reading more of a training split of any size."""
        return self._batch(
            "train", self._train_rows[np.arange(min(rows, len(self._train_rows)))].tolist()
        )

    def eval_batches(
        self, split: str, batch_size: int, batch_tokens: int = 0
    ) -> list[dict[str, np.ndarray]]:
        """The split in order, in batches of `batch_size` rows (the last one may be smaller),
        each padded to its own longest row (rounded like training batches). batch_tokens > 0
        (eval.batch_tokens, for the validation loss): NOT in order but sorted by padded
        (target, source) width, in batches of at most batch_tokens padded target positions,
        rows a power of two or the width's capacity (`batching.token_batches`; empty rows
        after the sentences; a sentence wider than the budget alone)."""
        n = len(self._split(split)[0])
        if split != "train" and split not in self._eval_checked:
            self._eval_checked.add(split)
            sides = zip(self._texts[split], (self.src_tokenizer, self.tgt_tokenizer), strict=True)
            long = sum(len(tok.tokenize(t)) >= self.eval_cut for side, tok in sides for t in side)
            if long:
                log.warning(
                    "%s: %d sentence(s) of %d or more tokens cut to %d positions for "
                    "evaluation (the training limit; data.max_length sets it).",
                    split,
                    long,
                    self.eval_cut,
                    self.eval_cut,
                )
        if batch_tokens:
            whole = self._batch(split, list(range(n)))  # src [n, S], tgt [n, T]
            widths = self._padded(np.stack([whole["src_len"], whole["tgt_len"]], 1))  # [n, 2]
            order = np.lexsort((widths[:, 0], widths[:, 1]))
            out = []
            for a, b, rows in token_batches(widths[order, 1], batch_tokens, 1, wide_alone=True):
                idx = order[a:b]
                src_width, tgt_width = widths[idx].max(0)
                batch = {
                    "src": whole["src"][idx, :src_width],
                    "src_len": whole["src_len"][idx],
                    "tgt": whole["tgt"][idx, :tgt_width],
                    "tgt_len": whole["tgt_len"][idx],
                }
                out.append(self._with_empty_rows(batch, rows))
            return out
        return [
            self._batch(split, list(range(i, min(i + batch_size, n))))
            for i in range(0, n, batch_size)
        ]

    def train_dataset(
        self,
        batch_size: int,
        *,
        seed: int | None = None,
        shard_index: int = 0,
        shard_count: int = 1,
        num_epochs: int | None = None,
        batch_tokens: int = 0,
        row_multiple: int = 1,
    ) -> grain.IterDataset:
        """The grain pipeline behind `train_iterator` (for composing, e.g. `mp_prefetch`)."""
        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard_index={shard_index} is not in [0, {shard_count}).")
        if num_epochs is not None and num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None (forever), got {num_epochs}.")
        self.check_batch_fits(
            batch_size,
            shard_count,
            num_epochs,
            batch_tokens=batch_tokens,
            row_multiple=row_multiple,
        )
        if batch_tokens:
            batches = self._token_batches(
                batch_tokens, row_multiple, shard_count, seed, shard_index
            )
            total = batches.batches(num_epochs) if num_epochs else sys.maxsize
            ds = grain.MapDataset.range(total).map(batches)
        else:
            global_batch = batch_size * shard_count
            n, pool = len(self._train_rows), max(self.config.bucket_pool, 1)
            seed = (self.seed if seed is None else seed) % 2**64  # numpy seeds are >= 0
            total = pool * (n * num_epochs // (pool * global_batch)) if num_epochs else sys.maxsize
            ds = grain.MapDataset.range(total).map(
                _TrainBatches(self, seed, batch_size, shard_index, shard_count, pool)
            )
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        if self.config.prefetch:
            ds = grain.experimental.ThreadPrefetchIterDataset(
                ds, prefetch_buffer_size=self.config.prefetch
            )
        return ds

    def train_iterator(
        self,
        batch_size: int,
        *,
        seed: int | None = None,
        shard_index: int = 0,
        shard_count: int = 1,
        num_epochs: int | None = None,
        batch_tokens: int = 0,
        row_multiple: int = 1,
    ):
        """Shuffled training batches of `batch_size` rows for shard `shard_index` (see the
        module docstring), reshuffled every epoch, forever unless `num_epochs` is given. With
        `batch_tokens` > 0: token batches (`batch_size` unused) of at most that many padded
        target positions, rows a multiple of `row_multiple` (the devices the batch is split
        over, times gradient accumulation), each shard an equal share of them.

        A grain iterator: `get_state()`/`set_state()` (or grain.checkpoint.CheckpointSave in
        Orbax) resume it exactly. `seed` defaults to build()'s.
        """
        return iter(
            self.train_dataset(
                batch_size,
                seed=seed,
                shard_index=shard_index,
                shard_count=shard_count,
                num_epochs=num_epochs,
                batch_tokens=batch_tokens,
                row_multiple=row_multiple,
            )
        )
