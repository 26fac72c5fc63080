"""Inference from training runs: restore a checkpoint (or several, as an ensemble), translate
text with any search, score given translations, show attention, evaluate.

    tr = Translator.from_workdir("runs/base", checkpoint="best")   # 'latest' | 'best' | step
    [t] = tr.translate(["Je suis content."], beam_size=5)       # or a DecodeOptions
    t.text, t.score, t.log_prob, t.weights  # weights [output tokens (+ EOS), input tokens + EOS]
    tr.translate(s, method="beam", beam_size=5, n_best=3)       # t.hypotheses(): 3, best first
    tr.translate(s, method="sample", temperature=0.8, top_p=0.9, n_best=4, seed=1)
    tr.translate(s, replace_unk=True, unk_dictionary="lex.tsv") # <unk> -> attended source word
    inputs, outputs, weights = tr.attention("il est grand .")   # -> plots.show_attention
    tr.evaluate(sources, references)  # {'bleu', 'chrf', 'bleu_signature', ...}
    tr.score(sources, targets)        # [Score(log_prob, tokens, token_log_probs)]: forced decoding
    Translator.from_workdirs(["runs/a", "runs/b"], "best")     # an ensemble (search.Ensemble)

Everything comes from the workdir: config.json, the vocabularies (and SentencePiece models) and
only the parameters of the checkpoint's train state (no optimizer state, no corpus). Input text
goes through the run's own normalization and tokenizer; unknown words map to UNK (the tutorial
id layout has no UNK: they are dropped, with a warning). Sentences are sorted by length and
decoded in batches whose shapes come from a few buckets (rows: powers of two up to
config.eval.batch_size; source length: padded as in training), so compilations are few. The
decoding options are `translation.DecodeOptions`; every search runs through `decode_ids`.

User mistakes (missing workdir or checkpoint, unreadable input, a bad option) raise
`InferenceError` (`UsageError` for options) with a message meant for the command line; the
scripts print it and exit with `exit_code`. Lengths: `max_len` is decoding steps, `padded_len`
an int source width S (see jaxattn.config).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxattn import metrics as metrics_lib
from jaxattn import restore, search
from jaxattn import unk as unk_lib
from jaxattn.data.batching import PadLength, encode_tokens, pad
from jaxattn.eval_input import load_pairs, load_split  # noqa: F401 - part of this API
from jaxattn.models import build_model
from jaxattn.translation import (  # noqa: F401 - the inference API's types live there
    EOS_LABEL,
    DecodeOptions,
    InferenceError,
    Score,
    Translation,
    UsageError,
    attention_labels,
    check_options,
    length_batches,
    round_up,
)

log = logging.getLogger(__name__)

_IN_FLIGHT = 4  # batches dispatched ahead of the one being collected


@dataclasses.dataclass
class _Input:
    tokens: list[str]
    ids: list[int]  # then EOS
    unknown: list[str]
    truncated: bool


class Translator:
    """A trained model (or an ensemble) with its config, tokenizers and vocabularies; see the
    module docstring."""

    def __init__(self, config: ml_collections.ConfigDict, params, text, *, step: int | None = None,
                 workdir: str | None = None, ensemble: Sequence[tuple] = ()):
        """ensemble: more (config, params, step, workdir) runs with the same text processing
        (see `restore.check_ensemble`), decoded with this one as a `search.Ensemble`: each step
        the mean of the models' probabilities, and of their attention weights."""
        self._init_text(config, text)
        self.step, self.workdir = step, workdir
        runs = [(config, params, step, workdir), *ensemble]
        models = tuple(build_model(c.model, len(self.src_vocab), len(self.tgt_vocab),
                                   bos_id=self.tgt_vocab.bos_id) for c, *_ in runs)
        variables = tuple({"params": jax.device_put(p)} for _, p, *_ in runs)
        self.model, self.variables = ((models[0], variables[0]) if len(runs) == 1 else
                                      (search.Ensemble(models), variables))
        self.members = [(w, s) for _, _, s, w in runs]  # (workdir, step) of each model

    def _init_text(self, config: ml_collections.ConfigDict, text) -> None:
        """The text side (no model): config, tokenizers, vocabularies and source lengths."""
        self.config = config
        self.src_tokenizer, self.tgt_tokenizer = text.src_tokenizer, text.tgt_tokenizer
        self.src_vocab, self.tgt_vocab = text.src_vocab, text.tgt_vocab
        self.max_length = text.max_length  # the corpus filter's limit (read_tsv filters by it)
        # location attention scores a fixed number of source positions (EOS included); 0 = any
        self.max_src_positions = restore.max_src_positions(config)
        self._pad_length = PadLength.from_config(config.data)  # source widths as in training

    @classmethod
    def from_workdir(cls, workdir: str, checkpoint: str | int = "latest") -> Translator:
        """Restores a run's checkpoint ('latest', 'best' or a step) with its own config and
        vocabularies."""
        return cls.from_workdirs(workdir, checkpoint)

    @classmethod
    def from_workdirs(cls, workdirs: Sequence[str] | str,
                      checkpoints: Sequence[str | int] | str | int = "latest") -> Translator:
        """An ensemble of runs' checkpoints (one checkpoint for all, or one each); they must
        have the same vocabularies and text processing (InferenceError naming the difference,
        before any parameters are read). The first run's config sets the text and eval
        defaults."""
        (first, params, step), *more = restore.restore_runs(workdirs, checkpoints)
        return cls(first.config, params, first.text, step=step, workdir=first.workdir,
                   ensemble=[(r.config, p, s, r.workdir) for r, p, s in more])

    @property
    def num_params(self) -> int:
        return sum(x.size for x in jax.tree.leaves(self.variables))

    def options(self, options: DecodeOptions | None = None, **decoding) -> DecodeOptions:
        """The DecodeOptions of a call (`DecodeOptions.make`), alpha None -> the run's
        eval.length_penalty."""
        o = DecodeOptions.make(options, **decoding)
        return o if o.alpha is not None else dataclasses.replace(
            o, alpha=float(self.config.eval.length_penalty))

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

    def padded_len(self, n: int) -> int:
        """The padded source width S of a batch whose longest row has n positions: as training
        pads (models trained without masks see the padding they were trained on)."""
        padded_len = self._pad_length(n)
        return min(padded_len, self.max_src_positions) if self.max_src_positions else padded_len

    def decode_len(self, padded_len: int, max_len: int | None) -> int:
        """Decoding steps: max_len, else config.eval.max_decode_len, raised for long input."""
        if max_len:
            return max_len
        return round_up(max(self.config.eval.max_decode_len, 2 * padded_len + 10), 8)

    def _plan(self, inputs: list[_Input], batch_size: int | None, max_len: int | None):
        """Batches [(indices, rows, padded_len, max_len)] of the non-empty inputs, by length."""
        todo = [i for i, x in enumerate(inputs) if len(x.ids) > 1]
        plan = []
        for idx, rows in length_batches([len(inputs[i].ids) for i in todo],
                                  batch_size or self.config.eval.batch_size):
            idx = [todo[i] for i in idx]
            padded_len = self.padded_len(len(inputs[idx[-1]].ids))
            plan.append((idx, rows, padded_len, self.decode_len(padded_len, max_len)))
        return plan

    def decode_ids(self, src, src_len, *, max_len: int, options: DecodeOptions, rng=None,
                   variables=None) -> search.SearchResult:
        """THE search call: `search.decode` of padded source ids src [B, S], src_len [B] with
        `options` -> SearchResult [B, N, ...] (asynchronous). rng: the sampling key (None:
        options.seed's); variables: other parameters (the export traces with its own)."""
        o = DecodeOptions.make(options)  # UsageError for what is not a DecodeOptions
        if o.method == "sample" and rng is None:
            rng = jax.random.key(o.seed)
        return search.decode(
            self.model, self.variables if variables is None else variables, src, src_len,
            eos_id=self.tgt_vocab.eos_id, max_len=max_len, method=o.method,
            beam_size=o.beam_size, n_best=o.n_best, beta=o.beta, bos_id=self.tgt_vocab.bos_id,
            alpha=self.config.eval.length_penalty if o.alpha is None else o.alpha,
            rng=rng if o.method == "sample" else None, temperature=o.temperature, top_k=o.top_k,
            top_p=o.top_p)

    def _search(self, inputs, idx, rows, padded_len, max_len, options: DecodeOptions):
        """Starts decoding one batch (asynchronously); rows past len(idx) repeat the last."""
        order = [idx[min(r, len(idx) - 1)] for r in range(rows)]
        src, src_len = pad([inputs[i].ids for i in order], padded_len, self.src_vocab.pad_id)
        rng = (jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(options.seed),
               jnp.asarray(order)) if options.method == "sample" else None)  # key of sentence i
        return self.decode_ids(src, src_len, max_len=max_len, options=options, rng=rng)

    def translate(self, sentences: Sequence[str], options: DecodeOptions | None = None, *,
                  max_len: int | None = None, batch_size: int | None = None,
                  replace_unk: bool = False, unk_dictionary: str | None = None,
                  **decoding) -> list[Translation]:
        """Translates raw sentences (normalized and tokenized as in training).

        options / decoding: a `DecodeOptions`, or its fields as keywords (beam_size=5, ...);
        the default is greedy; alpha None: config.eval.length_penalty. max_len: decoding steps
        (None: config.eval.max_decode_len, more for long input). n_best > 1: each
        Translation's `alternatives` hold the other hypotheses (samples: ranked by score).
        replace_unk: replace output <unk>s by the most attended source word, looked up in the
        `unk_dictionary` file if given (see jaxattn.unk). Sentences with no tokens give an
        empty translation without running the model.
        """
        options = self.options(options, **decoding)
        check_options(sentences=sentences, max_len=max_len, batch_size=batch_size,
                      replace_unk=replace_unk, unk_dictionary=unk_dictionary)
        dictionary = self._unk_dictionary(replace_unk, unk_dictionary)
        inputs = [self._prepare(s) for s in sentences]
        self._warn_inputs(sentences, inputs)
        out: list[Translation | None] = [None] * len(inputs)
        pending = collections.deque()  # batches in flight: decoded while the host reads others
        for p in self._plan(inputs, batch_size, max_len):
            pending.append((p[0], self._search(inputs, *p, options)))
            if len(pending) > _IN_FLIGHT:
                self._collect(inputs, *pending.popleft(), out, options, dictionary)
        while pending:
            self._collect(inputs, *pending.popleft(), out, options, dictionary)
        for i, x in enumerate(inputs):
            if out[i] is None:  # nothing to translate
                out[i] = Translation("", [], x.tokens, np.zeros((0, 1), np.float32), 0.0,
                                     unknown=x.unknown, truncated=x.truncated)
        return out

    def _unk_dictionary(self, replace_unk: bool, path: str | None) -> dict | None:
        """None: no replacement; else the unknown-word dictionary ({} without a file)."""
        if path is not None and not replace_unk:
            raise UsageError("unk_dictionary goes with replace_unk=True (--replace_unk).")
        if not replace_unk:
            return None
        if self.tgt_vocab.unk_id is None:
            raise UsageError("replace_unk: this run's target vocabulary has no <unk> (the "
                             "tutorial id layout, tutorial_ids=True), so the model never "
                             "outputs an unknown word: there is nothing to replace.")
        return unk_lib.read_dictionary(path) if path is not None else {}

    def _collect(self, inputs, idx, result: search.SearchResult, out, options: DecodeOptions,
                 dictionary: dict | None) -> None:
        r = jax.tree.map(np.asarray, result)  # tokens [B, N, T], scores [B, N], ...
        for row, i in enumerate(idx):
            ranks = (np.argsort(-r.scores[row], kind="stable") if options.method == "sample"
                     else range(r.scores.shape[1]))
            hyps = [self._translation(inputs[i], r, row, k, dictionary) for k in ranks
                    if k == ranks[0] or r.scores[row, k] > -np.inf]  # no empty beam slots
            out[i] = dataclasses.replace(hyps[0], alternatives=hyps[1:])

    def _translation(self, x: _Input, r: search.SearchResult, row: int, k: int,
                     dictionary: dict | None) -> Translation:
        length = int(r.lengths[row, k])
        ids = r.tokens[row, k, :length].tolist()
        finished = bool(r.finished[row, k])
        ids = ids[:-1] if finished else ids
        words = [self.tgt_vocab.tokens[i] for i in ids]
        weights = r.weights[row, k, :length, : len(x.ids)]
        if dictionary is not None:
            words = unk_lib.replace_unknown(words, x.tokens, weights,
                                            self.tgt_vocab.tokens[self.tgt_vocab.unk_id],
                                            dictionary)
        special = {self.tgt_vocab.pad_id, self.tgt_vocab.bos_id}
        text = self.tgt_tokenizer.detokenize([w for i, w in zip(ids, words, strict=True)
                                              if i not in special])
        return Translation(text, words, x.tokens, weights, float(r.scores[row, k]), finished,
                           x.unknown, x.truncated, float(r.log_probs[row, k]))

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

    def warmup(self, sentences: Sequence[str], options: DecodeOptions | None = None, *,
               max_len: int | None = None, batch_size: int | None = None, **decoding) -> None:
        """Compiles every batch shape that `translate` will use on `sentences` (one batch each)."""
        check_options(sentences=sentences, max_len=max_len, batch_size=batch_size)
        options, inputs = self.options(options, **decoding), [self._prepare(s) for s in sentences]
        seen = {}
        for idx, rows, padded_len, steps in self._plan(inputs, batch_size, max_len):
            seen.setdefault((rows, padded_len, steps), idx)
        for (rows, padded_len, steps), idx in seen.items():
            jax.block_until_ready(self._search(inputs, idx, rows, padded_len, steps, options))

    # ------------------------------------------------------------------ notebooks
    def attention(self, sentence: str, **kwargs) -> tuple[list[str], list[str], np.ndarray]:
        """(input words + ['<EOS>'], output words (+ '<EOS>'), weights [out, in]): the
        tutorial's showAttention arguments (see plots.show_attention). kwargs: `translate`'s."""
        [t] = self.translate([sentence], **kwargs)
        if not t.input_tokens:
            raise InferenceError(f"Nothing to translate in {sentence!r}: no known words.")
        return *attention_labels(t), t.weights

    # ------------------------------------------------------------------ scores
    def evaluate(self, sources: Sequence[str], references: Sequence[str],
                 options: DecodeOptions | None = None, *, max_len: int | None = None,
                 batch_size: int | None = None, warmup: bool = True, replace_unk: bool = False,
                 unk_dictionary: str | None = None, **decoding) -> dict:
        """Translates `sources` (options as `translate`) and scores the best translations
        against `references` with sacreBLEU.

        References go through the target side's preprocessing (e.g. the tutorial's
        normalization), as in training's validation. warmup: compile first, so the timing
        counts decoding only. Returns {'bleu', 'chrf', 'bleu_signature', 'chrf_signature',
        'bleu_detail', 'sentences', 'seconds', 'sentences_per_sec', the decoding options,
        ..., 'hypotheses'}.
        """
        options = self.options(options, **decoding)
        self._check_pairs("references", sources, references)
        kw = dict(max_len=max_len, batch_size=batch_size)
        if warmup:
            self.warmup(sources, options, **kw)
        t0 = time.perf_counter()
        out = self.translate(sources, options, replace_unk=replace_unk,
                             unk_dictionary=unk_dictionary, **kw)
        seconds = time.perf_counter() - t0
        hyps = [t.text for t in out]
        refs = [self.tgt_tokenizer.preprocess(r) for r in references]
        result = metrics_lib.corpus_scores(hyps, refs)
        result.update(
            step=self.step, **dataclasses.asdict(options), sentences=len(out),
            empty_inputs=sum(not t.input_tokens for t in out),
            with_unknown_words=sum(bool(t.unknown) for t in out),
            truncated_inputs=sum(t.truncated for t in out),
            unfinished=sum(not t.finished for t in out), replace_unk=replace_unk,
            seconds=seconds, sentences_per_sec=len(out) / max(seconds, 1e-9),
            includes_compilation=not warmup, hypotheses=hyps,
        )
        if len(self.members) > 1:
            result["ensemble"] = [dict(workdir=w, step=s) for w, s in self.members]
        return result

    def _check_pairs(self, name: str, sources: Sequence[str], targets: Sequence[str]) -> None:
        check_options(sources=sources, **{name: targets})
        if len(sources) != len(targets):
            raise InferenceError(f"{len(sources)} sources but {len(targets)} {name}: "
                                 "they must align, one sentence a line.")
        if not sources:
            raise InferenceError(f"Nothing to {'evaluate' if name == 'references' else 'score'}"
                                 ": no sentence pairs.")

    def score(self, sources: Sequence[str], targets: Sequence[str], *,
              batch_size: int | None = None) -> list[Score]:
        """Forced decoding: the model's log-probability of each target given its source
        (`search.force_decode`, batched by length like `translate`), per sentence and per
        token (the target's tokens, then EOS). Targets are tokenized as in training; unknown
        target words score as <unk> (tutorial id layout: InferenceError)."""
        self._check_pairs("targets", sources, targets)
        check_options(batch_size=batch_size)
        inputs = [self._prepare(s) for s in sources]
        self._warn_inputs(sources, inputs)
        tokens = [self._target_tokens(t) for t in targets]
        tgt_ids = [encode_tokens(self.tgt_vocab, t) for t in tokens]
        eos = self.tgt_vocab.tokens[self.tgt_vocab.eos_id]
        out: list[Score | None] = [None] * len(sources)
        for idx, rows in length_batches([len(x.ids) for x in inputs],
                                  batch_size or self.config.eval.batch_size):
            chosen = [idx[min(r, len(idx) - 1)] for r in range(rows)]
            src, src_len = pad([inputs[i].ids for i in chosen],
                               self.padded_len(max(len(inputs[i].ids) for i in idx)),
                               self.src_vocab.pad_id)  # [B, S], [B]
            tgt, tgt_len = pad([tgt_ids[i] for i in chosen],
                               round_up(max(len(tgt_ids[i]) for i in idx), 8),
                               self.tgt_vocab.pad_id)  # [B, T], [B]
            f = jax.tree.map(np.asarray, search.force_decode(
                self.model, self.variables, src, src_len, tgt, tgt_len,
                bos_id=self.tgt_vocab.bos_id))
            for row, i in enumerate(idx):
                out[i] = Score(float(f.log_probs[row]), tokens[i] + [eos],
                               f.token_log_probs[row, : len(tgt_ids[i])].tolist())
        return out

    def _target_tokens(self, target: str) -> list[str]:
        tokens = self.tgt_tokenizer.tokenize(target)
        if self.tgt_vocab.unk_id is None:
            unknown = [t for t in tokens if t not in self.tgt_vocab]
            if unknown:
                raise InferenceError(
                    f"Cannot score {target!r}: {', '.join(map(repr, unknown[:5]))} not in the "
                    "target vocabulary, which (tutorial id layout) has no <unk>.")
        return tokens


def format_scores(result: dict) -> str:
    """sacreBLEU's lines: 'BLEU|<signature> = 24.55 ...' and 'chrF2|<signature> = 31.35'."""
    detail = result["bleu_detail"].split(" = ", 1)[-1]
    return (f"BLEU|{result['bleu_signature']} = {detail}\n"
            f"chrF2|{result['chrf_signature']} = {result['chrf']:.2f}")
