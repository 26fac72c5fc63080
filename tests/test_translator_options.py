"""The decoding options as `Translator` users reach them
(jaxattn.search.options.DecodeOptions):
n-best lists, sampling, the coverage penalty, ensembles of runs (jaxattn.rundir.run),
unknown-word
replacement (jaxattn.inference.unk), forced-decoding scores; a clear UsageError for every bad value.
The conftest `tiny_run` (reverse the symbols) is the model."""

import json
import shutil

import numpy as np
import pytest

from jaxattn import search
from jaxattn.data.vocab import Vocab
from jaxattn.errors import InferenceError, UsageError
from jaxattn.inference import unk
from jaxattn.inference.translator import Translator
from jaxattn.search.options import DecodeOptions

SENTENCES = ["3 1 4 1 5", "9 2 6", "5 3 5 8 9 7", "1 2", "10 11 0 4 4 4 7", ""]


@pytest.fixture(scope="module")
def translator(tiny_run):
    return Translator.from_workdir(tiny_run.workdir)


def _texts(out):
    return [t.text for t in out]


# ------------------------------------------------------------------------------ bad options
BAD = [
    (dict(method="nucleus"), "method must be one of"),
    (dict(beam_size=0), "beam_size must be an integer >= 1"),
    (dict(beam_size=2.5), "beam_size must be an integer >= 1"),
    (dict(method="beam", beam_size=2, n_best=3), "n_best=3 > beam_size=2"),
    (dict(n_best=2), "n_best=2 is for method='beam' or 'sample'; method='greedy' would ignore"),
    (dict(n_best=0, method="sample"), "n_best must be an integer >= 1"),
    (dict(method="sample", beam_size=4), "beam_size=4 is for method='beam'"),
    (dict(method="greedy", beam_size=4), "beam_size=4 is for method='beam'"),
    (dict(beta=0.2), "beta=0.2 is for method='beam'; method='greedy' would ignore it"),
    (dict(method="beam", beam_size=2, beta=-1.0), r"beta \(the coverage penalty\) must be"),
    (dict(method="beam", beam_size=2, beta=float("nan")), r"beta \(the coverage penalty\) must be"),
    (dict(alpha=float("inf")), "alpha .*must be a finite number >= 0"),
    (dict(alpha="0.6"), "alpha .*must be a finite number >= 0"),
    (dict(alpha=-0.5), "alpha .*must be a finite number >= 0"),
    (dict(method="sample", temperature=-0.5), "temperature must be a finite number >= 0"),
    (dict(method="sample", temperature=float("inf")), "temperature must be a finite number"),
    (dict(method="sample", top_k=-1), "top_k must be an integer >= 0"),
    (dict(method="sample", top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(method="sample", top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(method="sample", seed=-1), "seed must be an integer >= 0"),
    (dict(method="sample", seed=2**32), "seed must be an integer >= 0 and < 2\\*\\*32"),
    (dict(temperature=0.5), "temperature=0.5 is for method='sample'; method='greedy' would"),
    (dict(method="beam", beam_size=3, top_k=5), "top_k=5 is for method='sample'; method='beam'"),
    (dict(beams=3), r"Unknown decoding option\(s\) \['beams'\]"),
    (dict(options={"beam_size": 2}), "options must be a DecodeOptions"),
    (dict(replace_unk="yes"), "replace_unk must be True or False"),
    (dict(unk_dictionary="lex.tsv"), "unk_dictionary goes with replace_unk=True"),
    (dict(replace_unk=True, unk_dictionary=""), "unk_dictionary must be a file path"),
    (dict(max_len=0), "max_len must be an integer >= 1"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kwargs,message", BAD, ids=[str(k) for k, _ in BAD])
def test_bad_options_are_usage_errors(translator, kwargs, message):
    with pytest.raises(UsageError, match=message):
        translator.translate(["1 2 3"], **kwargs)


@pytest.mark.slow
def test_options_object_and_shortcuts(translator):
    assert DecodeOptions().method == "greedy" and DecodeOptions(beam_size=4).method == "beam"
    beam = DecodeOptions(method="beam", beam_size=3, n_best=2, beta=0.1)
    assert DecodeOptions.make(beam, beam_size=1, n_best=1, beta=0.0).method == "greedy"
    assert beam.describe() == "beam 3, beta 0.1, 2-best"
    assert "top-p 0.9" in DecodeOptions(method="sample", top_p=0.9).describe()
    resolved = translator.options(beam)
    assert resolved.alpha == translator.config.eval.length_penalty and resolved.beta == 0.1
    assert _texts(translator.translate(SENTENCES, DecodeOptions(beam_size=3))) == _texts(
        translator.translate(SENTENCES, beam_size=3)
    )


# ------------------------------------------------------------------------------ n-best
@pytest.mark.slow
def test_n_best_lists(translator):
    best = translator.translate(SENTENCES, beam_size=3)
    out = translator.translate(SENTENCES, method="beam", beam_size=3, n_best=3)
    for b, t in zip(best, out, strict=True):
        assert t.text == b.text and t.score == pytest.approx(b.score, abs=1e-5)
        if not t.input_tokens:
            assert t.hypotheses() == [t]
            continue
        hyps = t.hypotheses()
        assert len(hyps) == 3 and len({tuple(h.tokens) for h in hyps}) == 3  # three different
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.input_tokens == t.input_tokens and (h is t or h.alternatives == [])
            assert h.weights.shape == (len(h.tokens) + h.finished, len(h.input_tokens) + 1)
    assert all(not t.alternatives for t in best)


@pytest.mark.slow
def test_coverage_penalty_reaches_the_search(translator):
    alpha = translator.config.eval.length_penalty
    penalties = []
    for t in translator.translate(SENTENCES[:-1], method="beam", beam_size=3, beta=1.0):
        cp = float(
            search.coverage_penalty(t.weights[None], np.array([len(t.input_tokens) + 1]), 1.0)[0]
        )
        lp = float(search.length_penalty(len(t.tokens) + 1, alpha))
        assert t.score == pytest.approx(t.log_prob / lp + cp, abs=1e-4)
        penalties.append(cp)
    assert min(penalties) < -0.1  # the penalty is there (and part of the reported score)


# ------------------------------------------------------------------------------ sampling
@pytest.mark.slow
def test_sampling(translator):
    greedy = _texts(translator.translate(SENTENCES))
    assert _texts(translator.translate(SENTENCES, method="sample", temperature=0.0)) == greedy
    assert _texts(translator.translate(SENTENCES, method="sample", top_k=1, seed=5)) == greedy
    hot = dict(method="sample", temperature=3.0, n_best=4)
    a, b = (
        translator.translate(SENTENCES, seed=1, **hot),
        translator.translate(SENTENCES, seed=1, **hot),
    )
    c = translator.translate(SENTENCES, seed=2, **hot)
    samples = [[h.text for h in t.hypotheses()] for t in a]
    assert samples == [[h.text for h in t.hypotheses()] for t in b]  # the seed decides
    assert samples != [[h.text for h in t.hypotheses()] for t in c]
    assert samples[0] != [greedy[0]] * 4  # hot samples differ from the greedy translation
    # a sentence's samples depend on the seed and its position, not on the batching
    for batch_size in (1, 3):
        d = translator.translate(SENTENCES, seed=1, batch_size=batch_size, **hot)
        assert [[h.text for h in t.hypotheses()] for t in d] == samples, batch_size
    for t in a[:-1]:
        hyps = t.hypotheses()
        assert len(hyps) == 4 and all(h.score == pytest.approx(h.log_prob) for h in hyps)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


# ------------------------------------------------------------------------------ ensembles
@pytest.mark.slow
def test_ensemble_of_a_run_with_itself_is_the_run(tiny_run, translator):
    pair = Translator.from_workdirs([tiny_run.workdir, tiny_run.workdir], ["latest", 300])
    assert isinstance(pair.model, search.Ensemble) and len(pair.variables) == 2
    assert pair.members == [(tiny_run.workdir, 300)] * 2
    assert pair.num_params == 2 * translator.num_params
    for kw in (dict(), dict(beam_size=3)):
        one, two = translator.translate(SENTENCES, **kw), pair.translate(SENTENCES, **kw)
        assert _texts(one) == _texts(two)
        for a, b in zip(one, two, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            np.testing.assert_allclose(a.weights, b.weights, atol=1e-5)
    scores = pair.score(SENTENCES[:2], ["5 1 4 1 3", "6 2 9"])
    assert [s.log_prob for s in scores] == pytest.approx(
        [s.log_prob for s in translator.score(SENTENCES[:2], ["5 1 4 1 3", "6 2 9"])], abs=1e-4
    )
    assert pair.evaluate(SENTENCES[:2], ["5 1 4 1 3", "6 2 9"])["ensemble"][1]["step"] == 300


def _copy_run(tiny_run, tmp_path, name):
    return shutil.copytree(tiny_run.workdir, tmp_path / name)


@pytest.mark.slow
@pytest.mark.parametrize("side", ["src", "tgt"])
def test_ensemble_vocabularies_must_match(tiny_run, tmp_path, side):
    other = _copy_run(tiny_run, tmp_path, "other")
    path = other / f"{side}_vocab.txt"
    tokens = path.read_text().split("\n")
    tokens[5], tokens[6] = tokens[6], tokens[5]  # same size, two words swapped
    path.write_text("\n".join(tokens))
    what = "source" if side == "src" else "target"
    with pytest.raises(
        InferenceError,
        match=(
            rf"{tiny_run.workdir} and {other} cannot decode as one ensemble: their {what} "
            rf"vocabularies \({side}_vocab.txt\) differ: \d+ vs \d+ tokens, first difference "
            rf"at id 5: '{tokens[6]}' vs '{tokens[5]}'"
        ),
    ):
        Translator.from_workdirs([tiny_run.workdir, str(other)])


@pytest.mark.slow
def test_ensemble_text_processing_must_match(tiny_run, tmp_path):
    other = _copy_run(tiny_run, tmp_path, "cased")
    config = json.loads((other / "config.json").read_text())
    config["data"]["lowercase"] = not config["data"]["lowercase"]
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(InferenceError, match="their source tokenizers differ in lowercase"):
        Translator.from_workdirs([tiny_run.workdir, str(other)])
    with pytest.raises(UsageError, match="one checkpoint for all or one each"):
        Translator.from_workdirs([tiny_run.workdir, tiny_run.workdir], ["best"] * 3)
    with pytest.raises(UsageError, match="workdir must be a directory path, not 5"):
        Translator.from_workdirs([tiny_run.workdir, 5])


# ------------------------------------------------------------------------------ unknown words
def test_replace_unknown_by_hand():
    weights = np.array(
        [
            [0.1, 0.7, 0.1, 0.1],  # <unk> at 0 -> 'Hund' (position 1)
            [0.2, 0.2, 0.5, 0.1],
            [0.1, 0.1, 0.3, 0.5],  # <unk> at 2: the EOS column is never chosen
            [0.0, 0.0, 0.0, 1.0],
        ]
    )  # the EOS row
    src = ["der", "Hund", "bellt"]
    assert unk.replace_unknown(["<unk>", "barks", "<unk>"], src, weights, "<unk>") == [
        "Hund",
        "barks",
        "bellt",
    ]
    assert unk.replace_unknown(
        ["<unk>", "barks", "<unk>"], src, weights, "<unk>", {"Hund": "dog"}
    ) == ["dog", "barks", "bellt"]
    assert unk.replace_unknown(["the", "dog"], src, weights, "<unk>") == ["the", "dog"]
    with pytest.raises(ValueError, match="weights must be shaped"):
        unk.replace_unknown(["<unk>"] * 5, src, weights, "<unk>")


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "Cannot read the unknown-word dictionary"),
        (b"Hund\tdog\n\xe9\tx\n", r"not valid UTF-8 \(line 2\)"),
        (b"Hund\tdog\nKatze cat\n", r"line 2: 'Katze cat' is not 'source<TAB>target'"),
        (b"Hund\t\n", "line 1"),
        (b"\n\n", "has no entries"),
    ],
)
def test_bad_dictionary_files(tmp_path, content, message):
    path = tmp_path / "lex.tsv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InferenceError, match=message):
        unk.read_dictionary(str(path))


def test_read_dictionary(tmp_path):
    path = tmp_path / "lex.tsv"
    path.write_text("Hund\tdog\n\nHund\thound\nbellt\tbarks loudly\n")
    assert unk.read_dictionary(str(path)) == {"Hund": "dog", "bellt": "barks loudly"}


@pytest.fixture
def unk_first(translator, monkeypatch):
    """The translator, its searches' first output token replaced by <unk>."""
    real = translator.decode_ids

    def decode_ids(*args, **kwargs):
        r = real(*args, **kwargs)
        return r._replace(tokens=r.tokens.at[:, :, 0].set(translator.tgt_vocab.unk_id))

    monkeypatch.setattr(translator, "decode_ids", decode_ids)
    return translator


@pytest.mark.slow
def test_unknown_words_replaced_in_translation(unk_first, tmp_path):
    (plain,) = unk_first.translate(["1 2 3"])
    assert plain.tokens == ["<unk>", "2", "1"] and plain.text == "<unk> 2 1"
    (fixed,) = unk_first.translate(["1 2 3"], replace_unk=True)  # reversing: attends to '3'
    assert fixed.tokens == ["3", "2", "1"] and fixed.text == "3 2 1"
    (tmp_path / "lex.tsv").write_text("3\tthree\n")
    (looked_up,) = unk_first.translate(
        ["1 2 3"], replace_unk=True, unk_dictionary=str(tmp_path / "lex.tsv")
    )
    assert looked_up.text == "three 2 1"
    r = unk_first.evaluate(["1 2 3", "4 5"], ["3 2 1", "5 4"], replace_unk=True, beam_size=2)
    assert r["hypotheses"] == ["3 2 1", "5 4"] and r["replace_unk"] and r["chrf"] == 100


@pytest.mark.slow
def test_replace_unk_needs_an_unk_token(translator, monkeypatch):
    monkeypatch.setattr(translator, "tgt_vocab", Vocab(["SOS", "EOS", "1"]))
    with pytest.raises(UsageError, match="no <unk> .*tutorial id layout.* nothing to replace"):
        translator.translate(["1 2"], replace_unk=True)


# ------------------------------------------------------------------------------ scoring
@pytest.mark.slow
def test_score_of_own_output_is_its_log_prob(translator):
    out = translator.translate(SENTENCES[:-1])
    scores = translator.score(SENTENCES[:-1], [t.text for t in out], batch_size=2)
    for t, s in zip(out, scores, strict=True):
        assert s.log_prob == pytest.approx(t.log_prob, abs=1e-4) and t.log_prob == t.score
        assert s.tokens == t.tokens + ["</s>"] and len(s.token_log_probs) == len(s.tokens)
        assert sum(s.token_log_probs) == pytest.approx(s.log_prob, abs=1e-5)


@pytest.mark.slow
def test_score_references(translator):
    right, shorter, longer, wrong, empty = translator.score(
        ["1 2 3"] * 4 + [""], ["3 2 1", "3 2", "3 2 1 1", "1 2 3", "3"]
    )
    assert right.log_prob > -1 and all(
        x.log_prob < right.log_prob - 2 for x in (shorter, longer, wrong)
    )
    assert shorter.token_log_probs[:2] == pytest.approx(right.token_log_probs[:2], abs=1e-6)
    assert len(longer.tokens) == 5 and empty.log_prob < 0
    (zz,) = translator.score(["1 2"], ["2 zz"])  # unknown target words score as <unk>
    assert zz.tokens == ["2", "zz", "</s>"] and zz.log_prob < right.log_prob
    with pytest.raises(InferenceError, match="1 sources but 2 targets"):
        translator.score(["1"], ["1", "2"])
    with pytest.raises(UsageError, match="targets must be a list of strings"):
        translator.score(["1"], "1")
