"""A run's text processing: tokenizers and vocabularies for each side, built from the training
split or loaded from the files a run saved (WORKDIR/src_vocab.txt, ...), so that inference
prepares new text exactly as training did, without reading the corpus.

Subwords (tokenizer='sentencepiece'): a SentencePiece model per side, WORKDIR/src_spm.model
and tgt_spm.model, or with data.sp_joint one model for both, WORKDIR/joint_spm.model (then
src_vocab.txt and tgt_vocab.txt hold the same pieces). Every file is written atomically and
fingerprinted by the run's checkpoints. The file names are the run directory's
(jaxattn.rundir.layout)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import ml_collections

from jaxattn.data.corpus import resolve
from jaxattn.data.text import Tokenizer, sentencepiece_pieces, train_sentencepiece
from jaxattn.data.vocab import Vocab
from jaxattn.rundir.files import write_bytes
from jaxattn.rundir.layout import SIDE_FILES, SRC_VOCAB_FILE, TGT_VOCAB_FILE, spm_file


class TextProcessing(NamedTuple):
    """A run's text <-> ids for new input, from its data config and saved vocabularies."""

    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocab
    tgt_vocab: Vocab
    max_length: int  # the corpus filter's limit (config.data.max_length resolved; 0 = none)


def _tokenizer(cfg, resolved: dict, sp_model: bytes | None = None) -> Tokenizer:
    return Tokenizer(
        resolved["tokenizer"],
        normalize=resolved["normalize"],
        lowercase=cfg.lowercase,
        sp_model=sp_model,
    )


def _load_side(cfg, resolved: dict, vocab_dir: str, side: str) -> tuple[Tokenizer, Vocab]:
    """(tokenizer, vocab) of one side ('src' or 'tgt') from the files in vocab_dir."""
    vocab_name = SIDE_FILES[side][0]
    sp_model = None
    if resolved["tokenizer"] == "sentencepiece":
        spm_name = spm_file(cfg, side)
        spm_path = os.path.join(vocab_dir, spm_name)
        if not os.path.exists(spm_path):
            raise FileNotFoundError(
                f"{vocab_dir} has no {spm_name} (beside {vocab_name}), which "
                f"tokenizer='sentencepiece' with sp_joint={cfg.sp_joint} needs."
            )
        with open(spm_path, "rb") as f:
            sp_model = f.read()
    vocab_file = os.path.join(vocab_dir, vocab_name)
    vocab = Vocab.load(vocab_file)
    if vocab.tutorial_ids != cfg.tutorial_ids:
        layout = "tutorial" if vocab.tutorial_ids else "default"
        raise ValueError(
            f"{vocab_file} has the {layout} id layout but "
            f"config.data.tutorial_ids={cfg.tutorial_ids}."
        )
    return _tokenizer(cfg, resolved, sp_model), vocab


def load_text_processing(cfg: ml_collections.ConfigDict, vocab_dir: str) -> TextProcessing:
    """The tokenizers and vocabularies `build(cfg, vocab_dir=vocab_dir)` would use, made from
    the files `Data.save_vocabs` wrote there, without reading the corpus (for inference)."""
    resolved = resolve(cfg)
    (src_tok, src_vocab), (tgt_tok, tgt_vocab) = (
        _load_side(cfg, resolved, vocab_dir, side) for side in ("src", "tgt")
    )
    return TextProcessing(src_tok, tgt_tok, src_vocab, tgt_vocab, resolved["max_length"])


def save_text_processing(cfg, tp: TextProcessing, directory: str) -> None:
    """Writes the vocabularies and SentencePiece models (one for sp_joint) that
    `load_text_processing(cfg, directory)` reads."""
    os.makedirs(directory, exist_ok=True)
    tp.src_vocab.save(os.path.join(directory, SRC_VOCAB_FILE))
    tp.tgt_vocab.save(os.path.join(directory, TGT_VOCAB_FILE))
    models = {
        spm_file(cfg, side): tok.sp_model  # sp_joint: one file
        for side, tok in (("src", tp.src_tokenizer), ("tgt", tp.tgt_tokenizer))
        if tok.sp_model is not None
    }
    for name, model in models.items():
        write_bytes(os.path.join(directory, name), model)


def _train_sentencepiece(cfg, resolved: dict, texts: Iterable[str]) -> bytes:
    """A SentencePiece model trained on `texts` (preprocessed as the tokenizer will)."""
    plain = Tokenizer("space", normalize=resolved["normalize"], lowercase=cfg.lowercase)
    return train_sentencepiece(
        (plain.preprocess(t) for t in texts),
        cfg.sp_vocab_size,
        model_type=cfg.sp_model_type,
        byte_fallback=cfg.sp_byte_fallback,
        character_coverage=cfg.sp_character_coverage,
    )


def build_processing(
    cfg, resolved: dict, train: tuple[Sequence[str], Sequence[str]], vocab_dir: str | None
) -> TextProcessing:
    """A run's text processing: loaded from vocab_dir when it holds the vocabularies, else
    built from `train` (sources, targets), the training split, the only text a SentencePiece
    model or a vocabulary is made from: its first data.vocab_sample pairs (0 = all), read in
    order, one pass a side (and one more a side for a joint model), never held as a list.

    SentencePiece: a model per side (or one for both, sp_joint), and the vocabulary is the
    model's pieces (byte pieces included). Other tokenizers: the vocabulary holds the training
    tokens seen vocab_min_freq times or more.
    """
    if vocab_dir and os.path.exists(os.path.join(vocab_dir, SRC_VOCAB_FILE)):
        return load_text_processing(cfg, vocab_dir)
    sample = cfg.get("vocab_sample", 0) or None  # old configs lack the field

    def texts(side: int) -> Iterator[str]:
        return itertools.islice(train[side], sample)

    sides = []
    if resolved["tokenizer"] != "sentencepiece":
        for side in (0, 1):
            tok = _tokenizer(cfg, resolved)
            sides.append(
                (
                    tok,
                    Vocab.build(
                        map(tok.tokenize, texts(side)),
                        min_freq=cfg.vocab_min_freq,
                        max_size=cfg.vocab_max_size or None,
                        order=cfg.vocab_order,
                        tutorial_ids=cfg.tutorial_ids,
                    ),
                )
            )
    else:
        joint = (
            _train_sentencepiece(cfg, resolved, itertools.chain(texts(0), texts(1)))
            if cfg.sp_joint
            else None
        )
        for side in (0, 1):
            tok = _tokenizer(
                cfg, resolved, joint or _train_sentencepiece(cfg, resolved, texts(side))
            )
            sides.append(
                (
                    tok,
                    Vocab.build(
                        [sentencepiece_pieces(tok.sp_model)], tutorial_ids=cfg.tutorial_ids
                    ),
                )
            )
    (src_tok, src_vocab), (tgt_tok, tgt_vocab) = sides
    return TextProcessing(src_tok, tgt_tok, src_vocab, tgt_vocab, resolved["max_length"])
