"""Inference from a training run: restore a checkpoint, translate text, score it, show attention.

    tr = Translator.from_workdir("runs/base", checkpoint="best")   # 'latest' | 'best' | step
    [t] = tr.translate(["Je suis content."], beam_size=5)
    t.text, t.score, t.weights      # weights [output tokens (+ EOS), input tokens + EOS]
    inputs, outputs, weights = tr.attention("il est grand .")  # -> plots.show_attention
    tr.evaluate(sources, references)  # {'bleu', 'chrf', 'bleu_signature', ...}

Everything comes from the workdir: config.json, the vocabularies (and SentencePiece models) and
only the parameters of the checkpoint's train state (no optimizer state, no corpus). Input text
goes through the run's own normalization and tokenizer; unknown words map to UNK (the tutorial
id layout has no UNK: they are dropped, with a warning). Sentences are sorted by length and
decoded in batches whose shapes come from a few buckets (rows: powers of two up to
config.eval.batch_size; source length: padded as in training), so compilations are few.

User mistakes (missing workdir or checkpoint, unreadable input) raise `InferenceError` with a
message meant for the command line; the scripts print it and exit with `exit_code`. Lengths:
`max_len` is decoding steps, `padded_len` an int source width S (see jaxattn.config).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxattn import config as config_lib
from jaxattn import data as data_lib
from jaxattn import metrics as metrics_lib
from jaxattn import search
from jaxattn.checkpoints import (
    CONFIG_FILE,
    Checkpointer,
    CheckpointError,
    check_vocab_files,
    checkpoint_dir,
    resolve_step,
)
from jaxattn.data.batching import PadLength, encode_tokens, pad
from jaxattn.data.readers import read_parallel
from jaxattn.data.text import JOINER
from jaxattn.errors import ConfigError, JaxattnError, WorkdirError
from jaxattn.models import build_model

log = logging.getLogger(__name__)

_IN_FLIGHT = 4  # batches dispatched ahead of the one being collected
EOS_LABEL = "<EOS>"  # the tutorial's label for the end of sentence in attention plots


class InferenceError(JaxattnError):
    """A user mistake (bad workdir, checkpoint, input file or option): a clear message."""

    exit_code = 1


class UsageError(InferenceError, ValueError):
    """Inconsistent command-line options, or a bad argument of the Python API."""

    exit_code = 2


# --------------------------------------------------------------------------- translation
@dataclasses.dataclass
class Translation:
    """One sentence's translation.

    weights [len(tokens) (+1 if finished: the EOS row), len(input_tokens) + 1 (EOS)].
    """

    text: str  # detokenized output ('' for an empty input)
    tokens: list[str]  # output tokens, without EOS
    input_tokens: list[str]  # the source tokens the model read (without EOS)
    weights: np.ndarray
    score: float  # log-probability (over the length penalty, for beam search with alpha > 0)
    finished: bool = True  # False: cut at max_len before EOS
    unknown: list[str] = dataclasses.field(default_factory=list)  # UNK (or dropped) words
    truncated: bool = False  # input cut to the model's maximum source length


@dataclasses.dataclass
class _Input:
    tokens: list[str]
    ids: list[int]  # then EOS
    unknown: list[str]
    truncated: bool


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class Translator:
    """A trained model with its config, tokenizers and vocabularies; see the module docstring."""

    def __init__(self, config: ml_collections.ConfigDict, params, text, *, step: int | None = None,
                 workdir: str | None = None):
        self.config, self.step, self.workdir = config, step, workdir
        self.src_tokenizer, self.tgt_tokenizer = text.src_tokenizer, text.tgt_tokenizer
        self.src_vocab, self.tgt_vocab = text.src_vocab, text.tgt_vocab
        self.max_length = text.max_length  # the corpus filter's limit (read_tsv filters by it)
        self.model = build_model(config.model, len(self.src_vocab), len(self.tgt_vocab),
                                 bos_id=self.tgt_vocab.bos_id)
        self.variables = {"params": jax.device_put(params)}
        # location attention scores a fixed number of source positions (EOS included); 0 = any
        self.max_src_positions = (config.model.attention_max_length
                                  if config.model.attention == "location" else 0)
        self._pad_length = PadLength.from_config(config.data)  # source widths as in training

    @classmethod
    def from_workdir(cls, workdir: str, checkpoint: str | int = "latest") -> Translator:
        """Restores a run's checkpoint ('latest', 'best' or a step) with its own config and
        vocabularies."""
        if not isinstance(workdir, (str, os.PathLike)):
            raise UsageError(f"workdir must be a directory path, not {workdir!r}.")
        workdir = os.fspath(workdir)
        try:
            config = config_lib.load_config(workdir)
        except (ConfigError, WorkdirError) as e:
            raise InferenceError(str(e)) from None
        try:
            text = data_lib.load_text_processing(config.data, workdir)
        except (FileNotFoundError, ValueError) as e:
            raise InferenceError(f"Cannot load the vocabularies of {workdir}: {e}") from None
        model = build_model(config.model, len(text.src_vocab), len(text.tgt_vocab),
                            bos_id=text.tgt_vocab.bos_id)
        example = jnp.zeros((1, 2), jnp.int32)
        abstract = jax.eval_shape(
            lambda: model.init(jax.random.PRNGKey(0), example, jnp.array([2]), example))["params"]
        step = checkpoint
        try:
            with Checkpointer(workdir, read_only=True) as ckpts:
                step = resolve_step(ckpts, checkpoint)
                params = ckpts.restore_params(step, abstract)
                check_vocab_files(workdir, ckpts, step)
        except CheckpointError as e:
            raise InferenceError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - any failure: this checkpoint is unusable
            why = (str(e).strip().splitlines() or [""])[0][:300]
            raise InferenceError(
                f"Cannot restore the parameters of step {step} in {checkpoint_dir(workdir)} "
                f"({type(e).__name__}: {why}). Is it complete, and from this run's "
                f"{CONFIG_FILE}? Try another --checkpoint.") from None
        return cls(config, params, text, step=step, workdir=workdir)

    @property
    def num_params(self) -> int:
        return sum(x.size for x in jax.tree.leaves(self.variables))

    # ------------------------------------------------------------------ text -> ids
    def _prepare(self, sentence: str) -> _Input:
        """A sentence's tokens and ids, encoded as training encodes (jaxattn.data.batching);
        unknown words of the tutorial id layout (no UNK) are dropped."""
        tokens = self.src_tokenizer.tokenize(sentence)
        vocab = self.src_vocab
        unknown = [t for t in tokens if t not in vocab]
        if unknown and vocab.unk_id is None:  # tutorial ids: no UNK, drop the word
            tokens = [t for t in tokens if t in vocab]
        ids = encode_tokens(vocab, tokens, self.max_src_positions)
        return _Input(tokens[: len(ids) - 1], ids, unknown, len(ids) <= len(tokens))

    def _padded_len(self, n: int) -> int:
        """The padded source width S of a batch whose longest row has n positions: as training
        pads (models trained without masks see the padding they were trained on)."""
        padded_len = self._pad_length(n)
        return min(padded_len, self.max_src_positions) if self.max_src_positions else padded_len

    def _decode_len(self, padded_len: int, max_len: int | None) -> int:
        """Decoding steps: max_len, else config.eval.max_decode_len, raised for long input."""
        if max_len:
            return max_len
        return _round_up(max(self.config.eval.max_decode_len, 2 * padded_len + 10), 8)

    def _plan(self, inputs: list[_Input], batch_size: int | None, max_len: int | None):
        """Batches [(indices, rows, padded_len, max_len)] of the non-empty inputs, by length."""
        batch_size = batch_size or self.config.eval.batch_size
        todo = sorted((i for i, x in enumerate(inputs) if len(x.ids) > 1),
                      key=lambda i: len(inputs[i].ids))
        plan = []
        for start in range(0, len(todo), batch_size):
            idx = todo[start: start + batch_size]
            rows = min(batch_size, 1 << (len(idx) - 1).bit_length())
            padded_len = self._padded_len(len(inputs[idx[-1]].ids))
            plan.append((idx, rows, padded_len, self._decode_len(padded_len, max_len)))
        return plan

    def _search(self, inputs, idx, rows, padded_len, max_len, beam_size, alpha):
        """Starts decoding one batch (asynchronously); rows past len(idx) repeat the last."""
        src, src_len = pad([inputs[idx[min(r, len(idx) - 1)]].ids for r in range(rows)],
                           padded_len, self.src_vocab.pad_id)  # [B, S], [B]
        return search.decode(
            self.model, self.variables, src, src_len, eos_id=self.tgt_vocab.eos_id,
            max_len=max_len, method="greedy" if beam_size <= 1 else "beam",
            beam_size=max(beam_size, 1), alpha=alpha, bos_id=self.tgt_vocab.bos_id)

    def translate(self, sentences: Sequence[str], *, beam_size: int = 1,
                  alpha: float | None = None, max_len: int | None = None,
                  batch_size: int | None = None) -> list[Translation]:
        """Translates raw sentences (normalized and tokenized as in training).

        beam_size 1: greedy; alpha: length penalty (None: config.eval.length_penalty);
        max_len: decoding steps (None: config.eval.max_decode_len, more for long input).
        Sentences with no tokens give an empty translation without running the model.
        """
        check_options(sentences=sentences, beam_size=beam_size, alpha=alpha, max_len=max_len,
                      batch_size=batch_size)
        alpha = self.config.eval.length_penalty if alpha is None else alpha
        inputs = [self._prepare(s) for s in sentences]
        self._warn_inputs(sentences, inputs)
        out: list[Translation | None] = [None] * len(inputs)
        pending = collections.deque()  # batches in flight: decoded while the host reads others
        for p in self._plan(inputs, batch_size, max_len):
            pending.append((p[0], self._search(inputs, *p, beam_size, alpha)))
            if len(pending) > _IN_FLIGHT:
                self._collect(inputs, *pending.popleft(), out)
        while pending:
            self._collect(inputs, *pending.popleft(), out)
        for i, x in enumerate(inputs):
            if out[i] is None:  # nothing to translate
                out[i] = Translation("", [], x.tokens, np.zeros((0, 1), np.float32), 0.0,
                                     unknown=x.unknown, truncated=x.truncated)
        return out

    def _collect(self, inputs, idx, result: search.SearchResult, out) -> None:
        r = jax.tree.map(np.asarray, result.top())  # the best hypothesis: tokens [B, T], ...
        for row, i in enumerate(idx):
            out[i] = self._translation(inputs[i], r, row)

    def _translation(self, x: _Input, r: search.SearchResult, row: int) -> Translation:
        length = int(r.lengths[row])
        ids = r.tokens[row, :length].tolist()
        finished = bool(r.finished[row])
        words = [self.tgt_vocab.tokens[i] for i in (ids[:-1] if finished else ids)]
        text = self.tgt_tokenizer.detokenize(self.tgt_vocab.decode(ids))
        weights = r.weights[row, :length, : len(x.ids)]
        return Translation(text, words, x.tokens, weights, float(r.scores[row]), finished,
                           x.unknown, x.truncated)

    def _warn_inputs(self, sentences: Sequence[str], inputs: list[_Input]) -> None:
        void = sum(bool(s.strip()) and len(x.ids) == 1 for s, x in zip(sentences, inputs,
                                                                      strict=True))
        if void:
            log.warning("%d sentence(s) have no token the model knows (after normalization): "
                        "empty translations.", void)
        unknown = [w for x in inputs for w in x.unknown]
        if unknown:
            shown = ", ".join(repr(w) for w in dict.fromkeys(unknown).keys() if w)
            shown = shown if len(shown) < 300 else shown[:300] + "..."
            how = ("dropped: this run's vocabulary (tutorial_ids) has no UNK"
                   if self.src_vocab.unk_id is None else "read as <unk>")
            log.warning("%d unknown word(s) in %d sentence(s), %s: %s", len(unknown),
                        sum(bool(x.unknown) for x in inputs), how, shown)
        cut = sum(x.truncated for x in inputs)
        if cut:
            log.warning("%d sentence(s) cut to %d tokens: location attention scores at most "
                        "%d source positions (EOS included).", cut, self.max_src_positions - 1,
                        self.max_src_positions)

    def warmup(self, sentences: Sequence[str], *, beam_size: int = 1, alpha: float | None = None,
               max_len: int | None = None, batch_size: int | None = None) -> None:
        """Compiles every batch shape that `translate` will use on `sentences` (one batch each)."""
        alpha = self.config.eval.length_penalty if alpha is None else alpha
        inputs = [self._prepare(s) for s in sentences]
        seen = {}
        for idx, rows, padded_len, steps in self._plan(inputs, batch_size, max_len):
            seen.setdefault((rows, padded_len, steps), idx)
        for (rows, padded_len, steps), idx in seen.items():
            jax.block_until_ready(
                self._search(inputs, idx, rows, padded_len, steps, beam_size, alpha))

    # ------------------------------------------------------------------ notebooks
    def attention(self, sentence: str, **kwargs) -> tuple[list[str], list[str], np.ndarray]:
        """(input words + ['<EOS>'], output words (+ '<EOS>'), weights [out, in]): the
        tutorial's showAttention arguments (see plots.show_attention). kwargs: `translate`'s."""
        [t] = self.translate([sentence], **kwargs)
        if not t.input_tokens:
            raise InferenceError(f"Nothing to translate in {sentence!r}: no known words.")
        return *attention_labels(t), t.weights

    # ------------------------------------------------------------------ scores
    def evaluate(self, sources: Sequence[str], references: Sequence[str], *, beam_size: int = 1,
                 alpha: float | None = None, max_len: int | None = None,
                 batch_size: int | None = None, warmup: bool = True) -> dict:
        """Translates `sources` and scores them against `references` with sacreBLEU.

        References go through the target side's preprocessing (e.g. the tutorial's
        normalization), as in training's validation. warmup: compile first, so the timing
        counts decoding only. Returns {'bleu', 'chrf', 'bleu_signature', 'chrf_signature',
        'bleu_detail', 'sentences', 'seconds', 'sentences_per_sec', ..., 'hypotheses'}.
        """
        check_options(sources=sources, references=references)
        if len(sources) != len(references):
            raise InferenceError(f"{len(sources)} sources but {len(references)} references: "
                                 "they must align, one sentence a line.")
        if not sources:
            raise InferenceError("Nothing to evaluate: no sentence pairs.")
        alpha = self.config.eval.length_penalty if alpha is None else alpha
        kw = dict(beam_size=beam_size, alpha=alpha, max_len=max_len, batch_size=batch_size)
        if warmup:
            self.warmup(sources, **kw)
        t0 = time.perf_counter()
        out = self.translate(sources, **kw)
        seconds = time.perf_counter() - t0
        hyps = [t.text for t in out]
        refs = [self.tgt_tokenizer.preprocess(r) for r in references]
        result = metrics_lib.corpus_scores(hyps, refs)
        result.update(
            step=self.step, beam_size=beam_size, alpha=alpha, sentences=len(out),
            empty_inputs=sum(not t.input_tokens for t in out),
            with_unknown_words=sum(bool(t.unknown) for t in out),
            truncated_inputs=sum(t.truncated for t in out),
            unfinished=sum(not t.finished for t in out),
            seconds=seconds, sentences_per_sec=len(out) / max(seconds, 1e-9),
            includes_compilation=not warmup, hypotheses=hyps,
        )
        return result


def check_options(**kwargs) -> None:
    """UsageError (a ValueError) naming the first argument of a wrong type or range."""
    for name, v in kwargs.items():
        if name in ("sentences", "sources", "references"):
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not all(
                    isinstance(s, str) for s in v):
                raise UsageError(f"{name} must be a list of strings (one sentence each), not "
                                 f"{type(v).__name__}" + (" (wrap one sentence in a list)"
                                                          if isinstance(v, str) else "") + ".")
        elif name == "alpha":
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not np.isfinite(v)):
                raise UsageError(f"alpha must be a finite number or None, got {v!r}.")
        elif v is not None or name == "beam_size":
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise UsageError(f"{name} must be an integer >= 1, got {v!r}.")


def attention_labels(t: Translation) -> tuple[list[str], list[str]]:
    """Heatmap labels: (input tokens + ['<EOS>'], output tokens (+ '<EOS>' if finished)),
    without the word tokenizer's joiner marks."""
    def label(token):
        return token.replace(JOINER, "") or token

    return ([label(w) for w in t.input_tokens] + [EOS_LABEL],
            [label(w) for w in t.tokens] + ([EOS_LABEL] if t.finished else []))


