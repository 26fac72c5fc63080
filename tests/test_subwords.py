"""Subwords (data.tokenizer='sentencepiece'): BPE and unigram models trained on the training
split only, per side or joint, with byte fallback; saved in the workdir, used by Translator
with no corpus at hand, and detokenized output scored by sacreBLEU as plain text."""

import os

import numpy as np
import pytest
import sacrebleu

pytest.importorskip("sentencepiece")

from jaxattn import data as data_lib  # noqa: E402
from jaxattn.config import default_data_config, validate_section  # noqa: E402
from jaxattn.data import processing  # noqa: E402
from jaxattn.errors import ConfigError  # noqa: E402
from jaxattn.rundir import layout

SP = "\u2581"  # SentencePiece's space mark


def dates_config(**overrides):
    """The synthetic dates task ('march 5, 2021' -> '2021-03-05') on SentencePiece pieces."""
    c = default_data_config()
    c.name, c.synthetic_task, c.synthetic_sizes = "synthetic", "dates", (300, 20, 20)
    c.tokenizer, c.sp_vocab_size = "sentencepiece", 80
    c.update(overrides)
    return c


def spy_on_trainer(monkeypatch) -> list[list[str]]:
    """The texts every SentencePiece training call receives (training still happens)."""
    calls = []
    real = processing.train_sentencepiece

    def spy(texts, *args, **kwargs):
        texts = list(texts)
        calls.append(texts)
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(processing, "train_sentencepiece", spy)
    return calls


# ------------------------------------------------------------------------------ data level
@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_both_model_types_round_trip_text(model_type):
    data = data_lib.build(dates_config(sp_model_type=model_type))
    assert data.src_tokenizer.sp_model != data.tgt_tokenizer.sp_model  # one model a side
    hyps = [data.decode_target(r) for b in data.eval_batches("test", 8) for r in b["tgt"]]
    assert hyps == data.references("test")
    pieces = data.src_tokenizer.tokenize("friday, march 5, 2021")
    assert any(p.startswith(SP) and len(p) > 2 for p in pieces)  # subwords, not characters
    assert data.src_tokenizer.detokenize(pieces) == "friday, march 5, 2021"


def test_bpe_and_unigram_give_different_models():
    bpe, uni = (data_lib.build(dates_config(sp_model_type=t)) for t in ("bpe", "unigram"))
    assert bpe.src_tokenizer.sp_model != uni.src_tokenizer.sp_model
    assert bpe.src_vocab != uni.src_vocab


def test_only_the_training_split_trains_the_model(monkeypatch):
    calls = spy_on_trainer(monkeypatch)
    data = data_lib.build(dates_config())
    src, tgt = data._texts["train"]
    assert calls == [src, tgt]  # exactly the training sources, then the training targets
    held_out = set(data.sources("validation") + data.sources("test"))
    assert held_out and not held_out & set(calls[0])
    calls.clear()
    data_lib.build(dates_config(sp_joint=True))
    assert calls == [src + tgt]


