"""benchmarks/ runs on tiny sizes and prints valid JSON (a smoke test, not a benchmark)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from shared import ROOT, SUBJECTS, very_pairs

TINY = [
    "--steps",
    "1",
    "--large-steps",
    "1",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--torch-threads",
    "1",
    "--no-torch-default-threads",
    "--peak-sizes",
    "64",
    "--peak-size",
    "64",
]


def run(*args, **env):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_train_mode_tiny(tmp_path):
    out = tmp_path / "results.json"
    report = run(
        "--mode",
        "train",
        "--configs",
        "tutorial,large",
        "--tutorial-hidden",
        "8",
        "--tutorial-batch",
        "2",
        "--tutorial-length",
        "4",
        "--large-hidden",
        "8",
        "--large-batch",
        "2",
        "--large-length",
        "5",
        "--src-vocab",
        "11",
        "--tgt-vocab",
        "13",
        "--out",
        str(out),
        *TINY,
    )
    assert json.loads(out.read_text()) == report
    assert report["matmul_peak_start"]["gflops"] > 0
    for name, bidirectional in (("tutorial", False), ("large", True)):
        r = report["train"][name]
        assert r["bidirectional"] is bidirectional and r["src_vocab"] == 11
        for side in ("jax", "torch"):
            assert r[side]["tokens_per_s"] > 0 and r[side]["step_s_median"] > 0
        assert r["speedup_tokens_per_s"] > 0 and r["train_gflop_per_step"] > 0
        assert 0 < r["jax_fraction_of_session_peak"]
        assert r["jax"]["compile_s"] > 0 and r["jax"]["memory"]


def test_train_flops_counts_matmuls(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks.train import train_flops

    b, s, e, h, v = 2, 3, 4, 5, 7
    flops = train_flops(batch=b, src_len=s, tgt_len=1, embed=e, hidden=h, directions=1, tgt_vocab=v)
    encoder = 2 * b * s * e * 3 * h + 2 * b * s * h * 3 * h
    keys = 2 * b * s * h * h
    step = (
        2 * b * h * h
        + 2 * b * s * h
        + 2 * b * s * h
        + 2 * b * (e + h) * 3 * h
        + 2 * b * h * 3 * h
        + 2 * b * h * v
    )
    assert flops == 3 * (encoder + keys + step)


@pytest.mark.slow
def test_decode_mode_tiny(tmp_path):
    """Decode mode on a tiny tutorial-format corpus: every task timed, the per-model-step
    ratios of sampling, a 2-model ensemble and beam search against greedy reported."""
    lines = very_pairs([s for s in SUBJECTS if s[0] in ("I am", "He is", "We are")])
    corpus = tmp_path / "eng-fra.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run(
        "--mode",
        "decode",
        "--data-path",
        str(corpus),
        "--decode-hidden",
        "8",
        "--decode-batch",
        "2,4",
        "--max-len",
        "3",
        "--beam-size",
        "2",
        "--decode-split",
        "train",
        "--decode-limit",
        "4",
        *TINY,
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
    )["decode"]
    for task in (
        "jax_greedy_b2",
        "jax_greedy_b4",
        "jax_beam2_b2",
        "jax_sample_top_p_b2",
        "jax_ensemble2_greedy_b2",
        "torch_evaluate",
    ):
        assert report[task]["sentences_per_s"] > 0, task
    ratios = report["per_model_step_vs_greedy"]
    assert set(ratios) == {"sample_top_p", "ensemble2_greedy", "beam2"}
    assert all(r > 0 for r in ratios.values())
