"""Inference from training runs: restore a checkpoint (or several, as an ensemble), translate
text with any search, score given translations, show attention, evaluate.

    tr = Translator.from_workdir("runs/base", checkpoint="best")   # 'latest' | 'best' | step
    [t] = tr.translate(["Je suis content."], beam_size=5)       # or a DecodeOptions
    t.text, t.score, t.log_prob, t.weights  # weights [output tokens (+ EOS), input tokens + EOS]
    tr.translate(s, method="beam", beam_size=5, n_best=3)       # t.hypotheses(): 3, best first
    tr.translate(s, method="sample", temperature=0.8, top_p=0.9, n_best=4, seed=1)
    tr.translate(s, replace_unk=True, unk_dictionary="lex.tsv") # <unk> -> attended source word
    inputs, outputs, weights = tr.attention("il est grand .")   # -> plots.show_attention
    v = tr.attention_views("il est grand .")  # every layer and head -> plots.attention_layers
    tr.evaluate(sources, references)  # {'bleu', 'chrf', 'bleu_signature', ...}
    tr.score(sources, targets)        # [Score(log_prob, tokens, token_log_probs)]: forced decoding
    t.alignment, tr.align(sources, targets)  # Pharaoh links [(src word, tgt word)]: alignment.py
    Translator.from_workdirs(["runs/a", "runs/b"], "best")     # an ensemble (search.Ensemble)

Everything comes from the workdir: config.json, the vocabularies (and SentencePiece models) and
only the parameters of the checkpoint's train state (no optimizer state, no corpus). Input text
goes through the run's own normalization and tokenizer; unknown words map to UNK (the tutorial
id layout has no UNK: they are dropped, with a warning). Sentences are sorted by length and
decoded in batches whose shapes come from a few buckets (rows: powers of two up to
config.eval.batch_size; source length: padded as in training), so compilations are few. The
decoding options are `jaxattn.search.options.DecodeOptions`; every search runs through
`decode_ids`.

User mistakes (missing workdir or checkpoint, unreadable input, a bad option) raise
`InferenceError` (`UsageError` for arguments, `OptionError` for decoding options; all in
jaxattn.errors) with a message meant for the command line; the scripts print it and exit with
`exit_code`. Lengths: `max_len` is decoding steps, `padded_len`
an int source width S (see jaxattn.config).

Input limits, checked before any decoding: a sentence may have at most `max_input_len` tokens
(`input_limit()` says why): the user's (Translator(max_input_len=N) or per call), else twice
the longest training sentence (WORKDIR/data_stats.json, written by training; older runs: what
data.max_length / data.pad_to allowed; else no token limit), never more than location
attention's positions. Its characters are bounded first (`InputLimit.chars`), so a huge line is
refused without tokenizing it. An over-long sentence raises `InputTooLongError` naming it
(`where`), its length and the limit, or with overlong='truncate' is cut, with a warning
(Translation.truncated). `max_len` may not exceed `max_decode_steps()` (UsageError).

    tr = Translator.from_workdir("runs/base", max_input_len=200, overlong="truncate")
    tr.translate(sentences, overlong="error", where=lambda i: f"line {i + 1} of in.txt")
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxattn import metrics as metrics_lib
from jaxattn import search
from jaxattn.checks import is_int
from jaxattn.data.batching import encode_tokens, pad
from jaxattn.errors import InferenceError, UsageError
from jaxattn.inference import alignment as alignment_lib
from jaxattn.inference import predict
from jaxattn.inference import unk as unk_lib
from jaxattn.inference.translation import (
    MAX_DECODE_STEPS,
    OVERLONG,
    InputLimit,
    Score,
    SentenceViews,
    Translation,
    attention_labels,
    check_options,
    run_stats,
    training_limit,
)
from jaxattn.model.seq2seq import build_model, source_positions, target_positions
from jaxattn.rundir import run as run_lib
from jaxattn.rundir.layout import Checkpoint, Selector
from jaxattn.search.options import DecodeOptions

log = logging.getLogger(__name__)

_CUT_WARNINGS = 10  # over-long sentences cut (overlong='truncate') named one by one, at most


@dataclasses.dataclass
class _Input:
    tokens: list[str]
    ids: list[int]  # then EOS
    unknown: list[str]
    truncated: bool  # cut: to the input limit (`over`) or to location attention's positions
    over: tuple[int, str] | None = None  # (length, 'tokens' | 'characters') if over the limit


def _names(name: str) -> Callable[[int], str]:
    """The default `where`: index i -> 'sources[i]'."""
    return lambda i: f"{name}[{i}]"


class Translator:
    """A trained model (or an ensemble) with its config, tokenizers and vocabularies; see the
    module docstring."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        params,
        text,
        *,
        step: Checkpoint | None = None,
        workdir: str | None = None,
        ensemble: Sequence[tuple] = (),
        max_input_len: int | None = None,
        overlong: str = "error",
    ):
        """ensemble: more (config, params, step, workdir) runs with the same text processing
        (see `run.check_ensemble`), decoded with this one as a `search.Ensemble`: each step
        the mean of the models' probabilities, and of their attention weights.
        max_input_len: the longest sentence in tokens (None: the run's, see `input_limit`);
        overlong: 'error' (InputTooLongError) or 'truncate' (cut, with a warning) for longer
        ones; both can be changed later, or per call."""
        runs = [(config, params, step, workdir), *ensemble]
        self._init_text(
            config,
            text,
            runs=[(c, w) for c, _, _, w in runs],
            max_input_len=max_input_len,
            overlong=overlong,
        )
        self.step, self.workdir = step, workdir
        models = tuple(
            build_model(
                c.model, len(self.src_vocab), len(self.tgt_vocab), bos_id=self.tgt_vocab.bos_id
            )
            for c, *_ in runs
        )
        variables = tuple({"params": jax.device_put(p)} for _, p, *_ in runs)
        self.model, self.variables = (
            (models[0], variables[0]) if len(runs) == 1 else (search.Ensemble(models), variables)
        )
        self.members = [(w, s) for _, _, s, w in runs]  # (workdir, step) of each model

    def _init_text(
        self,
        config: ml_collections.ConfigDict,
        text,
        *,
        runs: Sequence[tuple] = (),
        max_input_len: int | None = None,
        overlong: str = "error",
    ) -> None:
        """The text side (no model): config, tokenizers, vocabularies, source lengths and input
        limits. runs: (config, workdir) of each model (default: `config` alone, no workdir)."""
        self.config = config
        self.src_tokenizer, self.tgt_tokenizer = text.src_tokenizer, text.tgt_tokenizer
        self.src_vocab, self.tgt_vocab = text.src_vocab, text.tgt_vocab
        self.max_length = text.max_length  # the corpus filter's limit (read_tsv filters by it)
        # location attention scores a fixed number of source positions (EOS included); 0 = any
        self.max_src_positions = source_positions(config.model)
        self._source_width = predict.source_width(config)  # source widths as in training
        # the limits each run's training implies, (tokens, why) per side; an ensemble: the least
        stats = [(c, run_stats(w)) for c, w in (runs or [(config, None)])]
        self._run_limits = {}
        for side, tok in (("source", text.src_tokenizer), ("target", text.tgt_tokenizer)):
            known = [k for c, st in stats if (k := training_limit(c, st, side, tok.kind))]
            self._run_limits[side] = min(known) if known else None
        self.max_input_len = max_input_len
        self.overlong = overlong

    @classmethod
    def from_workdir(cls, workdir: str, checkpoint: Selector = "latest", **limits) -> Translator:
        """Restores a run's checkpoint ('latest', 'best', 'averaged', 'ema' or a step;
        `self.step` is the `Step`, `AVERAGED` or `EMA` it resolved to) with its own config and
        vocabularies. limits: max_input_len, overlong (see __init__)."""
        return cls.from_workdirs(workdir, checkpoint, **limits)

    @classmethod
    def from_workdirs(
        cls,
        workdirs: Sequence[str] | str,
        checkpoints: Sequence[Selector] | Selector = "latest",
        *,
        max_input_len: int | None = None,
        overlong: str = "error",
    ) -> Translator:
        """An ensemble of runs' checkpoints (one checkpoint for all, or one each); they must
        have the same vocabularies and text processing (InferenceError naming the difference,
        before any parameters are read). The first run's config sets the text and eval
        defaults; the input limit is the least the runs' training implies."""
        check_options(max_input_len=max_input_len, overlong=overlong)  # before restoring
        (first, params, step), *more = run_lib.restore_runs(workdirs, checkpoints)
        return cls(
            first.config,
            params,
            first.text,
            step=step,
            workdir=first.workdir,
            ensemble=[(r.config, p, s, r.workdir) for r, p, s in more],
            max_input_len=max_input_len,
            overlong=overlong,
        )

    # ------------------------------------------------------------------ input limits
    @property
    def max_input_len(self) -> int | None:
        """The longest sentence (tokens) taken: `input_limit().tokens` (None: no limit known).
        Set it to an int to change the limit, to None for the run's own."""
        return self.input_limit().tokens

    @max_input_len.setter
    def max_input_len(self, value: int | None) -> None:
        check_options(max_input_len=value)
        self._user_max_input_len = None  # the run's limit, to check `value` against
        if value is not None:
            self.input_limit(value)  # UsageError above location attention's positions
        self._user_max_input_len = value

    @property
    def overlong(self) -> str:
        """'error' (the default) or 'truncate': what an over-long sentence gets by default."""
        return self._overlong

    @overlong.setter
    def overlong(self, value: str) -> None:
        if value is None or value not in OVERLONG:
            raise UsageError(f"overlong must be one of {list(OVERLONG)}, got {value!r}.")
        self._overlong = value

    def input_limit(self, max_input_len: int | None = None, side: str = "source") -> InputLimit:
        """The longest sentence taken, with why: max_input_len (None: the Translator's, see
        `max_input_len`), else twice the longest training sentence (`training_limit`), never
        more than location attention's positions (a hard limit). side: 'source' or 'target'
        (the targets of `score`)."""
        check_options(max_input_len=max_input_len)
        positions = self.max_src_positions if side == "source" else 0
        hard = (
            InputLimit(
                positions - 1,
                f"location attention scores {positions} source positions, EOS included",
                hard=True,
            )
            if positions
            else None
        )
        given = self._user_max_input_len if max_input_len is None else max_input_len
        if given is not None:
            if hard and given > hard.tokens:
                raise UsageError(
                    f"max_input_len={given} (--max_input_len) is more than this "
                    f"model can read: at most {hard.tokens} tokens ({hard.why})."
                )
            return InputLimit(given, "set by max_input_len (--max_input_len)")
        run = self._run_limits[side]
        if run is None:  # location attention without a known limit cuts, as it always did
            return InputLimit(None, "this run records no input limit")
        return hard if hard and hard.tokens < run[0] else InputLimit(*run)

    def max_decode_steps(self, max_input_len: int | None = None) -> int:
        """The most decoding steps (max_len) allowed: 4 x the input limit (at least what
        `decode_len` gives the longest input), else MAX_DECODE_STEPS; never below
        config.eval.max_decode_len."""
        return self._decode_bound(max_input_len)[0]

    def _decode_bound(self, max_input_len: int | None) -> tuple[int, str]:
        """(max_decode_steps, why it is that, for messages)."""
        limit, floor = self.input_limit(max_input_len), self.config.eval.max_decode_len
        cap = (
            MAX_DECODE_STEPS,
            "the cap on decoding steps: every step keeps the attention "
            "weights of each source position",
        )
        bound = cap
        if limit.tokens:
            steps = max(4 * limit.tokens, self.decode_len(self.padded_len(limit.tokens + 1), None))
            if steps < MAX_DECODE_STEPS:
                bound = (
                    steps,
                    f"4 x the input limit of {limit.tokens:,} tokens; longer output "
                    "cannot be a translation of such input",
                )
        table = target_positions(self.config.model)
        if table and table < bound[0]:
            bound = (table, "the decoder's learned positional table (model.max_positions)")
        return bound if bound[0] >= floor else (floor, "the run's eval.max_decode_len")

    def check_limits(
        self,
        max_len: int | None = None,
        max_input_len: int | None = None,
        overlong: str | None = None,
    ) -> None:
        """UsageError, before any work, for a max_input_len the model cannot read, a bad
        overlong or a max_len above `max_decode_steps` (its message says why)."""
        check_options(max_len=max_len, max_input_len=max_input_len, overlong=overlong)
        limit = self.input_limit(max_input_len)
        steps, why = self._decode_bound(max_input_len)
        if max_len is not None and max_len > steps:
            raise UsageError(
                f"max_len={max_len:,} (--max_len) decoding steps is more than this model can "
                f"use: at most {steps:,} ({why}). Lower it, or leave it out (the default grows "
                "with the input)"
                + (
                    ", or raise the input limit (--max_input_len, max_input_len=)"
                    if why.startswith("4 x") and not limit.hard
                    else ""
                )
                + "."
            )

    @property
    def num_params(self) -> int:
        return sum(x.size for x in jax.tree.leaves(self.variables))

    def options(self, options: DecodeOptions | None = None, **decoding) -> DecodeOptions:
        """The DecodeOptions of a call (`DecodeOptions.make`), alpha None -> the run's
        eval.length_penalty (here only: every search goes through this)."""
        o = DecodeOptions.make(options, **decoding)
        if o.alpha is not None:
            return o
        return dataclasses.replace(o, alpha=float(self.config.eval.length_penalty))

    # ------------------------------------------------------------------ text -> ids
    def _prepare(
        self, sentence: str, limit: InputLimit, overlong: str, name: Callable[[], str]
    ) -> _Input:
        """A sentence's tokens and ids, encoded as training encodes (jaxattn.data.batching);
        unknown words of the tutorial id layout (no UNK) are dropped. Over `limit` (its
        characters first, untokenized; then its tokens): InputTooLongError naming it (name()),
        or with overlong='truncate' cut to limit.tokens."""
        over = None
        if len(sentence) > limit.chars:
            if overlong == "error":
                raise limit.error(name(), len(sentence), "characters")
            over, sentence = (len(sentence), "characters"), sentence[: limit.chars]
        tokens = self.src_tokenizer.tokenize(sentence)
        vocab = self.src_vocab
        unknown = [t for t in tokens if t not in vocab]
        if unknown and vocab.unk_id is None:  # tutorial ids: no UNK, drop the word
            tokens = [t for t in tokens if t in vocab]
        if limit.tokens and len(tokens) > limit.tokens:
            if overlong == "error":
                raise limit.error(name(), len(tokens))
            over, tokens = over or (len(tokens), "tokens"), tokens[: limit.tokens]
        ids = encode_tokens(vocab, tokens, self.max_src_positions)
        return _Input(
            tokens[: len(ids) - 1], ids, unknown, len(ids) <= len(tokens) or over is not None, over
        )

    def _inputs(
        self,
        sentences: Sequence[str],
        *,
        max_input_len: int | None,
        overlong: str | None,
        where: Callable[[int], str] | None,
        name: str = "sentences",
        warn: bool = True,
    ) -> list[_Input]:
        """`_prepare` of each sentence with the call's limit and overlong mode (None: the
        Translator's); `warn`: log the cut ones (by `where(i)`) and unknown words."""
        limit, overlong = self.input_limit(max_input_len), overlong or self.overlong
        where = where or _names(name)
        inputs = [
            self._prepare(s, limit, overlong, lambda i=i: where(i)) for i, s in enumerate(sentences)
        ]
        if warn:
            self._warn_inputs(sentences, inputs)
            self._warn_cut([(where(i), x) for i, x in enumerate(inputs) if x.over], limit)
        return inputs

    def check_inputs(
        self,
        sentences: Sequence[str],
        *,
        max_input_len: int | None = None,
        overlong: str | None = None,
        where: Callable[[int], str] | None = None,
    ) -> int:
        """The input checks of `translate` alone (no decoding, no warnings): InputTooLongError
        for the first over-long sentence (overlong 'error'), else the number that would be cut.
        For checking several inputs before decoding any (scripts/compare.py)."""
        check_options(
            sentences=sentences, max_input_len=max_input_len, overlong=overlong, where=where
        )
        inputs = self._inputs(
            sentences, max_input_len=max_input_len, overlong=overlong, where=where, warn=False
        )
        return sum(x.over is not None for x in inputs)

    @staticmethod
    def _warn_cut(cut: list[tuple[str, _Input]], limit: InputLimit) -> None:
        """A warning for each sentence cut to the input limit (the first _CUT_WARNINGS), then
        their count."""
        for name, x in cut[:_CUT_WARNINGS]:
            length, unit = x.over
            log.warning(
                "%s has %s%s %s: cut to its first %d tokens (the limit: %s).",
                name,
                "at least " if unit == "characters" else "",
                f"{length:,}",
                unit,
                len(x.tokens),
                limit.why,
            )
        if len(cut) > _CUT_WARNINGS:
            log.warning(
                "%d more sentence(s) cut to %d tokens (%d in all).",
                len(cut) - _CUT_WARNINGS,
                limit.tokens or 0,
                len(cut),
            )

    def padded_len(self, n: int) -> int:
        """The padded source width S of a batch whose longest row has n positions: as training
        pads (`predict.source_width`)."""
        return self._source_width(n)

    def decode_len(self, padded_len: int, max_len: int | None) -> int:
        """Decoding steps: max_len, else config.eval.max_decode_len, raised for long input
        (up to MAX_DECODE_STEPS)."""
        if max_len:
            return max_len
        floor = self.config.eval.max_decode_len
        steps = min(
            predict.round_up(max(floor, 2 * padded_len + 10), 8), max(MAX_DECODE_STEPS, floor)
        )
        table = target_positions(self.config.model)  # a learned positional table's size
        return min(steps, max(table, floor)) if table else steps

    def _plan(
        self, inputs: list[_Input], batch_size: int | None, max_len: int | None
    ) -> list[predict.Batch]:
        """`predict.plan` of the inputs: the non-empty ones by length, in batches of batch_size
        (None: config.eval.batch_tokens padded source positions if set, else
        config.eval.batch_size rows), `decode_len` steps each."""
        return predict.plan(
            [len(x.ids) for x in inputs],
            batch_size or self.config.eval.batch_size,
            self.padded_len,
            lambda padded_len: self.decode_len(padded_len, max_len),
            0 if batch_size else self.config.eval.batch_tokens,
        )

    def decode_ids(
        self, src, src_len, *, max_len: int, options: DecodeOptions, rng=None, variables=None
    ) -> search.SearchResult:
        """THE search call: `predict.decode` of padded source ids src [B, S], src_len [B] with
        `options` -> SearchResult [B, N, ...] (asynchronous). rng: the sampling key (None:
        options.seed's); variables: other parameters (the export traces with its own)."""
        o = self.options(options)  # OptionError for what is not a DecodeOptions
        if o.method == "sample" and rng is None:
            rng = jax.random.key(o.seed)
        return predict.decode(
            self.model,
            self.variables if variables is None else variables,
            src,
            src_len,
            o,
            tgt_vocab=self.tgt_vocab,
            max_len=max_len,
            rng=rng if o.method == "sample" else None,
        )

    def _search(
        self, sources: list[list[int]], b: predict.Batch, options: DecodeOptions, offset: int = 0
    ):
        """Starts decoding batch `b` of the source id rows (asynchronously). Sampling: sentence
        i's key folds in its input position, offset + i."""
        src, src_len = b.source(sources, self.src_vocab.pad_id)  # [B, S], [B]
        rng = (
            jax.vmap(jax.random.fold_in, (None, 0))(
                jax.random.key(options.seed), jnp.asarray(b.order) + offset
            )
            if options.method == "sample"
            else None
        )
        return self.decode_ids(src, src_len, max_len=b.max_len, options=options, rng=rng)

    def translate(
        self,
        sentences: Sequence[str],
        options: DecodeOptions | None = None,
        *,
        max_len: int | None = None,
        batch_size: int | None = None,
        replace_unk: bool = False,
        unk_dictionary: str | None = None,
        max_input_len: int | None = None,
        overlong: str | None = None,
        where: Callable[[int], str] | None = None,
        index_offset: int = 0,
        **decoding,
    ) -> list[Translation]:
        """Translates raw sentences (normalized and tokenized as in training).

        options / decoding: a `DecodeOptions`, or its fields as keywords (beam_size=5, ...);
        the default is greedy; alpha None: config.eval.length_penalty. max_len: decoding steps
        (None: config.eval.max_decode_len, more for long input; at most `max_decode_steps`).
        n_best > 1: each Translation's `alternatives` hold the other hypotheses (samples:
        ranked by score). replace_unk: replace output <unk>s by the most attended source word,
        looked up in the `unk_dictionary` file if given (see jaxattn.inference.unk). Sentences with
        no
        tokens give an empty translation without running the model. max_input_len, overlong:
        this call's input limit and what over-long sentences get (None: the Translator's; see
        the module doc); where: names sentence i in messages (default 'sentences[i]').
        index_offset: the position of sentences[0] in a longer input translated in parts
        (sampling draws by input position: the parts then sample as the whole would).
        """
        options = self.options(options, **decoding)
        check_options(
            sentences=sentences,
            max_len=max_len,
            batch_size=batch_size,
            replace_unk=replace_unk,
            unk_dictionary=unk_dictionary,
            where=where,
        )
        if not is_int(index_offset) or index_offset < 0:
            raise UsageError(f"index_offset must be an integer >= 0, got {index_offset!r}.")
        self.check_limits(max_len, max_input_len, overlong)
        dictionary = self._unk_dictionary(replace_unk, unk_dictionary)
        inputs = self._inputs(
            sentences, max_input_len=max_input_len, overlong=overlong, where=where
        )
        return self._translate(inputs, options, max_len, batch_size, dictionary, index_offset)

    def _translate(
        self,
        inputs: list[_Input],
        options: DecodeOptions,
        max_len: int | None,
        batch_size: int | None,
        dictionary: dict | None,
        offset: int = 0,
    ) -> list[Translation]:
        """Decodes prepared inputs through `predict.predict` (by length, several batches in
        flight): the path training's validation takes too."""
        out: list[Translation | None] = [None] * len(inputs)
        sources = [x.ids for x in inputs]
        batches = self._plan(inputs, batch_size, max_len)
        for b, r in predict.predict(batches, lambda b: self._search(sources, b, options, offset)):
            self._collect(inputs, b.idx, r, out, options, dictionary)
        for i, x in enumerate(inputs):
            if out[i] is None:  # nothing to translate
                out[i] = Translation(
                    "",
                    [],
                    x.tokens,
                    np.zeros((0, 1), np.float32),
                    0.0,
                    unknown=x.unknown,
                    truncated=x.truncated,
                )
        return out

    def _unk_dictionary(self, replace_unk: bool, path: str | None) -> dict | None:
        """None: no replacement; else the unknown-word dictionary ({} without a file)."""
        if path is not None and not replace_unk:
            raise UsageError("unk_dictionary goes with replace_unk=True (--replace_unk).")
        if not replace_unk:
            return None
        if self.tgt_vocab.unk_id is None:
            raise UsageError(
                "replace_unk: this run's target vocabulary has no <unk> (the "
                "tutorial id layout, tutorial_ids=True), so the model never "
                "outputs an unknown word: there is nothing to replace."
            )
        return unk_lib.read_dictionary(path) if path is not None else {}

    def _collect(
        self,
        inputs,
        idx,
        r: search.SearchResult,
        out,
        options: DecodeOptions,
        dictionary: dict | None,
    ) -> None:
        """out[i] for each sentence i of a batch: its Translation with the n-best alternatives,
        from r (host arrays: tokens [B, N, T], scores [B, N], ...)."""
        for row, i in enumerate(idx):
            ranks = (
                np.argsort(-r.scores[row], kind="stable")
                if options.method == "sample"
                else range(r.scores.shape[1])
            )
            hyps = [
                self._translation(inputs[i], r, row, k, dictionary)
                for k in ranks
                if k == ranks[0] or r.scores[row, k] > -np.inf
            ]  # no empty beam slots
            out[i] = dataclasses.replace(hyps[0], alternatives=hyps[1:])

    def _translation(
        self, x: _Input, r: search.SearchResult, row: int, k: int, dictionary: dict | None
    ) -> Translation:
        ids, finished = predict.hypothesis_ids(r, row, k)
        words = [self.tgt_vocab.tokens[i] for i in ids]
        weights = r.weights[row, k, : int(r.lengths[row, k]), : len(x.ids)]
        if dictionary is not None:
            words = unk_lib.replace_unknown(
                words, x.tokens, weights, self.tgt_vocab.tokens[self.tgt_vocab.unk_id], dictionary
            )
        text = predict.target_text(self.tgt_tokenizer, self.tgt_vocab, ids, words)
        return Translation(
            text,
            words,
            x.tokens,
            weights,
            float(r.scores[row, k]),
            finished,
            x.unknown,
            x.truncated,
            float(r.log_probs[row, k]),
            alignment=self._alignment(weights, x.tokens, words),
        )

    def _alignment(self, weights: np.ndarray, src_tokens, tgt_tokens) -> list[tuple[int, int]]:
        """`alignment.hard_alignment` with this run's tokenizers."""
        return alignment_lib.hard_alignment(
            weights, src_tokens, tgt_tokens, self.src_tokenizer.kind, self.tgt_tokenizer.kind
        )

    def _warn_inputs(self, sentences: Sequence[str], inputs: list[_Input]) -> None:
        void = sum(
            bool(s.strip()) and len(x.ids) == 1 for s, x in zip(sentences, inputs, strict=True)
        )
        if void:
            log.warning(
                "%d sentence(s) have no token the model knows (after normalization): "
                "empty translations.",
                void,
            )
        unknown = [w for x in inputs for w in x.unknown]
        if unknown:
            shown = ", ".join(repr(w) for w in dict.fromkeys(unknown).keys() if w)
            shown = shown if len(shown) < 300 else shown[:300] + "..."
            how = (
                "dropped: this run's vocabulary (tutorial_ids) has no UNK"
                if self.src_vocab.unk_id is None
                else "read as <unk>"
            )
            log.warning(
                "%d unknown word(s) in %d sentence(s), %s: %s",
                len(unknown),
                sum(bool(x.unknown) for x in inputs),
                how,
                shown,
            )
        cut = sum(x.truncated and not x.over for x in inputs)
        if cut:
            log.warning(
                "%d sentence(s) cut to %d tokens: location attention scores at most "
                "%d source positions (EOS included).",
                cut,
                self.max_src_positions - 1,
                self.max_src_positions,
            )

    def warmup(
        self,
        sentences: Sequence[str],
        options: DecodeOptions | None = None,
        *,
        max_len: int | None = None,
        batch_size: int | None = None,
        max_input_len: int | None = None,
        overlong: str | None = None,
        where: Callable[[int], str] | None = None,
        **decoding,
    ) -> None:
        """Compiles every batch shape that `translate` will use on `sentences` (one batch each);
        the same input checks as `translate`, without its warnings."""
        check_options(sentences=sentences, max_len=max_len, batch_size=batch_size, where=where)
        self.check_limits(max_len, max_input_len, overlong)
        options = self.options(options, **decoding)
        self._warmup(
            self._inputs(
                sentences, max_input_len=max_input_len, overlong=overlong, where=where, warn=False
            ),
            options,
            max_len,
            batch_size,
        )

    def _warmup(
        self,
        inputs: list[_Input],
        options: DecodeOptions,
        max_len: int | None,
        batch_size: int | None,
    ) -> None:
        shapes = {}  # (rows, padded_len, max_len) -> the first batch of that shape
        for b in self._plan(inputs, batch_size, max_len):
            shapes.setdefault((b.rows, b.padded_len, b.max_len), b)
        sources = [x.ids for x in inputs]
        for b in shapes.values():
            jax.block_until_ready(self._search(sources, b, options))

    # ------------------------------------------------------------------ notebooks
    def attention(self, sentence: str, **kwargs) -> tuple[list[str], list[str], np.ndarray]:
        """(input words + ['<EOS>'], output words (+ '<EOS>'), weights [out, in]): the
        tutorial's showAttention arguments (see plots.show_attention). kwargs: `translate`'s.

        The weights are the search's alignment: what each decode step reports (an RNN
        decoder's attention; the Transformer decoder's cross-attention of one layer, the mean
        of its heads or one head: config.model.alignment_layer, alignment_head). Every layer
        and head: `attention_views`."""
        t = self._translate_one(sentence, kwargs)
        return *attention_labels(t), t.weights

    def _translate_one(self, sentence: str, kwargs: dict) -> Translation:
        """`translate` of one sentence (kwargs: its), which must have a known word."""
        if not isinstance(sentence, str):
            raise UsageError(f"sentence must be a string, not {type(sentence).__name__}.")
        kwargs.setdefault("where", lambda i: "the sentence")
        [t] = self.translate([sentence], **kwargs)
        if not t.input_tokens:
            raise InferenceError(f"Nothing to translate in {sentence!r}: no known words.")
        return t

    def attention_views(self, sentence: str, **kwargs) -> SentenceViews:
        """Every attention of a sentence's translation, per layer and head: translates it as
        `attention` does (kwargs: `translate`'s), then runs `Seq2Seq.attention_views` (one
        teacher-forced pass) on the input and the emitted output (EOS included if finished).

        Which weights count as the alignment (`SentenceViews.alignment`, the search's
        `Translation.weights`, what heatmaps and unknown-word replacement use) is the model's
        choice: an RNN decoder's attention; for the Transformer decoder, the cross-attention of
        layer config.model.alignment_layer (-1, the default: the last), the mean of its heads
        (config.model.alignment_head -1, the default) or head alignment_head; set them in the
        run's config before training or in its config.json after (they only pick weights).
        An ensemble: the views of its first run (the translation is the ensemble's).

        Returns:
            `SentenceViews`: labels, encoder_self [L_enc, h, in, in] (None: RNN encoder),
            decoder_self [L_dec, h, out, out] (None: RNN decoder), cross [L_dec, h, out, in],
            alignment [out, in], and the Translation.
        """
        if self.model is None:
            raise UsageError(
                "attention_views needs the model, which an export does not hold (only its "
                "searches): use the run's workdir (Translator.from_workdir)."
            )
        replace_unk = kwargs.pop("replace_unk", False)
        path = kwargs.pop("unk_dictionary", None)
        check_options(replace_unk=replace_unk, unk_dictionary=path)
        dictionary = self._unk_dictionary(replace_unk, path)
        t = self._translate_one(sentence, kwargs)  # without replacement: the emitted ids
        src_ids = encode_tokens(self.src_vocab, t.input_tokens, self.max_src_positions)
        tgt_ids = self.tgt_vocab.encode(t.tokens) + ([self.tgt_vocab.eos_id] if t.finished else [])
        src, src_len = pad([src_ids], self.padded_len(len(src_ids)), self.src_vocab.pad_id)
        tgt, _ = pad([tgt_ids], predict.round_up(len(tgt_ids), 8), self.tgt_vocab.pad_id)
        model, variables = self.model, self.variables
        if isinstance(model, search.Ensemble):
            model, variables = model.models[0], variables[0]
        views = _views(model, variables, src, src_len, tgt)  # [1, ...]
        s, n = len(src_ids), len(tgt_ids)

        def cut(w, rows, columns):  # [1, ..., T|S, T|S] -> [..., rows, columns]
            return None if w is None else np.asarray(w[0, ..., :rows, :columns])

        if dictionary is not None:  # the labels, as translate(replace_unk=True) gives them
            unk = self.tgt_vocab.tokens[self.tgt_vocab.unk_id]
            words = unk_lib.replace_unknown(t.tokens, t.input_tokens, t.weights, unk, dictionary)
            text = predict.target_text(
                self.tgt_tokenizer, self.tgt_vocab, tgt_ids[: len(words)], words
            )
            t = dataclasses.replace(t, tokens=words, text=text)
        return SentenceViews(
            *attention_labels(t),
            encoder_self=cut(views.encoder_self, s, s),
            decoder_self=cut(views.decoder_self, n, n),
            cross=cut(views.cross, n, s),
            alignment=cut(views.alignment, n, s),
            translation=t,
        )

    # ------------------------------------------------------------------ scores
    def evaluate(
        self,
        sources: Sequence[str],
        references: Sequence[str],
        options: DecodeOptions | None = None,
        *,
        max_len: int | None = None,
        batch_size: int | None = None,
        warmup: bool = True,
        replace_unk: bool = False,
        unk_dictionary: str | None = None,
        max_input_len: int | None = None,
        overlong: str | None = None,
        where: Callable[[int], str] | None = None,
        alignments: bool = False,
        **decoding,
    ) -> dict:
        """Translates `sources` (options as `translate`) and scores the best translations
        against `references` with sacreBLEU.

        References go through the target side's preprocessing (e.g. the tutorial's
        normalization), as in training's validation. warmup: compile first, so the timing
        counts decoding only. Every source is checked (input limit) before any decoding.
        Returns {'bleu', 'chrf', 'bleu_signature', 'chrf_signature', 'bleu_detail',
        'sentences', 'seconds', 'sentences_per_sec', the decoding options, ...,
        'max_input_len', 'truncated_inputs', 'hypotheses'}; alignments=True adds
        'alignments', each hypothesis's `Translation.alignment`.
        """
        options = self.options(options, **decoding)
        self._check_pairs("references", sources, references)
        check_options(
            max_len=max_len,
            batch_size=batch_size,
            replace_unk=replace_unk,
            unk_dictionary=unk_dictionary,
            where=where,
        )
        self.check_limits(max_len, max_input_len, overlong)
        dictionary = self._unk_dictionary(replace_unk, unk_dictionary)
        inputs = self._inputs(
            sources, max_input_len=max_input_len, overlong=overlong, where=where, name="sources"
        )
        if warmup:
            self._warmup(inputs, options, max_len, batch_size)
        t0 = time.perf_counter()
        out = self._translate(inputs, options, max_len, batch_size, dictionary)
        seconds = time.perf_counter() - t0
        hyps = [t.text for t in out]
        refs = [self.tgt_tokenizer.preprocess(r) for r in references]
        result = metrics_lib.corpus_scores(hyps, refs)
        result.update(
            step=self.step,
            **dataclasses.asdict(options),
            sentences=len(out),
            empty_inputs=sum(not t.input_tokens for t in out),
            with_unknown_words=sum(bool(t.unknown) for t in out),
            truncated_inputs=sum(t.truncated for t in out),
            max_input_len=self.input_limit(max_input_len).tokens,
            unfinished=sum(not t.finished for t in out),
            replace_unk=replace_unk,
            seconds=seconds,
            sentences_per_sec=len(out) / max(seconds, 1e-9),
            includes_compilation=not warmup,
            hypotheses=hyps,
        )
        if alignments:
            result["alignments"] = [t.alignment for t in out]
        if len(self.members) > 1:
            result["ensemble"] = [dict(workdir=w, step=s) for w, s in self.members]
        return result

    def _check_pairs(self, name: str, sources: Sequence[str], targets: Sequence[str]) -> None:
        check_options(sources=sources, **{name: targets})
        if len(sources) != len(targets):
            raise InferenceError(
                f"{len(sources)} sources but {len(targets)} {name}: "
                "they must align, one sentence a line."
            )
        if not sources:
            raise InferenceError(
                f"Nothing to {'evaluate' if name == 'references' else 'score'}: no sentence pairs."
            )

    def score(
        self,
        sources: Sequence[str],
        targets: Sequence[str],
        *,
        batch_size: int | None = None,
        max_input_len: int | None = None,
        overlong: str | None = None,
        where: Callable[[int], str] | None = None,
        target_where: Callable[[int], str] | None = None,
    ) -> list[Score]:
        """Forced decoding: the model's log-probability of each target given its source
        (`search.force_decode`, batched by length like `translate`), per sentence and per
        token (the target's tokens, then EOS). Targets are tokenized as in training; unknown
        target words score as <unk> (tutorial id layout: InferenceError). Sources and targets
        are held to the input limits (`input_limit`, its 'target' side for targets;
        max_input_len sets both), overlong and where as in `translate`; target_where names
        target i (default 'targets[i]', or 'the target of ' where(i))."""
        self._check_pairs("targets", sources, targets)
        check_options(batch_size=batch_size, where=where, target_where=target_where)
        self.check_limits(None, max_input_len, overlong)
        target_limit = self.input_limit(max_input_len, side="target")
        inputs = self._inputs(
            sources, max_input_len=max_input_len, overlong=overlong, where=where, name="sources"
        )
        where_target = target_where or (
            (lambda i: f"the target of {where(i)}") if where else _names("targets")
        )
        tokens, cut = [], []
        for i, t in enumerate(targets):
            tokens.append(
                self._target_tokens(
                    t, target_limit, overlong or self.overlong, lambda i=i: where_target(i)
                )
            )
            if tokens[-1].over:
                cut.append((where_target(i), tokens[-1]))
        self._warn_cut(cut, target_limit)
        tokens = [x.tokens for x in tokens]
        tgt_ids = [encode_tokens(self.tgt_vocab, t) for t in tokens]
        eos = self.tgt_vocab.tokens[self.tgt_vocab.eos_id]
        out: list[Score | None] = [None] * len(sources)
        for idx, rows in predict.length_batches(
            [len(x.ids) for x in inputs], batch_size or self.config.eval.batch_size
        ):
            chosen = [idx[min(r, len(idx) - 1)] for r in range(rows)]
            src, src_len = pad(
                [inputs[i].ids for i in chosen],
                self.padded_len(max(len(inputs[i].ids) for i in idx)),
                self.src_vocab.pad_id,
            )  # [B, S], [B]
            tgt, tgt_len = pad(
                [tgt_ids[i] for i in chosen],
                predict.round_up(max(len(tgt_ids[i]) for i in idx), 8),
                self.tgt_vocab.pad_id,
            )  # [B, T], [B]
            f = jax.tree.map(
                np.asarray,
                search.force_decode(
                    self.model,
                    self.variables,
                    src,
                    src_len,
                    tgt,
                    tgt_len,
                    bos_id=self.tgt_vocab.bos_id,
                ),
            )
            for row, i in enumerate(idx):
                out[i] = Score(
                    float(f.log_probs[row]),
                    tokens[i] + [eos],
                    f.token_log_probs[row, : len(tgt_ids[i])].tolist(),
                    self._alignment(f.weights[row], inputs[i].tokens, tokens[i]),
                )
        return out

    def align(self, sources: Sequence[str], targets: Sequence[str], **kwargs) -> list[list]:
        """The forced alignment of each target with its source: `score`'s attention weights
        as Pharaoh links (source word, target word), 0-based, over the words the model reads
        (jaxattn.inference.alignment; what scripts/align_eval.py scores). kwargs: `score`'s."""
        return [s.alignment for s in self.score(sources, targets, **kwargs)]

    def _target_tokens(
        self, target: str, limit: InputLimit, overlong: str, name: Callable[[], str]
    ) -> _Input:
        """A target's tokens (an _Input without ids), held to `limit` as `_prepare` holds
        sources."""
        over = None
        if len(target) > limit.chars:
            if overlong == "error":
                raise limit.error(name(), len(target), "characters")
            over, target = (len(target), "characters"), target[: limit.chars]
        tokens = self.tgt_tokenizer.tokenize(target)
        if limit.tokens and len(tokens) > limit.tokens:
            if overlong == "error":
                raise limit.error(name(), len(tokens))
            over, tokens = over or (len(tokens), "tokens"), tokens[: limit.tokens]
        if self.tgt_vocab.unk_id is None:
            unknown = [t for t in tokens if t not in self.tgt_vocab]
            if unknown:
                raise InferenceError(
                    f"Cannot score {target!r:.200}: {', '.join(map(repr, unknown[:5]))} not in "
                    "the target vocabulary, which (tutorial id layout) has no <unk>."
                )
        return _Input(tokens, [], [], over is not None, over)


@functools.partial(jax.jit, static_argnames=("model",))
def _views(model, variables, src, src_len, tgt):
    """`Seq2Seq.attention_views`, jitted (one compilation per shape)."""
    return model.apply(variables, src, src_len, tgt, method="attention_views")


def format_scores(result: dict) -> str:
    """sacreBLEU's lines: 'BLEU|<signature> = 24.55 ...' and 'chrF2|<signature> = 31.35'."""
    detail = result["bleu_detail"].split(" = ", 1)[-1]
    return (
        f"BLEU|{result['bleu_signature']} = {detail}\n"
        f"chrF2|{result['chrf_signature']} = {result['chrf']:.2f}"
    )
