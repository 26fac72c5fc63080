"""Word alignments: hard links from attention weights, the Pharaoh format, gold links and AER.

A hard alignment links each target word to the source word it attends to most (the argmax,
as fairseq's and Marian's attention alignments do), written in the Pharaoh format: space
separated ``i-j`` pairs, i the source word and j the target word, both 0-based::

    weights [target tokens (+ EOS), source tokens + EOS]  ->  '0-0 1-1 3-2 2-3'

`hard_alignment` owns the rule, which every output path takes (`Translation.alignment`,
`Score.alignment`, the scripts' --print_alignment, scripts/align_eval.py):

- EOS: the source EOS column is left out before the argmax (every target word gets a link,
  to a real source word), and the target EOS row is never output.
- Words, not tokens: the indices are those of the detokenized text split on whitespace.
  Subword tokens are merged first (`word_ids` says which word each token belongs to): the
  weights of a source word's pieces are summed (the attention the word gets), those of a target
  word's pieces averaged (what the word attends to), then the argmax is taken per target word.
  The source words are the tokens the model read (unknown words that the tutorial id layout
  drops are not counted).

Gold alignments (`read_gold`) are a file of ``source ||| target ||| links`` lines, links as
``i-j`` (sure) and ``i?j`` or ``i-j-P`` (possible; ``i-j-S`` is sure too), ``#`` comment lines.
`alignment_scores` gives the alignment error rate of Och and Ney (2003), with S the sure and P
the possible links (S within P) and A the links found::

    precision = |A & P| / |A|    recall = |A & S| / |S|
    AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)

summed over the corpus before dividing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from jaxattn.data.text import JOINER, SPACE_MARK
from jaxattn.errors import DataError

Link = tuple[int, int]  # (source word, target word), 0-based
SEPARATOR = " ||| "  # between a sentence and its alignment (Marian's and fast_align's)
_LINK = re.compile(r"^(\d+)(?:-(\d+)(?:-([SP]))?|\?(\d+))$")  # i-j, i-j-S, i-j-P or i?j


# ------------------------------------------------------------------------------ from attention
def word_ids(tokens: Sequence[str], kind: str) -> list[int | None]:
    """The word (0-based, in the detokenized text split on whitespace) each token belongs to;
    None for a token that is no part of a word (the 'char' tokenizer's space marks). kind: a
    `jaxattn.data.text.Tokenizer.kind`:

    - 'space': one word a token;
    - 'word': a token carrying JOINER is glued to the one before it ('don', '￭'', '￭t' is one);
    - 'char': characters between space marks;
    - 'sentencepiece': a piece starting with '▁' starts a word, the others continue it.
    """
    out: list[int | None] = []
    word, started = -1, False  # the current word; whether it has a visible character yet
    for k, tok in enumerate(tokens):
        if kind == "space":
            new, visible = True, True
        elif kind == "word":
            new, visible = k == 0 or not tok.startswith(JOINER), True
        elif kind == "char":
            if tok == SPACE_MARK:
                out.append(None)
                started = False
                continue
            new, visible = not started, True
        elif kind == "sentencepiece":
            new, visible = k == 0 or tok.startswith(SPACE_MARK), bool(tok.strip(SPACE_MARK))
        else:
            raise ValueError(f"Unknown tokenizer kind {kind!r}.")
        if new:
            started = False
        if visible and not started:  # a '▁' piece alone starts a word its next piece fills
            word, started = word + 1, True
        out.append(word if started else None)
    return out


def merge_words(
    weights: np.ndarray, src_ids: Sequence[int | None], tgt_ids: Sequence[int | None]
) -> np.ndarray:
    """Token weights [T, S] -> word weights [target words, source words]: a source word's
    columns summed, a target word's rows averaged; tokens of no word (None) left out."""
    n_src = 1 + max((i for i in src_ids if i is not None), default=-1)
    n_tgt = 1 + max((j for j in tgt_ids if j is not None), default=-1)
    by_src = np.zeros((len(src_ids), n_src), np.float64)  # [S, source words]
    for k, i in enumerate(src_ids):
        if i is not None:
            by_src[k, i] = 1.0
    by_tgt = np.zeros((n_tgt, len(tgt_ids)), np.float64)  # [target words, T]
    for k, j in enumerate(tgt_ids):
        if j is not None:
            by_tgt[j, k] = 1.0
    by_tgt /= np.maximum(by_tgt.sum(axis=1, keepdims=True), 1.0)  # the mean of a word's rows
    return by_tgt @ np.asarray(weights, np.float64) @ by_src


def hard_alignment(
    weights: np.ndarray,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    src_kind: str = "space",
    tgt_kind: str = "space",
) -> list[Link]:
    """The Pharaoh links (source word, target word) of attention weights, sorted.

    weights [len(tgt_tokens) (+1: the EOS row), len(src_tokens) + 1 (EOS)] or wider: rows
    past the target tokens and columns past the source tokens (EOS, padding) are cut; src_kind
    and tgt_kind: the tokenizers' kinds (`word_ids`). Each target word is linked to the source
    word with the most weight (ties: the first); see the module docstring."""
    weights = np.asarray(weights)
    if (
        weights.ndim != 2
        or weights.shape[0] < len(tgt_tokens)
        or (weights.shape[1] < len(src_tokens))
    ):
        raise ValueError(
            f"weights {list(weights.shape)} do not cover {len(tgt_tokens)} target x "
            f"{len(src_tokens)} source tokens."
        )
    if not len(src_tokens) or not len(tgt_tokens):
        return []
    words = merge_words(
        weights[: len(tgt_tokens), : len(src_tokens)],
        word_ids(src_tokens, src_kind),
        word_ids(tgt_tokens, tgt_kind),
    )  # [target words, source words]
    if not words.size:
        return []
    return [(int(i), j) for j, i in enumerate(words.argmax(axis=1))]


def diagonal_alignment(n_src: int, n_tgt: int) -> list[Link]:
    """The baseline that reads no model: target word j linked to the source word at the same
    relative position, floor((j + 0.5) * n_src / n_tgt)."""
    if not n_src:
        return []
    return [(min(n_src - 1, int((j + 0.5) * n_src / n_tgt)), j) for j in range(n_tgt)]


# ------------------------------------------------------------------------------ Pharaoh text
def format_links(links) -> str:
    """'0-0 1-2 ...': links sorted by target word, then source word."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda x: (x[1], x[0])))


def with_alignment(text: str, links) -> str:
    """'TEXT ||| 0-0 1-2': a line and its alignment (Marian's --alignment output)."""
    return f"{text}{SEPARATOR}{format_links(links)}"


def parse_links(
    text: str, where: str, n_src: int | None = None, n_tgt: int | None = None
) -> tuple[set[Link], set[Link]]:
    """(sure, possible) links of a Pharaoh line; possible includes the sure ones (S within P).
    ``i-j`` and ``i-j-S`` are sure, ``i?j`` and ``i-j-P`` possible. DataError naming `where`
    (e.g. 'gold.txt line 7') for a malformed link or an index outside n_src x n_tgt words."""
    sure, possible = set(), set()
    for item in text.split():
        m = _LINK.match(item)
        if not m:
            raise DataError(
                f"{where}: {item!r} is not a link; write i-j (sure) or i?j / i-j-P "
                "(possible), i the source word and j the target word, 0-based."
            )
        i, j = int(m.group(1)), int(m.group(2) or m.group(4))
        for index, n, side in ((i, n_src, "source"), (j, n_tgt, "target")):
            if n is not None and index >= n:
                raise DataError(
                    f"{where}: link {item!r} names {side} word {index}, but the {side} "
                    f"has {n} word(s) (0-based: 0..{n - 1})."
                )
        if m.group(2) is not None and m.group(3) != "P":
            sure.add((i, j))
        possible.add((i, j))
    return sure, possible


@dataclasses.dataclass(frozen=True)
class GoldPair:
    """A sentence pair with its gold links; source and target as the model reads them."""

    source: str
    target: str
    sure: frozenset
    possible: frozenset  # includes `sure`


def read_gold(path: str) -> list[GoldPair]:
    """The pairs of a gold file: ``source ||| target ||| links`` a line (links may be empty),
    blank and ``#`` lines skipped; word indices are checked against the whitespace-split
    sentences. DataError naming the line for anything else."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Cannot read the gold alignments {path}: {e}.") from None
    pairs = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path} line {n}"
        parts = line.split("|||")
        if len(parts) != 3:
            raise DataError(
                f"{where}: expected 'source ||| target ||| links' (3 fields), got {len(parts)}."
            )
        source, target, links = (p.strip() for p in parts)
        if not source or not target:
            raise DataError(f"{where}: the source or the target is empty.")
        sure, possible = parse_links(links, where, len(source.split()), len(target.split()))
        pairs.append(GoldPair(source, target, frozenset(sure), frozenset(possible)))
    if not pairs:
        raise DataError(f"{path}: no sentence pairs (a 'source ||| target ||| links' a line).")
    return pairs


# ------------------------------------------------------------------------------ AER
def alignment_scores(alignments: Sequence, gold: Sequence[GoldPair]) -> dict:
    """{'aer', 'precision', 'recall', 'links', 'sure', 'possible', 'pairs'} of the links
    found (one collection of (i, j) each pair) against the gold pairs, summed over the corpus
    (see the module docstring). An empty A scores precision 0; an empty S recall 0."""
    if len(alignments) != len(gold):
        raise ValueError(f"{len(alignments)} alignments for {len(gold)} gold pairs.")
    a = s = p = a_s = a_p = 0
    for links, g in zip(alignments, gold, strict=True):
        links = set(links)
        a, s, p = a + len(links), s + len(g.sure), p + len(g.possible)
        a_s, a_p = a_s + len(links & g.sure), a_p + len(links & g.possible)
    return dict(
        aer=1.0 - (a_s + a_p) / (a + s) if a + s else 0.0,
        precision=a_p / a if a else 0.0,
        recall=a_s / s if s else 0.0,
        links=a,
        sure=s,
        possible=p,
        pairs=len(gold),
    )
