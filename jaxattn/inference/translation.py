"""What a translation is and how one is asked for: `Translation` (one sentence's output,
with its n-best alternatives), `Score` (a forced-decoding score), the checks of the
inference API's arguments that are not decoding options (`check_options`), and its input
limits. The decoding options themselves are `jaxattn.search.options.DecodeOptions`, one table
for the search, the Translator and the flags::

    opts = DecodeOptions(method="beam", beam_size=5, n_best=3, beta=0.2)
    [t] = translator.translate(["il est grand ."], opts)   # or translate(s, beam_size=5, ...)
    for h in t.hypotheses():                               # best first
        print(h.score, h.text)

Also what input `Translator` takes (its batches: jaxattn.inference.predict): `InputLimit`
(the longest sentence in tokens, and a bound on its characters checked before any tokenizing;
too long: `jaxattn.errors.InputTooLongError`), `training_limit` (the limit a run's training
data implies, from `run_stats`: WORKDIR/data_stats.json), `MAX_DECODE_STEPS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxattn.checks import is_int
from jaxattn.data.pipeline import read_data_stats
from jaxattn.data.text import JOINER
from jaxattn.errors import InputTooLongError, UsageError
from jaxattn.rundir.layout import DATA_STATS_FILE

EOS_LABEL = "<EOS>"  # the tutorial's label for the end of sentence in attention plots


# ------------------------------------------------------------------------------ input limits
CHARS_PER_TOKEN = 100  # characters a token may take: bounds a line before it is tokenized
UNLIMITED_CHARS = 1_000_000  # characters of a sentence when no token limit is known
MAX_DECODE_STEPS = 10_000  # decoding steps (max_len) at most, unless eval.max_decode_len is more
OVERLONG = ("error", "truncate")  # what to do with an over-long sentence
_FIX = (
    "Raise the limit (--max_input_len N, max_input_len=N) or cut over-long sentences with "
    "a warning (--truncate_long, overlong='truncate')."
)


@dataclasses.dataclass(frozen=True)
class InputLimit:
    """The longest sentence a model takes: `tokens` (None: not known) and where that number
    comes from (`why`, for messages); `hard`: the model cannot read more (location attention's
    positions), so the limit cannot be raised. `chars` bounds a sentence's characters before it
    is tokenized: CHARS_PER_TOKEN a token, UNLIMITED_CHARS without a token limit."""

    tokens: int | None
    why: str
    hard: bool = False

    @property
    def chars(self) -> int:
        return self.tokens * CHARS_PER_TOKEN if self.tokens else UNLIMITED_CHARS

    def describe(self, unit: str = "tokens") -> str:
        """'at most 16 tokens: twice the longest training source sentence (8 tokens, ...)';
        unit 'characters': the bound on characters and why."""
        if self.tokens is None:
            return f"at most {self.chars:,} characters: {self.why}"
        if unit == "characters":
            return (
                f"at most {self.chars:,} characters: {CHARS_PER_TOKEN} a token for its "
                f"limit of {self.tokens:,} tokens, {self.why}"
            )
        return f"at most {self.tokens:,} tokens: {self.why}"

    def error(
        self, name: str, length: int, unit: str = "tokens", at_least: bool = False
    ) -> InputTooLongError:
        """InputTooLongError for sentence `name` ('line 3 of stdin', 'sentences[2]') of
        `length` tokens or characters (`at_least`: more than that, not read to its end)."""
        has = f"{'more than ' if at_least else ''}{length:,} {unit}"
        fix = (
            "Cut over-long sentences with a warning (--truncate_long, overlong='truncate')."
            if self.hard
            else _FIX
        )
        return InputTooLongError(f"{name} has {has}; this model takes {self.describe(unit)}. {fix}")


def run_stats(workdir: str | None) -> dict:
    """The training data's figures a run recorded (WORKDIR/data_stats.json: 'max_source_len',
    'max_target_len', the longest training sentences in tokens without EOS, and 'train_pairs');
    {} without a workdir or for runs trained before training wrote it."""
    return read_data_stats(workdir) if workdir else {}


def training_limit(config, stats: dict, side: str, tokenizer_kind: str) -> tuple[int, str] | None:
    """(tokens, why) of the longest `side` ('source' or 'target') sentence to accept from a run:
    twice the longest one it was trained on: from `run_stats`, else what the config let
    training see (data.max_length's filter, data.pad_to), else None (unknown). The tutorial's
    filter counts words: tokens only for the 'space' tokenizer."""
    n = stats.get(f"max_{side}_len")
    if is_int(n) and n >= 1:
        return 2 * n, f"twice the longest training {side} sentence ({n} tokens, {DATA_STATS_FILE})"
    d = config.data
    max_length = d.max_length if d.max_length != -1 else (10 if d.name == "tutorial" else 0)
    known = []  # (longest training sentence in tokens, the config field that says so)
    if max_length > 1 and (not (d.name == "tutorial" and d.filter) or tokenizer_kind == "space"):
        known.append((max_length - 1, f"data.max_length={max_length}"))
    if d.pad_to > 1:
        known.append((d.pad_to - 1, f"data.pad_to={d.pad_to}"))
    if not known:
        return None
    n, field = min(known)
    return 2 * n, f"twice the longest training sentence {field} allows ({n} tokens)"


# ------------------------------------------------------------------------------ options
def check_options(**kwargs) -> None:
    """UsageError (a ValueError) naming the first argument of a wrong type or range, for the
    Translator's arguments that are not decoding options (those: `DecodeOptions`): sentence
    lists, integers >= 1 or None (max_len, batch_size, max_input_len), replace_unk (bool),
    unk_dictionary (a path or None), overlong ('error', 'truncate' or None), where (a
    function or None)."""
    for name, v in kwargs.items():
        if name in ("sentences", "sources", "references", "targets"):
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
                raise UsageError(
                    f"{name} must be a list of strings (one sentence each), not "
                    f"{type(v).__name__}"
                    + (" (wrap one sentence in a list)" if isinstance(v, str) else "")
                    + "."
                )
            bad = next((i for i, s in enumerate(v) if not isinstance(s, str)), None)
            if bad is not None:
                raise UsageError(
                    f"{name}[{bad}] is {type(v[bad]).__name__} {v[bad]!r:.40}, not a "
                    "string: give every sentence as text ('' for an empty one)."
                )
        elif name == "replace_unk":
            if not isinstance(v, bool):
                raise UsageError(f"replace_unk must be True or False, got {v!r}.")
        elif name == "unk_dictionary":
            if v is not None and (not isinstance(v, str) or not v):
                raise UsageError(f"unk_dictionary must be a file path or None, got {v!r}.")
        elif name == "overlong":
            if v is not None and v not in OVERLONG:
                raise UsageError(
                    f"overlong must be one of {list(OVERLONG)} (or None: the "
                    f"Translator's), got {v!r}."
                )
        elif name in ("where", "target_where"):
            if v is not None and not callable(v):
                raise UsageError(
                    f"{name} must be a function of a sentence's index that names "
                    f"it in messages, or None, got {v!r:.40}."
                )
        elif v is not None:
            if not is_int(v) or v < 1:
                raise UsageError(f"{name} must be an integer >= 1, got {v!r}.")


# ------------------------------------------------------------------------------ outputs
@dataclasses.dataclass
class Translation:
    """One sentence's translation (the best hypothesis) and its n-best alternatives.

    weights [len(tokens) (+1 if finished: the EOS row), len(input_tokens) + 1 (EOS)].
    """

    text: str  # detokenized output ('' for an empty input)
    tokens: list[str]  # output tokens, without EOS
    input_tokens: list[str]  # the source tokens the model read (without EOS)
    weights: np.ndarray
    score: float  # the search's score: log_prob over the length penalty (+ coverage) for beam
    finished: bool = True  # False: cut at max_len before EOS
    unknown: list[str] = dataclasses.field(default_factory=list)  # UNK (or dropped) words
    truncated: bool = False  # input cut: to the input limit (overlong='truncate') or positions
    log_prob: float = 0.0  # the model's log-probability of the tokens (EOS included)
    alternatives: list[Translation] = dataclasses.field(default_factory=list)  # ranks 2..n
    # (source word, target word) links of `weights` (jaxattn.inference.alignment), 0-based
    alignment: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def hypotheses(self) -> list[Translation]:
        """All n-best hypotheses, best first: this one, then `alternatives`."""
        return [self, *self.alternatives]


@dataclasses.dataclass
class Score:
    """A target sentence's log-probability under the model (forced decoding)."""

    log_prob: float  # the sum of token_log_probs
    tokens: list[str]  # the target tokens the model scored, then the EOS label
    token_log_probs: list[float]  # log p(token | previous tokens, source), one per token
    # the forced alignment: (source word, target word) links (jaxattn.inference.alignment)
    alignment: list[tuple[int, int]] = dataclasses.field(default_factory=list)


VIEWS = ("alignment", "cross", "encoder_self", "decoder_self")  # `SentenceViews.grid`'s views


@dataclasses.dataclass
class SentenceViews:
    """One sentence's attention, per layer and head (`Translator.attention_views`): the
    `jaxattn.model.seq2seq.AttentionViews` of its translation, as numpy without the batch axis
    and cut to the real positions: in = len(input_words), out = len(output_words).

    `alignment` is the attention each decode step reports, which `Translation.weights`,
    heatmaps and unknown-word replacement use: an RNN decoder's attention; for the Transformer
    decoder, the cross-attention of layer config.model.alignment_layer (-1, the default: the
    last), the mean of its heads (config.model.alignment_head -1, the default) or one head.
    """

    input_words: list[str]  # heatmap labels (`attention_labels`): the source tokens + '<EOS>'
    output_words: list[str]  # the output tokens (+ '<EOS>' if finished)
    encoder_self: np.ndarray | None  # [L_enc, h, in, in]; None: an RNN encoder
    decoder_self: np.ndarray | None  # [L_dec, h, out, out]; None: an RNN decoder
    cross: np.ndarray  # [L_dec, h, out, in]; an RNN decoder's attention: [1, 1, out, in]
    alignment: np.ndarray  # [out, in]
    translation: Translation  # what was translated (its tokens, score, search weights)

    def grid(self, view: str) -> tuple[np.ndarray, list[str], list[str]]:
        """(weights [layers, heads, rows, columns], column words, row words) of a view in
        `VIEWS` (alignment: one layer of one head), for `plots.attention_layers`; UsageError
        for an unknown view or one this model lacks (self-attention of an RNN part)."""
        if view not in VIEWS:
            raise UsageError(f"view must be one of {', '.join(VIEWS)}, got {view!r}.")
        weights = getattr(self, view)
        if weights is None:
            part = view.split("_")[0]
            raise UsageError(
                f"This model's {part} is an RNN: it has no self-attention to show "
                f"({view}); choose one of {', '.join(v for v in VIEWS if v != view)}."
            )
        if view == "alignment":
            weights = weights[None, None]  # [1, 1, out, in]
        rows = self.input_words if view == "encoder_self" else self.output_words
        columns = self.output_words if view == "decoder_self" else self.input_words
        return weights, columns, rows


def attention_labels(t: Translation) -> tuple[list[str], list[str]]:
    """Heatmap labels: (input tokens + ['<EOS>'], output tokens (+ '<EOS>' if finished)),
    without the word tokenizer's joiner marks."""

    def label(token):
        return token.replace(JOINER, "") or token

    return (
        [label(w) for w in t.input_tokens] + [EOS_LABEL],
        [label(w) for w in t.tokens] + ([EOS_LABEL] if t.finished else []),
    )
