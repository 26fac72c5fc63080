"""Inference library: restoring a run, translating, beam vs greedy, attention, heatmaps, scores,
evaluation input (jaxattn.data.readers, data.read_tsv, eval_input.load_pairs). One tiny
synthetic run (reverse the symbols), trained once per session."""

import os

import jax
import ml_collections
import numpy as np
import pytest

from jaxattn.config import default_data_config
from jaxattn.data import load_text_processing, read_tsv, readers
from jaxattn.errors import InferenceError
from jaxattn.inference import translator as inference
from jaxattn.inference.eval_input import load_pairs
from jaxattn.inference.translator import Translator
from jaxattn.rundir.run import load_config
from jaxattn.tools import plots

SYMBOLS = [str(i) for i in range(12)]  # configs/synthetic.py: 12 symbols, lengths 3..8


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run.workdir


@pytest.fixture(scope="module")
def translator(run):
    return Translator.from_workdir(run)


def _sentences(n=16, seed=0):
    """n random inputs of 3..8 symbols (the same n and lengths: the same compiled shapes)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(SYMBOLS, 8 if i == 0 else rng.integers(3, 9))) for i in range(n)]


@pytest.mark.slow
def test_round_trip_reverses(translator):
    sentences = _sentences()
    out = translator.translate(sentences)
    assert len(out) == len(sentences)
    correct = [t.text == " ".join(s.split()[::-1]) for s, t in zip(sentences, out, strict=True)]
    assert np.mean(correct) >= 0.9
    for s, t in zip(sentences, out, strict=True):  # order kept although batched by length
        assert t.input_tokens == s.split()
        assert t.text == " ".join(t.tokens)
        assert t.finished and t.score <= 0
        assert t.weights.shape == (len(t.tokens) + 1, len(t.input_tokens) + 1)


@pytest.mark.slow
def test_empty_unknown_and_long_input(translator):
    long = " ".join(SYMBOLS * 4)  # 48 symbols; training had at most 8
    empty, blank, unknown, far = translator.translate(
        ["", "   ", "1 2 zz 3", long], max_input_len=48
    )  # over the run's 16
    assert empty.text == blank.text == "" and empty.tokens == [] and empty.weights.shape[0] == 0
    assert unknown.unknown == ["zz"] and unknown.input_tokens == ["1", "2", "zz", "3"]
    assert unknown.weights.shape[1] == 5
    assert far.weights.shape[1] == 49  # no cut, no crash; decoding length adapts
    assert len(far.tokens) <= translator.decode_len(translator.padded_len(49), None)


@pytest.mark.slow
def test_beam_search_through_library(translator):
    sentences = _sentences(seed=1)
    greedy = translator.translate(sentences)
    beam1 = translator.translate(sentences, beam_size=1)
    beam4 = translator.translate(sentences, beam_size=3)
    assert [t.text for t in beam1] == [t.text for t in greedy]
    for g, b in zip(greedy, beam4, strict=True):
        assert b.score >= g.score - 1e-4  # beam search keeps the greedy hypothesis
        assert b.weights.shape == (len(b.tokens) + 1, len(b.input_tokens) + 1)
    assert np.mean([g.text == b.text for g, b in zip(greedy, beam4, strict=True)]) >= 0.8


@pytest.mark.slow
def test_attention_for_notebooks(translator):
    inputs, outputs, weights = translator.attention("3 7 1 5")
    assert inputs == ["3", "7", "1", "5", "<EOS>"]
    assert outputs[-1] == "<EOS>"
    assert weights.shape == (len(outputs), len(inputs))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(InferenceError, match="Nothing to translate"):
        translator.attention("")


@pytest.mark.slow
def test_heatmap_png(translator, tmp_path):
    inputs, outputs, weights = translator.attention("3 7 1 5")
    path = plots.show_attention(inputs, outputs, weights, str(tmp_path / "one.png"))
    examples = [translator.attention(s) for s in ("1 2 3", "4 5 6 7 8", "9 10 11")]
    grid = plots.attention_grid(examples, str(tmp_path / "grid.png"))
    for p in (path, grid):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < os.path.getsize(p) < 2_000_000


@pytest.mark.slow
def test_evaluate_scores(translator):
    sources = _sentences(seed=2)
    references = [" ".join(s.split()[::-1]) for s in sources]
    r = translator.evaluate(sources, references, beam_size=3)
    assert r["bleu"] > 80 and r["chrf"] > 80
    assert "tok:13a" in r["bleu_signature"] and "nc:6" in r["chrf_signature"]
    assert r["sentences"] == 16 and len(r["hypotheses"]) == 16 and r["step"] == 300
    assert r["sentences_per_sec"] > 0 and not r["includes_compilation"]
    assert inference.format_scores(r).startswith("BLEU|nrefs:1|")
    with pytest.raises(InferenceError, match="must align"):
        translator.evaluate(sources, references[:-1])


@pytest.mark.slow
def test_checkpoint_choice_and_bad_workdirs(run, tmp_path):
    assert Translator.from_workdir(run, "150").step == 150
    assert Translator.from_workdir(run, "best").step == 300
    with pytest.raises(InferenceError, match=r"No checkpoint at step 7; available steps: \[150, "):
        Translator.from_workdir(run, 7)
    with pytest.raises(InferenceError, match="No such directory"):
        Translator.from_workdir(str(tmp_path / "missing"))
    with pytest.raises(InferenceError, match="no config.json"):
        Translator.from_workdir(str(tmp_path))


@pytest.mark.slow
def test_params_only_and_config_defaults(run, translator):
    # the restored tree is the parameters alone; config.json fills in over the defaults
    assert set(translator.variables) == {"params"}
    assert translator.num_params == sum(x.size for x in jax.tree.leaves(translator.variables))
    cfg = load_config(run)
    assert isinstance(cfg.data.prefixes, tuple) and cfg.model.hidden == 32


@pytest.mark.slow
def test_location_attention_cuts_long_input(run):
    config = load_config(run)
    config.model.decoder, config.model.attention = "legacy", "location"
    config.model.attention_max_length = 6
    text = load_text_processing(config.data, run)
    model = Translator(config, {}, text).model  # only to make random parameters
    shapes = jax.eval_shape(
        model.init,
        jax.random.PRNGKey(0),
        np.ones((1, 6), np.int32),
        np.array([6]),
        np.ones((1, 3), np.int32),
    )["params"]
    rng = np.random.default_rng(0)
    tr = Translator(
        config, jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(s.dtype), shapes), text
    )
    short, long = tr.translate(["1 2 3", "1 2 3 4 5 6 7 8"], max_len=4)
    assert not short.truncated and short.weights.shape[1] == 4
    assert long.truncated and long.input_tokens == ["1", "2", "3", "4", "5"]
    assert long.weights.shape[1] == 6


def test_decode_lines():
    lines, bad = readers.decode_lines(b"\xef\xbb\xbfone\r\n\xff\xfe\n\nfour", "x")
    assert lines == ["one", None, "", "four"] and bad == [2]
    assert readers.decode_lines(b"a\n", "x") == (["a"], [])


def test_read_tsv_as_training(tmp_path):
    cfg = default_data_config()  # the tutorial: fra -> eng, filtered, max_length 10
    path = tmp_path / "pairs.tsv"
    path.write_bytes(
        b"I am cold.\tJ'ai froid.\tCC-BY attribution\n"  # kept: French is the source
        b"Hello!\tSalut !\n"  # no English prefix
        b"He is a very very very very very very tall man.\tIl est grand.\n"  # too long
        b"no tab here\n"
        b"She is \xe9 here.\tElle est l\xe0.\n"  # Latin-1: not UTF-8
        b"\n"
        b"You're late.\tTu es en retard.\n"
    )
    sources, refs, counts = read_tsv(str(path), cfg, max_length=10)
    assert sources == ["J'ai froid.", "Tu es en retard."]
    assert refs == ["I am cold.", "You're late."]
    assert counts == dict(
        lines=7, kept=2, skipped_undecodable=1, skipped_empty=1, skipped_no_tab=1, skipped_filter=2
    )
    assert "2 pairs kept" in readers.summary(counts)
    eng_fra = ml_collections.ConfigDict(cfg.to_dict())
    eng_fra.src_lang, eng_fra.tgt_lang = "eng", "fra"
    assert read_tsv(str(path), eng_fra, 10)[0] == ["I am cold.", "You're late."]
    path.write_bytes(b"\xff\n")
    with pytest.raises(ValueError, match="No usable sentence pairs"):
        read_tsv(str(path), cfg, 10)


@pytest.mark.slow
def test_read_parallel_errors(tmp_path):
    (tmp_path / "s").write_bytes(b"a\n\xe9\n")
    (tmp_path / "r").write_text("a\nb\n")
    (tmp_path / "short").write_text("a\n")
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(line 2\)"):
        readers.read_parallel(str(tmp_path / "s"), str(tmp_path / "r"))
    with pytest.raises(ValueError, match="has 2 lines but .* has 1"):
        readers.read_parallel(str(tmp_path / "r"), str(tmp_path / "short"))
    with pytest.raises(FileNotFoundError, match="No such file"):
        readers.read_lines(str(tmp_path / "nothing"))
    run = type("Run", (), {})()  # evaluation input through the Translator-side loader
    with pytest.raises(InferenceError, match=r"not valid UTF-8 \(line 2\)"):
        load_pairs(run, src=str(tmp_path / "s"), ref=str(tmp_path / "r"))
    with pytest.raises(InferenceError, match="No such file"):
        load_pairs(run, src=str(tmp_path / "nothing"), ref=str(tmp_path / "r"))
