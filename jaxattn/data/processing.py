"""A run's text processing: tokenizers and vocabularies for each side, built from the training
split or loaded from the files a run saved (WORKDIR/src_vocab.txt, ...), so that inference
prepares new text exactly as training did, without reading the corpus."""

from __future__ import annotations

import os
from typing import NamedTuple

import ml_collections
import numpy as np

from jaxattn.data.corpus import resolve
from jaxattn.data.text import Tokenizer, train_sentencepiece
from jaxattn.data.vocab import Vocab

SRC_VOCAB_FILE, TGT_VOCAB_FILE = "src_vocab.txt", "tgt_vocab.txt"
SRC_SPM_FILE, TGT_SPM_FILE = "src_spm.model", "tgt_spm.model"
VOCAB_FILES = (SRC_VOCAB_FILE, TGT_VOCAB_FILE, SRC_SPM_FILE, TGT_SPM_FILE)  # what a run reuses
SIDE_FILES = {"src": (SRC_VOCAB_FILE, SRC_SPM_FILE), "tgt": (TGT_VOCAB_FILE, TGT_SPM_FILE)}


class TextProcessing(NamedTuple):
    """A run's text <-> ids for new input, from its data config and saved vocabularies."""

    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocab
    tgt_vocab: Vocab
    max_length: int  # the corpus filter's limit (config.data.max_length resolved; 0 = none)


def _tokenizer(cfg, resolved: dict, sp_model: bytes | None = None) -> Tokenizer:
    return Tokenizer(resolved["tokenizer"], normalize=resolved["normalize"],
                     lowercase=cfg.lowercase, sp_model=sp_model)


def _load_side(cfg, resolved: dict, vocab_dir: str, side: str) -> tuple[Tokenizer, Vocab]:
    """(tokenizer, vocab) of one side ('src' or 'tgt') from the files in vocab_dir."""
    vocab_name, spm_name = SIDE_FILES[side]
    sp_model = None
    if resolved["tokenizer"] == "sentencepiece":
        spm_file = os.path.join(vocab_dir, spm_name)
        if not os.path.exists(spm_file):
            raise FileNotFoundError(f"{vocab_dir} has no {spm_name} (beside {vocab_name}), "
                                    "which tokenizer='sentencepiece' needs.")
        with open(spm_file, "rb") as f:
            sp_model = f.read()
    vocab_file = os.path.join(vocab_dir, vocab_name)
    vocab = Vocab.load(vocab_file)
    if vocab.tutorial_ids != cfg.tutorial_ids:
        layout = "tutorial" if vocab.tutorial_ids else "default"
        raise ValueError(f"{vocab_file} has the {layout} id layout but "
                         f"config.data.tutorial_ids={cfg.tutorial_ids}.")
    return _tokenizer(cfg, resolved, sp_model), vocab


def load_text_processing(cfg: ml_collections.ConfigDict, vocab_dir: str) -> TextProcessing:
    """The tokenizers and vocabularies `build(cfg, vocab_dir=vocab_dir)` would use, made from
    the files `Data.save_vocabs` wrote there, without reading the corpus (for inference)."""
    resolved = resolve(cfg)
    (src_tok, src_vocab), (tgt_tok, tgt_vocab) = (_load_side(cfg, resolved, vocab_dir, side)
                                                  for side in ("src", "tgt"))
    return TextProcessing(src_tok, tgt_tok, src_vocab, tgt_vocab, resolved["max_length"])


def side_processing(cfg, resolved: dict, texts: list[str], side: str,
                    vocab_dir: str | None) -> tuple[Tokenizer, Vocab, np.ndarray]:
    """(tokenizer, vocab, int[len(texts)] token counts) for one side of the training split:
    loaded from vocab_dir when it holds the side's vocabulary, else built from `texts`."""
    saved = bool(vocab_dir) and os.path.exists(os.path.join(vocab_dir, SIDE_FILES[side][0]))
    counts = np.empty(len(texts), np.int64)

    def token_lists(tok):
        for i, t in enumerate(texts):
            tokens = tok.tokenize(t)
            counts[i] = len(tokens)
            yield tokens

    if saved:
        tok, vocab = _load_side(cfg, resolved, vocab_dir, side)
        for _ in token_lists(tok):
            pass
        return tok, vocab, counts
    sp_model = None
    if resolved["tokenizer"] == "sentencepiece":
        plain = Tokenizer("space", normalize=resolved["normalize"], lowercase=cfg.lowercase)
        sp_model = train_sentencepiece((plain.preprocess(t) for t in texts), cfg.sp_vocab_size)
    tok = _tokenizer(cfg, resolved, sp_model)
    vocab = Vocab.build(token_lists(tok), min_freq=cfg.vocab_min_freq,
                        max_size=cfg.vocab_max_size or None, order=cfg.vocab_order,
                        tutorial_ids=cfg.tutorial_ids)
    return tok, vocab, counts
