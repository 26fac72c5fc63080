"""Text -> tokens: the tutorial's normalization and filter, and tokenizers for cased corpora.

Tokenizers (`Tokenizer.kind`):
- 'space': split on whitespace (the tutorial, after `normalize_tutorial`).
- 'word': words and single punctuation marks; a token written right after the previous one,
  with no space in between, carries the joiner mark JOINER ('A man, ok.' -> ['A', 'man',
  '￭,', 'ok', '￭.']). `detokenize` undoes it exactly (up to runs of whitespace), so
  hypotheses come back as plain text that sacreBLEU scores like any system's output.
- 'char': characters, with spaces written as SPACE_MARK (for the synthetic date task).
- 'sentencepiece': subwords from a SentencePiece model (`SP_MODEL_TYPES`: unigram or BPE,
  optionally with byte fallback) trained on the training split (needs the optional
  `sentencepiece` package); also exactly reversible.

Invisible format characters (`INVISIBLE`: zero-width space, non-joiner and joiner, word joiner,
zero-width no-break space / byte order mark, soft hyphen, direction marks and embeddings) are
removed before anything else, by every tokenizer and by the tutorial's normalization alike, so
in training, evaluation references and translation: 'ab\u200dcd' is the word 'abcd'. Left in,
the 'word' tokenizer would split a word at each of them (they are neither word characters nor
spaces) and the tutorial's normalization would make them spaces, words no one sees apart.
(They carry meaning only for rendering: ZWNJ in Persian, ZWJ in emoji sequences.)
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable, Sequence

from jaxattn.errors import first_line

# The tutorial's English prefixes, exactly as written there ("i m " comes from "I'm").
ENG_PREFIXES = (
    "i am ",
    "i m ",
    "he is",
    "he s ",
    "she is",
    "she s ",
    "you are",
    "you re ",
    "we are",
    "we re ",
    "they are",
    "they re ",
)
LANG_CODES = {"fra": "fra", "fr": "fra", "eng": "eng", "en": "eng"}  # the tutorial's languages
JOINER = "\uffed"  # '￭': "no space before this token" (OpenNMT's joiner)
SPACE_MARK = "\u2581"  # '▁': a space, in character tokens (SentencePiece's mark)
TOKENIZERS = ("space", "word", "char", "sentencepiece")
SP_MODEL_TYPES = ("unigram", "bpe")  # SentencePiece's algorithms (config.data.sp_model_type)
NORMALIZATIONS = ("tutorial", "none")

# Invisible format characters (Unicode category Cf) that show nothing, removed by `preprocess`
# and `normalize_tutorial`; visible Cf characters (Arabic number signs, ...) are kept.
INVISIBLE = (
    "\u00ad"  # soft hyphen
    "\u200b\u200c\u200d"  # zero-width space, non-joiner, joiner
    "\u200e\u200f"  # left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # directional embeddings and overrides
    "\u2060\u2061\u2062\u2063\u2064"  # word joiner, invisible operators
    "\u2066\u2067\u2068\u2069"  # directional isolates
    "\ufeff"
)  # zero-width no-break space (a byte order mark inside text)
_REMOVE_INVISIBLE = str.maketrans("", "", INVISIBLE)
_COMBINING_DIACRITICS = re.compile("[\u0300-\u036f]")  # a block of category Mn only
_NOT_LETTER = re.compile(r"[^a-zA-Z!?]+")
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


def remove_invisible(s: str) -> str:
    """`s` without its invisible format characters (`INVISIBLE`): 'ab\u200dcd' -> 'abcd'."""
    if s.isascii():  # the common case
        return s
    return s.translate(_REMOVE_INVISIBLE)


def strip_accents(s: str) -> str:
    """Unicode NFD with combining marks (category Mn) dropped: 'déjà' -> 'deja'."""
    if s.isascii():  # nothing to decompose: the common case
        return s
    s = _COMBINING_DIACRITICS.sub("", unicodedata.normalize("NFD", s))  # all Mn: fast path
    if s.isascii():
        return s
    return "".join(c for c in s if unicodedata.category(c) != "Mn")


def normalize_tutorial(s: str) -> str:
    """The current tutorial's normalizeString.

    Lowercase and strip; drop accents; a space before each of '.!?'; every run of characters
    outside [a-zA-Z!?] (so '.', digits, apostrophes and spaces too) becomes one space; strip.
    "J'ai froid." -> 'j ai froid'; 'Ça va ?' -> 'ca va ?'. One addition to the tutorial:
    invisible format characters are removed first (`remove_invisible`), so that they join the
    word they sit in instead of splitting it (none is inside a word of eng-fra.txt: its
    filter and splits are unchanged).
    """
    s = strip_accents(remove_invisible(s).lower().strip())
    s = s.replace(".", " .").replace("!", " !").replace("?", " ?")  # re.sub(r"([.!?])", r" \1")
    return _NOT_LETTER.sub(" ", s).strip()


def tutorial_filter(
    src: str,
    tgt: str,
    *,
    max_length: int = 10,
    prefixes: Sequence[str] = ENG_PREFIXES,
    eng: str | None = None,
) -> bool:
    """The tutorial's filterPair on normalized text: both sides shorter than `max_length` words
    (so each fits `max_length` positions with EOS) and the English side starting with one of
    `prefixes` (an empty tuple: no prefix test). `eng` is the English side; the tutorial's is
    the target (fra->eng), which is the default. `max_length` <= 0: no length test.
    """
    eng = tgt if eng is None else eng
    if max_length > 0 and (len(src.split(" ")) >= max_length or len(tgt.split(" ")) >= max_length):
        return False
    return not prefixes or eng.startswith(tuple(prefixes))


def tutorial_reverse(src_lang: str, tgt_lang: str) -> bool:
    """True for fra->eng (the tutorial's direction: the file's columns turned around), False
    for eng->fra; ValueError for other languages."""
    langs = (LANG_CODES.get(src_lang), LANG_CODES.get(tgt_lang))
    if langs not in (("fra", "eng"), ("eng", "fra")):
        raise ValueError(
            f"The tutorial corpus translates between fra and eng; got "
            f"src_lang={src_lang!r}, tgt_lang={tgt_lang!r}."
        )
    return langs[0] == "fra"


def tutorial_pairs(
    pairs: Iterable[tuple[str, str]],
    *,
    reverse: bool,
    apply_filter: bool,
    max_length: int,
    prefixes: Sequence[str] = ENG_PREFIXES,
):
    """The tutorial's prepareData on (English, French) pairs, for the training corpus and for
    evaluation files alike: each pair turned around if `reverse` (fra->eng), normalized, and
    kept if it passes `tutorial_filter` (when `apply_filter`).

    Yields (index, src, tgt, normalized src, normalized tgt) of the kept pairs; src and tgt
    are the raw text (the model's tokenizer normalizes them again).
    """
    for i, (eng, fra) in enumerate(pairs):
        neng, nfra = normalize_tutorial(eng), normalize_tutorial(fra)
        src, tgt, nsrc, ntgt = (fra, eng, nfra, neng) if reverse else (eng, fra, neng, nfra)
        if apply_filter and not tutorial_filter(
            nsrc, ntgt, max_length=max_length, prefixes=tuple(prefixes), eng=neng
        ):
            continue
        yield i, src, tgt, nsrc, ntgt


def word_tokenize(text: str) -> list[str]:
    """Words (\\w+) and single other characters; JOINER marks a token with no space before it."""
    tokens = []
    end = -1  # end of the previous token; -1: start of text (no joiner on the first token)
    for m in _WORD_OR_MARK.finditer(text):
        tok = m.group()
        tokens.append(JOINER + tok if m.start() == end else tok)
        end = m.end()
    return tokens


def word_detokenize(tokens: Iterable[str]) -> str:
    """Inverse of `word_tokenize`: ' '.join, then glue tokens that carry the joiner."""
    return " ".join(tokens).replace(" " + JOINER, "").replace(JOINER, "")


def char_tokenize(text: str) -> list[str]:
    """Characters of the whitespace-collapsed text, with spaces as SPACE_MARK."""
    return list(" ".join(text.split()).replace(" ", SPACE_MARK))


def char_detokenize(tokens: Iterable[str]) -> str:
    return "".join(tokens).replace(SPACE_MARK, " ").strip()


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    *,
    model_type: str = "unigram",
    byte_fallback: bool = False,
    character_coverage: float = 1.0,
) -> bytes:
    """Trains a SentencePiece model on `texts`; returns the serialized model.

    model_type: one of SP_MODEL_TYPES. vocab_size is a soft limit (a small corpus may give
    fewer pieces). byte_fallback: characters without a piece (unseen in `texts`, or outside
    `character_coverage`) are written as UTF-8 byte pieces '<0xC3>' instead of <unk>, so
    any text round-trips; the 256 byte pieces count in vocab_size. No normalization
    (identity rule), so detokenized output reproduces the text; one thread, so the same texts
    give the same model.
    """
    if model_type not in SP_MODEL_TYPES:
        raise ValueError(
            f"Unknown SentencePiece model_type {model_type!r}; choose one of {SP_MODEL_TYPES}."
        )
    spm = _import_sentencepiece()
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            normalization_rule_name="identity",
            hard_vocab_limit=False,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:  # e.g. "Vocabulary size is smaller than required_chars"
        why = first_line(e, typed=False).rstrip(".")
        hint = " (with byte fallback the 256 byte pieces count too)" if byte_fallback else ""
        raise ValueError(
            f"SentencePiece training failed (sp_vocab_size={vocab_size}): {why}. "
            f"Raise sp_vocab_size{hint}."
        ) from None
    return model.getvalue()


def sentencepiece_pieces(sp_model: bytes) -> list[str]:
    """The model's pieces in id order, byte pieces included, <unk> and control symbols left
    out: the vocabulary of a SentencePiece side (every piece the tokenizer can emit)."""
    sp = _import_sentencepiece().SentencePieceProcessor(model_proto=sp_model)
    return [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_unknown(i) or sp.is_control(i))
    ]


def _import_sentencepiece():
    try:
        import sentencepiece
    except ImportError as e:
        raise ImportError(
            "tokenizer='sentencepiece' needs the sentencepiece package: "
            "pip install 'sentencepiece>=0.2,<0.3' (or use tokenizer='word')."
        ) from e
    return sentencepiece


class Tokenizer:
    """Raw text -> tokens -> text, for one side of a corpus.

    `preprocess` gives the text a perfect model reproduces (invisible format characters
    removed, normalized, optionally lowercased, runs of whitespace collapsed);
    `detokenize(tokenize(t)) == preprocess(t)` for the 'space', 'word' and 'char' kinds.
    Picklable (grain may send it to workers).
    """

    def __init__(
        self,
        kind: str,
        *,
        normalize: str = "none",
        lowercase: bool = False,
        sp_model: bytes | None = None,
    ):
        if kind not in TOKENIZERS:
            raise ValueError(f"Unknown tokenizer {kind!r}; choose one of {TOKENIZERS}.")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalize {normalize!r}; choose one of {NORMALIZATIONS}.")
        if kind == "sentencepiece" and sp_model is None:
            raise ValueError("tokenizer='sentencepiece' needs a trained model (sp_model).")
        self.kind, self.normalize, self.lowercase = kind, normalize, lowercase
        self.sp_model = sp_model
        self._sp = None  # SentencePieceProcessor, made on first use

    def __getstate__(self):
        return {**self.__dict__, "_sp": None}

    def __repr__(self):
        return f"Tokenizer({self.kind!r}, normalize={self.normalize!r}, lowercase={self.lowercase})"

    @property
    def sp(self):
        if self._sp is None:
            self._sp = _import_sentencepiece().SentencePieceProcessor(model_proto=self.sp_model)
        return self._sp

    def preprocess(self, text: str) -> str:
        if self.normalize == "tutorial":
            return normalize_tutorial(text)  # lowercase already, single spaces
        text = remove_invisible(text)
        if self.lowercase:
            text = text.lower()
        return " ".join(text.split())

    def tokenize(self, text: str) -> list[str]:
        text = self.preprocess(text)
        if self.kind == "space":
            return text.split()
        if self.kind == "word":
            return word_tokenize(text)
        if self.kind == "char":
            return char_tokenize(text)
        return self.sp.encode(text, out_type=str)

    def detokenize(self, tokens: Sequence[str]) -> str:
        if self.kind == "space":
            return " ".join(tokens)
        if self.kind == "word":
            return word_detokenize(tokens)
        if self.kind == "char":
            return char_detokenize(tokens)
        return self.sp.decode_pieces(list(tokens))
