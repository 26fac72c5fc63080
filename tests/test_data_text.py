"""Text normalization, the tutorial filter, tokenizers and the vocabulary."""

import pickle

import numpy as np
import pytest

from jaxattn.data.text import (
    ENG_PREFIXES,
    JOINER,
    Tokenizer,
    normalize_tutorial,
    strip_accents,
    tutorial_filter,
    word_detokenize,
    word_tokenize,
)
from jaxattn.data.vocab import Vocab


# ------------------------------------------------------------------------- normalization
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Go.", "go"),  # '.' gets a space, then is replaced like any non-letter
        ("Run!", "run !"),
        ("Qui ?", "qui ?"),
        ("J'ai froid.", "j ai froid"),  # apostrophes become spaces
        ("I'm OK.", "i m ok"),
        ("Ça va, très bien!", "ca va tres bien !"),  # accents dropped, comma gone
        ("  Où   est-il ?  ", "ou est il ?"),
        ("Il a 20 ans.", "il a ans"),  # digits are not letters
        ("Wow!?", "wow ! ?"),
        ("Cœur «naïf» 10€", "c ur naif"),  # œ is no accent: it becomes a space
        ("", ""),
    ],
)
def test_normalize_tutorial(raw, expected):
    assert normalize_tutorial(raw) == expected


def test_strip_accents_drops_only_combining_marks():
    assert strip_accents("déjà Noël, façade") == "deja Noel, facade"
    assert strip_accents("e\u0301") == "e"  # already decomposed
    assert strip_accents("œ") == "œ"  # not a mark


def test_normalize_is_idempotent():
    s = normalize_tutorial("Êtes-vous prêts ? Oui !")
    assert s == "etes vous prets ? oui !"
    assert normalize_tutorial(s) == s


# -------------------------------------------------------------------------------- filter
def test_tutorial_filter():
    assert tutorial_filter("je suis calme", "i m calm")
    assert tutorial_filter("elle est ici", "she is here")
    assert not tutorial_filter("je cours", "i run")  # no prefix
    assert not tutorial_filter("nous courons", "we run")  # "we are"/"we re " only
    nine = " ".join(["a"] * 9)
    assert tutorial_filter(nine, "i m " + " ".join(["x"] * 7))  # 9 words: kept
    assert not tutorial_filter(nine + " a", "i m ok")  # 10 source words: too long
    assert not tutorial_filter("ok", "i m " + " ".join(["x"] * 8))  # 10 target words
    assert tutorial_filter("a b c d e f g h i j k", "i m ok", max_length=0)  # no length test
    assert tutorial_filter("je cours", "i run", prefixes=())  # no prefix test
    assert tutorial_filter("i m calm", "je suis calme", eng="i m calm")  # eng->fra
    assert "he is" in ENG_PREFIXES and "i m " in ENG_PREFIXES


# ----------------------------------------------------------------------------- tokenizers
def test_word_tokenizer_round_trip():
    text = 'A man, in a "blue" T-shirt, says: it\'s 5.30 p.m.!'
    tokens = word_tokenize(text)
    assert tokens[:4] == ["A", "man", JOINER + ",", "in"]
    assert JOINER + "blue" in tokens and JOINER + "s" in tokens
    assert word_detokenize(tokens) == text
    assert word_detokenize([JOINER + ".", "Hi"]) == ". Hi"  # a stray joiner is harmless


@pytest.mark.parametrize("kind", ["space", "word", "char"])
def test_tokenizer_detokenize_inverts_tokenize(kind):
    tok = Tokenizer(kind)
    for text in ["Ein Mann  schläft.", "Two dogs, (one black) run!", "  x  "]:
        assert tok.detokenize(tok.tokenize(text)) == tok.preprocess(text) == " ".join(text.split())


def test_tokenizer_options():
    assert Tokenizer("space", normalize="tutorial").tokenize("J'ai froid.") == ["j", "ai", "froid"]
    assert Tokenizer("word", lowercase=True).tokenize("Hi, Bob") == ["hi", JOINER + ",", "bob"]
    assert Tokenizer("char").tokenize("ab c") == ["a", "b", "\u2581", "c"]
    with pytest.raises(ValueError, match="Unknown tokenizer"):
        Tokenizer("bpe")
    with pytest.raises(ValueError, match="trained model"):
        Tokenizer("sentencepiece")


def test_sentencepiece_round_trip():
    pytest.importorskip("sentencepiece")
    from jaxattn.data.text import train_sentencepiece

    texts = [f"A man number {i} rides a horse, quickly." for i in range(200)]
    model = train_sentencepiece(texts, vocab_size=60)
    assert model == train_sentencepiece(texts, vocab_size=60)  # deterministic
    tok = pickle.loads(pickle.dumps(Tokenizer("sentencepiece", sp_model=model)))
    pieces = tok.tokenize("A man rides a horse.")
    assert len(pieces) > 1
    assert tok.detokenize(pieces) == "A man rides a horse."


# ----------------------------------------------------------------------------- vocabulary
def test_vocab_default_layout_and_round_trip():
    v = Vocab.build([["a", "b"], ["b", "c", "a"]])
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.tokens == ("<pad>", "<s>", "</s>", "<unk>", "a", "b", "c")
    assert len(v) == 7
    assert v.encode(["c", "a", "zzz"]) == [6, 4, 3]
    assert v.decode([1, 6, 4, 3, 2, 5, 0]) == ["c", "a", "<unk>"]  # stops at EOS
    assert v.decode(np.array([1, 6, 2, 0])) == ["c"]
    assert v.decode([1, 6, 2, 0], strip_special=False) == ["<s>", "c", "</s>"]


def test_vocab_tutorial_layout():
    v = Vocab.build([["i", "m", "ok"], ["i", "run"]], tutorial_ids=True)
    assert v.tokens[:2] == ("SOS", "EOS")
    assert (v.bos_id, v.eos_id, v.pad_id, v.unk_id) == (0, 1, 0, None)
    assert v.encode(["i", "run"]) == [2, 5]
    assert v.decode([2, 5, 1, 0, 0]) == ["i", "run"]
    with pytest.raises(ValueError, match="no UNK"):
        v.encode(["unknown"])


def test_vocab_min_freq_max_size_and_order():
    data = [["x", "y", "y"], ["z", "z", "z", "y"], ["w"]]  # counts: x1 y3 z3 w1
    assert Vocab.build(data).tokens[4:] == ("x", "y", "z", "w")  # first appearance
    assert Vocab.build(data, order="freq").tokens[4:] == ("y", "z", "x", "w")  # ties: first
    assert Vocab.build(data, min_freq=2).tokens[4:] == ("y", "z")
    assert Vocab.build(data, max_size=6, order="freq").tokens[4:] == ("y", "z")
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(data, max_size=4)
    with pytest.raises(ValueError, match="order"):
        Vocab.build(data, order="alphabetical")


def test_vocab_save_load(tmp_path):
    for tutorial_ids in (False, True):
        v = Vocab.build([["é", "ça", "<unk>"], ["x\u2028y"]], tutorial_ids=tutorial_ids)
        path = tmp_path / f"vocab_{tutorial_ids}.txt"
        v.save(path)
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[0] == ("SOS" if tutorial_ids else "<pad>")
        w = Vocab.load(path)
        assert w == v and w.tutorial_ids == tutorial_ids and w.unk_id == v.unk_id


def test_vocab_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No vocabulary file"):
        Vocab.load(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\nworld\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a vocabulary file"):
        Vocab.load(bad)
    with pytest.raises(ValueError, match="twice"):
        Vocab(["<pad>", "<s>", "</s>", "<unk>", "a", "a"])