def test_a_word_seen_only_in_the_test_split_is_no_piece(monkeypatch, tmp_path):
    """A hand-written corpus: 'zebra' occurs only in the test split, so no piece spells it and
    its letters come from other words' pieces."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    animals = ("cat", "dog", "horse", "bird")
    for split, n in (("train", 60), ("validation", 4), ("test", 4)):
        names = ("zebra",) * n if split == "test" else animals
        for lang, fmt in (("de", "Ein {} Nr {} läuft ."), ("en", "A {} number {} runs .")):
            (folder / f"{split}.{lang}").write_text(
                "".join(fmt.format(names[i % len(names)], i) + "\n" for i in range(n)),
                encoding="utf-8",
            )
    c = default_data_config()
    c.name, c.path, c.data_dir = "parallel", str(folder), str(tmp_path / "tfds")
    c.src_lang, c.tgt_lang = "de", "en"
    c.tokenizer, c.sp_vocab_size, c.sp_model_type = "sentencepiece", 60, "bpe"
    calls = spy_on_trainer(monkeypatch)
    data = data_lib.build(c)
    assert not any("zebra" in t for texts in calls for t in texts)
    assert "horse" in " ".join(calls[1])
    assert not any("zeb" in piece or "bra" in piece for piece in data.tgt_vocab.tokens)
    assert data.references("test")[0] == "A zebra number 0 runs ."


def test_joint_model_one_file_one_vocabulary(tmp_path):
    data = data_lib.build(dates_config(sp_joint=True, sp_vocab_size=120))
    assert data.src_tokenizer.sp_model == data.tgt_tokenizer.sp_model
    assert data.src_vocab == data.tgt_vocab
    for side, tok in ((0, data.src_tokenizer), (1, data.tgt_tokenizer)):  # no <unk> anywhere
        for text in data._texts["train"][side][:50]:
            assert data.src_vocab.unk_id not in data.src_vocab.encode(tok.tokenize(text))
    data.save_vocabs(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(
        [
            layout.JOINT_SPM_FILE,
            layout.SRC_VOCAB_FILE,
            layout.TGT_VOCAB_FILE,
            layout.DATA_STATS_FILE,
        ]
    )
    assert layout.JOINT_SPM_FILE in layout.VOCAB_FILES  # fingerprinted by checkpoints
    text = data_lib.load_text_processing(data.config, str(tmp_path))
    assert text.src_tokenizer.sp_model == text.tgt_tokenizer.sp_model == data.src_tokenizer.sp_model
    assert text.src_vocab == text.tgt_vocab == data.src_vocab
    # A per-side config cannot silently reuse the joint files, nor the other way round.
    with pytest.raises(FileNotFoundError, match="src_spm.model"):
        data_lib.load_text_processing(dates_config(sp_joint=False), str(tmp_path))
    data_lib.build(dates_config()).save_vocabs(str(tmp_path / "sides"))
    with pytest.raises(FileNotFoundError, match="joint_spm.model"):
        data_lib.load_text_processing(dates_config(sp_joint=True), str(tmp_path / "sides"))


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_byte_fallback_spells_unseen_characters_in_bytes(model_type):
    unseen = "friday, march 5, 2021 \u00e9t\u00e9 \u732b\u20ac"  # 'été', a cat, euro: unseen
    fallback = data_lib.build(
        dates_config(sp_model_type=model_type, sp_byte_fallback=True, sp_vocab_size=320)
    )
    tok, vocab = fallback.src_tokenizer, fallback.src_vocab
    pieces = tok.tokenize(unseen)
    assert "<0xC3>" in pieces and "<0xA9>" in pieces  # 'é' = C3 A9 in UTF-8
    ids = vocab.encode(pieces)
    assert vocab.unk_id not in ids
    assert tok.detokenize(vocab.decode(ids)) == unseen  # the ids spell the text back
    plain = data_lib.build(dates_config(sp_model_type=model_type))
    assert plain.src_vocab.unk_id in plain.src_vocab.encode(plain.src_tokenizer.tokenize(unseen))


def test_config_rules():
    c = dates_config()
    validate_section("data", c)
    for key, value, match in [
        ("sp_model_type", "wordpiece", "sp_model_type"),
        ("sp_vocab_size", 4, "sp_vocab_size"),
        ("sp_character_coverage", 0.0, "sp_character_coverage"),
        ("sp_byte_fallback", True, "sp_vocab_size"),  # 80 < 256 bytes
        ("vocab_min_freq", 2, "vocab_min_freq"),
    ]:
        with pytest.raises(ConfigError, match=match):
            validate_section("data", dates_config(**{key: value}))
    with pytest.raises(ValueError, match="byte pieces count"):  # too small for the corpus
        data_lib.build(dates_config(sp_byte_fallback=True, sp_vocab_size=260))


# ----------------------------------------------------------------- train -> Translator
@pytest.fixture(
    scope="module", params=[("bpe", False), ("unigram", True)], ids=["bpe", "unigram-joint"]
)
def subword_run(request, tmp_path_factory, synthetic_config):
    """A tiny copy run on subwords (numbers 0..39 make pieces such as '▁3' + '7')."""
    from jaxattn.training.loop import train_and_evaluate

    model_type, joint = request.param
    config = synthetic_config(
        {
            "data.synthetic_task": "copy",
            "data.synthetic_num_symbols": 40,
            "data.synthetic_sizes": (1000, 40, 40),
            "data.tokenizer": "sentencepiece",
            "data.sp_model_type": model_type,
            "data.sp_joint": joint,
            "data.sp_vocab_size": 40,
            "model.hidden": 32,
            "model.embed_dim": 32,
            "train.num_train_steps": 150,
            "train.learning_rate": 1e-2,
            "train.eval_every": 150,
            "train.checkpoint_every": 150,
            "train.progress_bar": False,
        }
    )
    workdir = str(tmp_path_factory.mktemp(f"subwords_{model_type}"))
    _, metrics = train_and_evaluate(config, workdir)
    return workdir, config, metrics, request.param


@pytest.mark.slow
def test_train_then_translate_with_no_corpus(subword_run, monkeypatch):
    from jaxattn.inference.translator import Translator
    from jaxattn.rundir.checkpointer import Checkpointer

    workdir, config, metrics, (model_type, joint) = subword_run
    files = [layout.JOINT_SPM_FILE] if joint else [layout.SRC_SPM_FILE, layout.TGT_SPM_FILE]
    others = {layout.JOINT_SPM_FILE, layout.SRC_SPM_FILE, layout.TGT_SPM_FILE} - set(files)
    assert all(os.path.exists(os.path.join(workdir, f)) for f in files)
    assert not any(os.path.exists(os.path.join(workdir, f)) for f in others)
    with Checkpointer(workdir, read_only=True) as ckpts:  # the model files are fingerprinted
        assert set(files) <= set(ckpts.meta(ckpts.all_steps()[-1])["vocab_sha256"])

    def no_corpus(*args, **kwargs):
        raise AssertionError("inference read the corpus")

    monkeypatch.setattr(data_lib.pipeline, "load_texts", no_corpus)
    monkeypatch.setattr(data_lib.corpus, "load_texts", no_corpus)
    translator = Translator.from_workdir(workdir)
    with open(os.path.join(workdir, files[-1]), "rb") as f:
        assert translator.tgt_tokenizer.sp_model == f.read()

    sentences = ["3 17 1 25", "12 4 39 8 30", "20 20 7"]
    out = translator.translate(sentences)
    pieces = [p for t in out for p in t.tokens]
    assert any(p.startswith(SP) for p in pieces)  # the model speaks in pieces ...
    for t in out:  # ... and the text is detokenized plain text
        assert SP not in t.text and "<" not in t.text
        assert t.text == translator.tgt_tokenizer.detokenize(t.tokens)
        assert t.text == " ".join(t.text.split())
    assert metrics["bleu"] > 40, metrics  # training's validation scored plain text too

    monkeypatch.undo()  # the references are the corpus's test split (copy: target = source)
    data = data_lib.build(config.data)
    sources, refs = data.sources("test"), data.references("test")
    result = translator.evaluate(sources, refs)
    assert not any(SP in h for h in result["hypotheses"])
    assert result["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(result["hypotheses"], [refs]).score
    )
    assert result["bleu"] > 40  # BLEU of '▁3 ▁17'-style output against '3 17' would be ~0
    assert np.mean([h == r for h, r in zip(result["hypotheses"], refs, strict=True)]) > 0.2
