"""jaxattn.inference.alignment: hard links from attention (EOS left out, subwords merged to
words), the Pharaoh text, gold files with their errors, AER worked out by hand; the checked-in
eng-fra gold set; Translator.align / Translation.alignment and the scripts' flags (slow)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from shared import ROOT, run_script

from jaxattn.data.text import JOINER, normalize_tutorial
from jaxattn.errors import DataError
from jaxattn.inference import alignment as al

GOLD_SET = os.path.join(ROOT, "benchmarks", "data", "engfra_align_gold.txt")


# ------------------------------------------------------------------------------ AER by hand
def _gold(sure, possible_only=()):
    return al.GoldPair("a b c", "x y", frozenset(sure), frozenset(sure) | frozenset(possible_only))


# S = {0-0, 1-1}, P = S + {2-1}
G = _gold({(0, 0), (1, 1)}, {(2, 1)})


@pytest.mark.parametrize(
    "links,aer,precision,recall",
    [
        ({(0, 0), (1, 1)}, 0.0, 1.0, 1.0),  # perfect: 1 - (2 + 2) / (2 + 2)
        (set(), 1.0, 0.0, 0.0),  # empty: 1 - 0 / (0 + 2)
        ({(0, 0), (1, 0)}, 0.5, 0.5, 0.5),  # half right: 1 - (1 + 1) / (2 + 2)
        ({(0, 0), (2, 1)}, 0.25, 1.0, 0.5),  # a possible link: 1 - (1 + 2) / (2 + 2)
    ],
)
def test_aer_worked_out_by_hand(links, aer, precision, recall):
    s = al.alignment_scores([links], [G])
    assert (s["aer"], s["precision"], s["recall"]) == pytest.approx((aer, precision, recall))
    assert (s["links"], s["sure"], s["possible"], s["pairs"]) == (len(links), 2, 3, 1)


def test_aer_sums_over_the_corpus_before_dividing():
    """Pair 1 perfect (2 links), pair 2 all wrong (1 link, 1 sure): 1 - (2 + 2) / (3 + 3),
    not the mean of the sentences' AERs (0.5)."""
    g2 = al.GoldPair("a", "x", frozenset({(0, 0)}), frozenset({(0, 0)}))
    s = al.alignment_scores([{(0, 0), (1, 1)}, {(1, 0)}], [G, g2])
    assert s["aer"] == pytest.approx(1 - 4 / 6)
    with pytest.raises(ValueError, match="1 alignments for 2 gold pairs"):
        al.alignment_scores([set()], [G, g2])


# ------------------------------------------------------------------------------ Pharaoh text
def test_parse_links_sure_possible_and_errors():
    sure, possible = al.parse_links("0-0 1?1 2-1-P 2-2-S", "x", 3, 3)
    assert sure == {(0, 0), (2, 2)} and possible == sure | {(1, 1), (2, 1)}
    with pytest.raises(DataError, match=r"gold.txt line 7: '0:1' is not a link; write i-j"):
        al.parse_links("0-0 0:1", "gold.txt line 7")
    with pytest.raises(DataError, match=r"'1\?-2' is not a link"):
        al.parse_links("1?-2", "here")
    with pytest.raises(
        DataError, match=r"line 2: link '3-0' names source word 3, but the source has 3 word"
    ):
        al.parse_links("3-0", "line 2", 3, 5)
    with pytest.raises(DataError, match="names target word 5, but the target has 5 word"):
        al.parse_links("0?5", "line 2", 3, 5)


def test_format_links_and_with_alignment():
    assert al.format_links({(2, 1), (0, 0), (1, 1)}) == "0-0 1-1 2-1"  # by target, then source
    assert al.with_alignment("he is", [(0, 0), (1, 1)]) == "he is ||| 0-0 1-1"


