"""benchmarks/large_corpus.py: the corpus generator (deterministic, the right sizes, well-formed
files), its config overrides, and one tiny end-to-end run (slow: it starts scripts/train.py)."""

import json
import os
import runpy
import subprocess
import sys

import pytest
from shared import ROOT

from benchmarks import large_corpus as lc

TUTORIAL_LINES = [
    "Go.\tVa !",
    "I am cold.\tJ'ai froid.",
    "He is tall.\tIl est grand.",
    "We are ready.\tNous sommes prêts.",
    "bad line without a tab",
    "",
]


@pytest.fixture
def eng_fra(tmp_path):
    path = tmp_path / "eng-fra.txt"
    path.write_text("\n".join(TUTORIAL_LINES) + "\n", encoding="utf-8")
    return str(path)


def read(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return f.read()


def test_corpus_is_deterministic_sized_and_well_formed(tmp_path, eng_fra):
    base = lc.tutorial_pairs(eng_fra)
    assert base[1] == ("J'ai froid.", "I am cold.")  # (French, English); bad lines skipped
    assert len(base) == 4
    a, b, c = (str(tmp_path / x) for x in "abc")
    files = lc.write_corpus(a, base, 500, 30, seed=1)
    lc.write_corpus(b, base, 500, 30, seed=1)
    lc.write_corpus(c, base, 500, 30, seed=2)
    assert {k: n for k, (n, _) in files.items()} == {"train": 500, "validation": 30, "test": 30}
    fr_sentences = {s for s, _ in base}
    for split, prefix in lc.SPLIT_FILES.items():
        fr, en = (read(a, f"{prefix}.{lang}") for lang in ("fr", "en"))
        assert files[split][1] == len(fr.encode()) + len(en.encode())
        fr_lines, en_lines = fr.split("\n"), en.split("\n")
        assert fr_lines[-1] == en_lines[-1] == ""  # every line ends with a newline
        n = files[split][0]
        assert len(fr_lines) == len(en_lines) == n + 1
        for s, t in zip(fr_lines[:-1], en_lines[:-1], strict=True):
            assert s and t and "\t" not in s + t
            # one base pair, or two joined, on both sides alike
            assert s in fr_sentences or any(
                s == f"{x} {y}" for x in fr_sentences for y in fr_sentences
            )
            assert (s in fr_sentences) == (t in {e for _, e in base})
        assert fr == read(b, f"{prefix}.fr") and en == read(b, f"{prefix}.en")  # same seed
    assert read(a, "train.fr") != read(c, "train.fr")  # another seed, another corpus
    joined = sum(s not in fr_sentences for s in read(a, "train.fr").split("\n")[:-1])
    assert 150 < joined < 350  # about half the pairs are two joined


def test_chunks_do_not_change_the_corpus(eng_fra):
    base = lc.tutorial_pairs(eng_fra)
    whole = list(lc.generate(base, 50, seed=3))
    parts = list(lc.generate(base, 50, seed=3, chunk=7))
    assert len(whole) == 1 and len(parts) == 8 and len(parts[-1][0]) == 1
    assert whole[0] == tuple(sum((list(p[k]) for p in parts), []) for k in (0, 1))


def test_random_words_corpus():
    pairs = lc.random_pairs(n_words=500, seed=0, n=3000)
    assert pairs == lc.random_pairs(n_words=500, seed=0, n=3000)
    assert len(pairs) == 3000 and pairs != lc.random_pairs(n_words=500, seed=1, n=3000)
    lengths = [len(s.split()) for s, _ in pairs[:1000]]
    assert min(lengths) >= 4 and max(lengths) <= 13  # 3-12 words and the full stop
    assert all(len(s.split()) == len(t.split()) for s, t in pairs[:1000])


def test_overrides_name_only_fields_the_config_has():
    flags = lc.overrides("C", "D", 3, 100, ["model.hidden=32"])
    config = runpy.run_path(lc.MODEL_CONFIG)["get_config"]()
    for flag in flags:
        key, value = flag.removeprefix("--config.").split("=", 1)
        node = config
        for part in key.split("."):
            node = node[part]  # KeyError: a flag the config does not have
    assert "--config.train.num_train_steps=3" in flags
    assert "--config.data.path=C" in flags and "--config.data.data_dir=D/tfds" in flags
    assert ("--config.data.cache_dir=D/cache" in flags) == ("cache_dir" in config.data)
    assert flags[-1] == "--config.model.hidden=32"


def test_table_marks_runs_not_made():
    result = {
        "pairs": 2000,
        "text_mb": 0.2,
        "prepare": {"wall_s": 9.6, "peak_rss_mb": 480.4, "cpu_s": 3.25},
        "resume": {"first_step_s": 2.6, "peak_rss_mb": 870, "cpu_s": 2.0},
    }
    result["resume"].update(tokens_per_sec=70, tokens_per_sec_best=1200)
    lines = lc.table([result]).split("\n")
    assert len(lines) == 3 and lines[0].count("|") == lines[2].count("|") == len(lc.COLUMNS) + 1
    assert lines[2] == "| 2,000 | 0.2 | 10 / 3 / 480 | - | 3 / 870 | 70 / 1,200 |"


@pytest.mark.slow
def test_tiny_run_reports_every_run(tmp_path, eng_fra):
    out = tmp_path / "out.json"
    args = ["--sizes", "2000", "--steps", "2", "--held-out", "50", "--text", eng_fra]
    args += ["--dir", str(tmp_path / "work"), "--keep", "--out", str(out)]
    for kv in ("train.batch_size=8", "model.hidden=16", "model.embed_dim=16"):
        args += ["--set", kv]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.large_corpus", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report == json.loads(out.read_text())
    assert not (tmp_path / "work" / "corpus_2000").exists()  # deleted, logs kept with --keep
    (size,) = report["sizes"]
    assert size["pairs"] == 2000
    assert size["prepare"]["wall_s"] > 0 and size["prepare"]["peak_rss_mb"] > 100
    for name in lc.RUNS[1:]:
        run = size[name]
        assert run["steps"] == 2 and 0 < run["first_step_s"] < run["wall_s"]
        assert run["peak_rss_mb"] > 100 and run["cpu_s"] > 0
        assert 0 < run["tokens_per_sec"] <= run["tokens_per_sec_best"]
    logs = {n: read(tmp_path / "work", f"log_2000_{n}.txt") for n in ("prepare", "first_step")}
    assert "Preparing the training token ids of 2000 pairs" in logs["prepare"]
    assert "Training token ids from" in logs["first_step"] and "Preparing" not in logs["first_step"]
    assert "| 2,000 |" in proc.stderr  # the table