def format_scores(result: dict) -> str:
    """sacreBLEU's lines: 'BLEU|<signature> = 24.55 ...' and 'chrF2|<signature> = 31.35'."""
    detail = result["bleu_detail"].split(" = ", 1)[-1]
    return (f"BLEU|{result['bleu_signature']} = {detail}\n"
            f"chrF2|{result['chrf_signature']} = {result['chrf']:.2f}")


# ------------------------------------------------------------------- evaluation input
def load_pairs(translator: Translator, *, split: str | None = None, src: str | None = None,
               ref: str | None = None, tsv: str | None = None,
               data_path: str = "") -> tuple[list[str], list[str], dict | None]:
    """(sources, references, TSV reading counts or None) to evaluate a run on: line-aligned
    `src` + `ref` files, a `tsv` file (read as the run's corpus was: columns, direction,
    filter), or a `split` of the run's corpus (default 'test'). InferenceError if unreadable.
    """
    try:
        if src is not None:
            return *read_parallel(src, ref), None
        if tsv is not None:
            return data_lib.read_tsv(tsv, translator.config.data, translator.max_length)
    except (OSError, ValueError) as e:
        raise InferenceError(str(e)) from None
    return *load_split(translator.config, translator.workdir, split or "test", data_path), None


def load_split(config: ml_collections.ConfigDict, workdir: str, split: str,
               data_path: str = "") -> tuple[list[str], list[str]]:
    """(sources, references) of a split of the run's corpus, built with the run's own
    vocabularies (nothing is retrained; a prepared TFDS dataset is reused)."""
    data_cfg = ml_collections.ConfigDict(config.data.to_dict())
    if data_path:
        data_cfg.path = data_path
    try:
        data = data_lib.build(data_cfg, vocab_dir=workdir)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise InferenceError(
            f"Cannot read this run's corpus (config.data.path={data_cfg.path!r}): {e}\n"
            "Evaluate on files instead (--src FILE --ref FILE, or --tsv FILE), or point to the "
            "corpus with --data_path.") from None
    if split not in data.splits:
        raise UsageError(f"No {split!r} split in this run's corpus; it has "
                         f"{', '.join(data.splits)}.")
    sources, references = data.sources(split), data.references(split)
    if not sources:
        raise InferenceError(f"The {split!r} split is empty; use another --split.")
    return sources, references