def test_read_gold_and_its_errors(tmp_path):
    path = tmp_path / "gold.txt"
    path.write_text("# a comment\n\nil dort ||| he sleeps ||| 0-0 1-1 0?1\nhm ||| hm |||\n")
    [a, b] = al.read_gold(str(path))
    assert (a.source, a.target, a.sure) == ("il dort", "he sleeps", {(0, 0), (1, 1)})
    assert a.possible == {(0, 0), (1, 1), (0, 1)} and b.sure == b.possible == frozenset()
    for text, message in [
        ("il dort ||| he sleeps\n", "line 1: expected 'source ||| target ||| links' .3 fields"),
        ("# c\nil ||| he ||| 0-1\n", "line 2: link '0-1' names target word 1, but the target"),
        ("il ||| he ||| 0_0\n", r"line 1: '0_0' is not a link"),
        (" ||| he ||| 0-0\n", "line 1: the source or the target is empty"),
        ("# nothing\n", "no sentence pairs"),
    ]:
        path.write_text(text)
        with pytest.raises(DataError, match=message):
            al.read_gold(str(path))
    with pytest.raises(DataError, match="Cannot read the gold alignments"):
        al.read_gold(str(tmp_path / "missing.txt"))


# ------------------------------------------------------------------------------ from attention
def test_word_ids_of_each_tokenizer():
    assert al.word_ids(["il", "est", "."], "space") == [0, 1, 2]
    assert al.word_ids(["don", JOINER + "'", JOINER + "t", "go", JOINER + "."], "word") == [
        0,
        0,
        0,
        1,
        1,
    ]  # "don't go." -> 2 words
    assert al.word_ids(["a", "b", "▁", "c"], "char") == [0, 0, None, 1]
    assert al.word_ids(["▁le", "▁chat", "on", "▁", "X", "▁dort"], "sentencepiece") == [
        0,
        1,
        1,
        None,
        2,
        3,
    ]  # a lone '▁' piece starts the word its next piece fills


# Source pieces: le | chat on | dort (+ EOS); target pieces: the | kit ten | sleeps (+ EOS).
SRC = ["▁le", "▁chat", "on", "▁dort"]
TGT = ["▁the", "▁kit", "ten", "▁sleeps"]
W = np.array(
    [
        # le, chat, on, dort, EOS
        [0.9, 0.0, 0.0, 0.1, 0.0],  # the -> le
        [0.5, 0.15, 0.15, 0.2, 0.0],  # kit: le by token; chaton's pieces sum to 0.3
        [0.1, 0.35, 0.35, 0.2, 0.0],  # ten: the word kitten, averaged: chaton 0.5, le 0.3
        [0.1, 0.0, 0.0, 0.3, 0.6],  # sleeps: EOS most, left out -> dort
        [0.0, 0.0, 0.0, 0.0, 1.0],  # the target EOS row: never output
    ]
)


def test_hard_alignment_merges_subwords_to_words_and_leaves_eos_out():
    """A source word's pieces summed (kitten -> chaton, not le: a mean would pick le), a
    target word's pieces averaged (its first piece alone would pick le), EOS column and row
    left out: '0-0 1-1 2-2', word indices of 'le chaton dort' / 'the kitten sleeps'."""
    links = al.hard_alignment(W, SRC, TGT, "sentencepiece", "sentencepiece")
    assert al.format_links(links) == "0-0 1-1 2-2"
    # token by token ('space': one word a piece) the same weights give other links
    tokens = al.hard_alignment(W, SRC, TGT, "space", "space")
    assert al.format_links(tokens) == "0-0 0-1 1-2 3-3"
    assert al.hard_alignment(W, [], TGT) == [] and al.hard_alignment(W, SRC, []) == []
    with pytest.raises(ValueError, match=r"weights \[5, 5\] do not cover 6 target"):
        al.hard_alignment(W, SRC, TGT + ["a", "b"])


def test_diagonal_alignment():
    assert al.diagonal_alignment(3, 3) == [(0, 0), (1, 1), (2, 2)]
    assert al.diagonal_alignment(2, 4) == [(0, 0), (0, 1), (1, 2), (1, 3)]
    assert al.diagonal_alignment(0, 2) == []


