"""jaxattn.metrics: corpus BLEU/chrF equal sacreBLEU called directly on asymmetric cases (so
swapped hypotheses/references, another tokenizer or chrF++ would show), and the metric
writer's JSON lines."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from jaxattn import metrics

# Hypotheses about three times as long as their references: BLEU's brevity penalty and chrF's
# recall weighting (beta = 2) make both scores depend clearly on the argument order; 'The' vs
# 'the' shows whether scoring is cased.
HYPS = [
    "The cat sat on the mat . it was a warm and sunny day and the cat was happy to sleep",
    "a big dog runs in the park with a small ball in its mouth all day long",
    "I am here, ok? yes I am",
]
REFS = ["the cat sat on the mat .", "a dog runs in the park .", "I am here , ok ?"]


def test_corpus_scores_equal_sacrebleu_and_are_asymmetric():
    """Guards against hypotheses and references passed to sacreBLEU in swapped order."""
    got = metrics.corpus_scores(HYPS, REFS)
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS])
    chrf = sacrebleu.corpus_chrf(HYPS, [REFS])
    assert got["bleu"] == pytest.approx(bleu.score, abs=1e-9)
    assert got["chrf"] == pytest.approx(chrf.score, abs=1e-9)
    swapped = metrics.corpus_scores(REFS, HYPS)
    assert abs(swapped["bleu"] - got["bleu"]) > 5 and abs(swapped["chrf"] - got["chrf"]) > 20
    assert "BP = " in got["bleu_detail"] and got["bleu_detail"] == str(bleu)
    assert "tok:13a" in got["bleu_signature"] and "nrefs:1" in got["bleu_signature"]
    assert got["chrf_signature"].startswith("nrefs:1") and "nw:0" in got["chrf_signature"]


def test_corpus_scores_tokenize_option_and_perfect_output():
    """The tokenize option reaches BLEU; identical output scores 100; lengths must align."""
    hyps, refs = ["Hello, world."], ["Hello , world ."]
    for tok in ("13a", "none", "char"):
        want = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tok).score
        assert metrics.corpus_scores(hyps, refs, tokenize=tok)["bleu"] == pytest.approx(want)
    assert metrics.corpus_scores(hyps, refs, tokenize="none")["bleu"] < 50
    assert metrics.corpus_scores(hyps, refs, tokenize="13a")["bleu"] == pytest.approx(100.0)
    assert "tok:none" in metrics.corpus_scores(hyps, refs, tokenize="none")["bleu_signature"]
    perfect = metrics.corpus_scores(REFS, REFS)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        metrics.corpus_scores(HYPS[:2], REFS)


def test_metric_writer_round_trip(tmp_path):
    """Records come back in order with their step, split and float values; a reopened writer
    appends (a resumed run keeps its history)."""
    w = metrics.MetricWriter(str(tmp_path), tensorboard=False)
    w.write(10, "train", {"loss": 2, "grad_norm": 0.5})
    w.write(10, "valid", {"bleu": 12.5})
    w.close()
    w = metrics.MetricWriter(str(tmp_path), tensorboard=False)
    w.write(20, "train", {"loss": 1.5})
    w.close()
    records = metrics.read_metrics(str(tmp_path))
    assert [(r["step"], r["split"]) for r in records] == [
        (10, "train"),
        (10, "valid"),
        (20, "train"),
    ]
    assert records[0]["loss"] == 2.0 and isinstance(records[0]["loss"], float)
    assert records[1]["bleu"] == 12.5 and records[2]["loss"] == 1.5
    assert all(
        json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().split("\n") if line
    )
    off = metrics.MetricWriter(str(tmp_path / "off"), enabled=False)
    off.write(1, "train", {"loss": 1.0})
    off.close()
    assert not (tmp_path / "off").exists()
    assert metrics.read_metrics(str(tmp_path / "missing")) == []


def test_minutes_series_leaves_out_the_gap_of_a_resume(tmp_path):
    from jaxattn.tools import plots

    def rec(step, minute, split="train", **kw):
        return {"step": step, "split": split, "time": 1000.0 + 60 * minute, **kw}

    records = [
        rec(100, 0),
        rec(200, 1),
        rec(200, 2, "valid", bleu=10.0),
        rec(300, 3),  # killed after step 300, resumed two hours later from step 200
        rec(300, 123),
        rec(400, 124, "valid", bleu=20.0),
        rec(400, 125, "valid", bleu=21.0),  # a repeated step: the last record wins
    ]
    minutes, bleu = plots.minutes_series(records)
    assert minutes == [2.0, 5.0] and bleu == [10.0, 21.0]
    assert plots.minutes_series([rec(100, 0)]) == ([], [])
    png = plots.bleu_against_minutes([("a", records), ("b", [])], "t", str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").stat().st_size > 5000 and png.endswith("m.png")