# ------------------------------------------------------------------------------ the gold set
def test_gold_set_is_valid():
    """The checked-in gold set: ~50 pairs, links in range (read_gold), S within P, sentences
    normalized as the eng-fra runs read them, every French and English word covered by a
    link or left out on purpose (at most a few)."""
    gold = al.read_gold(GOLD_SET)
    assert 50 <= len(gold) <= 60
    assert len({(g.source, g.target) for g in gold}) == len(gold)
    unaligned = 0
    for g in gold:
        assert g.sure <= g.possible and g.sure
        assert normalize_tutorial(g.source) == g.source
        assert normalize_tutorial(g.target) == g.target
        unaligned += len(set(range(len(g.source.split()))) - {i for i, _ in g.possible})
        unaligned += len(set(range(len(g.target.split()))) - {j for _, j in g.possible})
    assert unaligned <= 5
    with open(GOLD_SET, encoding="utf-8") as f:
        header = f.read(4000)
    for needed in ("TEST split", "CC-BY 2.0", "manythings.org", "Och and Ney", "sure", "possible"):
        assert needed in header


# ------------------------------------------------------------------------------ a trained run
@pytest.mark.slow
def test_translator_alignments_greedy_beam_and_forced(tiny_run):
    """The tiny run reverses its input: every output path's links are `hard_alignment` of
    its weights, and the forced alignment of reversed references is mostly anti-diagonal."""
    from jaxattn.inference.translator import Translator

    tr = Translator.from_workdir(tiny_run.workdir, "latest")
    sources = ["3 1 4 1 5", "9 2 6", "5 3 5 8 9 7"]
    targets = [" ".join(reversed(s.split())) for s in sources]
    for options in (dict(), dict(method="beam", beam_size=3, n_best=2)):
        for t in tr.translate(sources, **options):
            for h in t.hypotheses():
                assert h.alignment == al.hard_alignment(h.weights, h.input_tokens, h.tokens)
                assert {j for _, j in h.alignment} == set(range(len(h.tokens)))
    forced = tr.align(sources, targets)
    assert forced == [s.alignment for s in tr.score(sources, targets)]
    gold = [
        al.GoldPair(s, t, frozenset(r), frozenset(r))
        for s, t in zip(sources, targets, strict=True)
        for r in [{(len(s.split()) - 1 - j, j) for j in range(len(s.split()))}]
    ]
    model = al.alignment_scores(forced, gold)
    diagonal = al.alignment_scores(
        [al.diagonal_alignment(len(g.source.split()), len(g.target.split())) for g in gold], gold
    )
    assert model["aer"] < 0.5 < diagonal["aer"], (model, diagonal)


@pytest.mark.slow
def test_print_alignment_and_align_eval_scripts(tiny_run, tmp_path):
    run = tiny_run.workdir
    out, _ = run_script("translate", f"--workdir={run}", "--print_alignment", "3 1 4", "9 2 6 5")
    lines = out.strip().split("\n")
    assert len(lines) == 2 and all(" ||| " in x for x in lines)
    text, links = lines[1].split(" ||| ")
    sure, _ = al.parse_links(links, "output", 4, len(text.split()))
    assert {j for _, j in sure} == set(range(len(text.split())))  # one link a target word
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("3 1\n9 2 6 5\n")
    ref.write_text("1 3\n5 6 2 9\n")
    out, _ = run_script(
        "evaluate", f"--workdir={run}", f"--src={src}", f"--ref={ref}", "--score",
        "--print_alignment",
    )  # fmt: skip
    score_lines = out.strip().split("\n")
    assert len(score_lines) == 2 and float(score_lines[0].split(" ||| ")[0]) < 0
    gold = tmp_path / "gold.txt"
    gold.write_text(
        "# reversed\n3 1 ||| 1 3 ||| 1-0 0-1\n9 2 6 5 ||| 5 6 2 9 ||| 3-0 2-1 1-2 0-3\n"
    )
    links_out = tmp_path / "links.txt"
    out, _ = run_script("align_eval", f"--workdir={run}", f"--gold={gold}", f"--output={links_out}")
    assert "AER" in out and "diagonal baseline: AER 100.00" in out
    assert links_out.read_text().split("\n")[:2] == [x.split(" ||| ")[1] for x in score_lines]
    gold.write_text("3 1 4 ||| 4 1 3 ||| 2-0 1-1 0-3\n")
    _, err = run_script("align_eval", f"--workdir={run}", f"--gold={gold}", code=1)
    assert f"error: {gold} line 1: link '0-3' names target word 3" in err
    _, err = run_script("evaluate", f"--workdir={run}", f"--src={src}", f"--ref={ref}",
                     "--print_alignment", code=2)  # fmt: skip
    assert "--print_alignment goes with --output" in err
