"""Benchmarks training on large parallel corpora (issue #30); prints a table and JSON.

    python -m benchmarks.large_corpus --sizes 200000,2000000 --out large_corpus.json
    python -m benchmarks.large_corpus --sizes 2000 --steps 2 --set train.batch_size=8 --keep

For each size N (pairs of the training split) it writes a synthetic 'parallel' corpus folder
(train.fr/train.en, valid.*, test.*: `--held-out` pairs each) and runs on it, with
configs/multi30k.py's model (biGRU 512, batch 128; `--set` changes it), each of the runs named
by `--runs` (all three by default), each a subprocess timed from its start:

- prepare: `scripts/prepare.py` on a fresh data dir (the TFDS preparation of the text, the
  vocabularies, the training ids), to its end; in a checkout without that script,
  `scripts/train.py` on a fresh workdir until its first step, then `--steps` steps;
- first_step: `scripts/train.py` on a fresh workdir of the prepared corpus: until its first
  step (reading the prepared data, compiling), then `--steps` steps;
- resume: first_step's workdir again with `--steps` more steps, until its first step.

Each run reports its wall time, CPU time and peak resident memory (the child's ru_maxrss from
os.wait4: the process and the processes it waited for), and the median and the best training
tokens/s of its metrics.jsonl records (one a step) after the first. Steps that meet a new batch
shape compile it (tens of seconds at this model size on 2 cores), so with a few steps the
median is no steady figure; the best step, which compiled nothing, is closer to one (a steady
figure needs more --steps).

The corpus is recombined from the tutorial's eng-fra sentences (one pair, or two joined, so
the vocabulary stays the tutorial's and most pairs are new) or, with `--text random`, random
words of a Zipf-distributed made-up vocabulary; the same seed gives the same bytes. It only
uses scripts/train.py and config overrides that exist in this checkout's config (e.g.
data.cache_dir is passed only where the config has it), so it measures any version. Each
corpus is deleted once its runs are done, and `--dir` (default a temporary one) at the end
unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from benchmarks import system

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TEXT = os.path.join(ROOT, "..", "shared", "data", "eng-fra", "eng-fra.txt")
MODEL_CONFIG = os.path.join(ROOT, "configs", "multi30k.py")
SPLIT_FILES = {"train": "train", "validation": "valid", "test": "test"}  # split: file prefix
RUNS = ("prepare", "first_step", "resume")
PREPARE_SCRIPT = os.path.join(ROOT, "scripts", "prepare.py")


# ------------------------------------------------------------------------------- the corpus
def tutorial_pairs(path: str) -> list[tuple[str, str]]:
    """(french, english) pairs of the tutorial's English<TAB>French file, raw text."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
                pairs.append((cols[1].strip(), cols[0].strip()))
    if not pairs:
        raise SystemExit(f"No English<TAB>French lines in {path}.")
    return pairs


def random_pairs(n_words: int = 20000, seed: int = 0, n: int = 50000) -> list[tuple[str, str]]:
    """`n` pairs of 3-12 made-up words drawn from a Zipf law, translated word by word."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    fr = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(n_words)]
    en = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(n_words)]
    p = 1.0 / np.arange(1, n_words + 1)
    words = rng.choice(n_words, (n, 12), p=p / p.sum()).tolist()  # [n, 12]
    lengths = rng.integers(3, 13, n).tolist()
    return [
        (" ".join(fr[i] for i in w[:k]) + " .", " ".join(en[i] for i in w[:k]) + " .")
        for w, k in zip(words, lengths, strict=True)
    ]


def generate(
    base: list[tuple[str, str]], n: int, seed: int, chunk: int = 100000
) -> Iterator[tuple[list[str], list[str]]]:
    """`n` (source, target) lines in chunks of `chunk`: base pair i alone, or joined with base
    pair j (half each). Only the [n] index arrays are held, not the text."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(base), n)
    second = rng.integers(0, len(base), n)
    joined = rng.random(n) < 0.5
    for start in range(0, n, chunk):
        src, tgt = [], []
        part = slice(start, start + chunk)
        for i, j, both in zip(
            first[part].tolist(), second[part].tolist(), joined[part].tolist(), strict=True
        ):
            s, t = base[i]
            if both:
                s, t = f"{s} {base[j][0]}", f"{t} {base[j][1]}"
            src.append(s)
            tgt.append(t)
        yield src, tgt


def write_corpus(
    folder: str, base: list[tuple[str, str]], size: int, held_out: int, seed: int = 0
) -> dict:
    """Writes a parallel folder of `size` training pairs and `held_out` validation and test
    pairs ({prefix}.fr / {prefix}.en, one sentence a line); returns {split: (pairs, bytes)}."""
    os.makedirs(folder, exist_ok=True)
    out = {}
    for k, (split, prefix) in enumerate(SPLIT_FILES.items()):
        n = size if split == "train" else held_out
        paths = [os.path.join(folder, f"{prefix}.{lang}") for lang in ("fr", "en")]
        with (
            open(paths[0], "w", encoding="utf-8") as fr,
            open(paths[1], "w", encoding="utf-8") as en,
        ):
            for src, tgt in generate(base, n, seed * 3 + k):
                fr.write("".join(line + "\n" for line in src))
                en.write("".join(line + "\n" for line in tgt))
        out[split] = (n, sum(os.path.getsize(p) for p in paths))
    return out


# ------------------------------------------------------------------------------- the runs
def overrides(
    corpus: str, data_dir: str, steps: int, held_out: int, extra: Sequence[str] = ()
) -> list[str]:
    """configs/multi30k.py's flags for the generated corpus: `steps` train steps, each logged,
    one checkpoint and a loss-only validation at the end, then `extra` ('key=value', e.g.
    'model.hidden=32'). Fields this checkout's config lacks are left out."""
    config = runpy.run_path(MODEL_CONFIG)["get_config"]()
    values = {
        "data.name": "parallel",
        "data.path": corpus,
        "data.src_lang": "fr",
        "data.tgt_lang": "en",
        **{f"data.splits.{s}": p for s, p in SPLIT_FILES.items()},
        "data.data_dir": os.path.join(data_dir, "tfds"),
        "data.cache_dir": os.path.join(data_dir, "cache"),  # a pipeline that prepares ids
        "train.num_train_steps": steps,
        "train.lr_schedule": "constant",  # no warm-up longer than the run
        "train.log_every": 1,
        "train.eval_every": steps,
        "train.checkpoint_every": steps,
        "train.progress_bar": False,
        "eval.bleu": False,
        "eval.batch_size": min(256, held_out),
    }
    flags = []
    for key, value in values.items():
        section, *rest = key.split(".")
        node = config[section]
        for part in rest[:-1]:
            node = node[part]
        if rest[-1] in node:
            flags.append(f"--config.{key}={value}")
    return flags + [f"--config.{kv}" for kv in extra]


def run_script(cmd: list[str], log_path: str) -> dict:
    """Runs `cmd` (a scripts/ command); its wall and CPU seconds and peak RSS (the child's
    ru_maxrss from os.wait4) and its start time; SystemExit with the log's tail if it fails."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - start
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return {
        "start": start,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
    }


def run_prepare(flags: list[str], log_path: str) -> dict:
    """scripts/prepare.py with the data flags of `flags`."""
    data_flags = [f for f in flags if f.startswith("--config.data.")]
    cmd = [sys.executable, PREPARE_SCRIPT, f"--config={MODEL_CONFIG}", *data_flags]
    result = run_script(cmd, log_path)
    del result["start"]
    return result


def run_train(workdir: str, flags: list[str], log_path: str) -> dict:
    """Runs scripts/train.py once; its wall and CPU seconds, peak RSS, time to its first step
    and tokens/s, from metrics.jsonl records written by this run."""
    metrics = os.path.join(workdir, "metrics.jsonl")
    seen = 0
    if os.path.exists(metrics):
        with open(metrics) as f:
            seen = sum(1 for _ in f)
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train.py"), f"--workdir={workdir}"]
    cmd += [f"--config={MODEL_CONFIG}", *flags]
    result = run_script(cmd, log_path)
    with open(metrics) as f:
        records = [json.loads(line) for line in f][seen:]
    train = [r for r in records if r.get("split") == "train"]
    if not train:
        raise SystemExit(f"{metrics} has no training record of this run (see {log_path}).")
    tps = [r["tokens_per_sec"] for r in train[1:]]  # the first step compiles
    return {
        "first_step_s": round(train[0]["time"] - result.pop("start"), 2),
        **result,
        "tokens_per_sec": round(statistics.median(tps), 1) if tps else None,
        "tokens_per_sec_best": round(max(tps), 1) if tps else None,  # a step that compiled none
        "steps": len(train),
    }


def bench_size(args, base, size: int, root: str, done: Callable[[dict], None]) -> dict:
    """The corpus of `size` pairs and the runs on it (RUNS, those in --runs; resume needs
    first_step), calling `done(results so far)` after each."""
    folder = os.path.join(root, f"corpus_{size}")
    t0 = time.time()
    files = write_corpus(folder, base, size, args.held_out, seed=args.seed)
    out = {
        "pairs": size,
        "text_mb": round(sum(b for _, b in files.values()) / 1e6, 1),
        "generate_s": round(time.time() - t0, 2),
        "load_before": system.load_average(),
    }
    data_dir = os.path.join(root, f"data_{size}")
    workdir = os.path.join(root, f"run_{size}")
    for name in [r for r in RUNS if r in args.runs.split(",")]:
        steps = 2 * args.steps if name == "resume" else args.steps
        flags = overrides(folder, data_dir, steps, args.held_out, args.set)
        log_path = os.path.join(root, f"log_{size}_{name}.txt")
        if name == "prepare" and os.path.exists(PREPARE_SCRIPT):
            out[name] = run_prepare(flags, log_path)
        else:
            wd = workdir + "_prepare" if name == "prepare" else workdir
            out[name] = run_train(wd, flags, log_path)
        out[name]["load_after"] = system.load_average()[0]
        print(f"{size} {name}: {out[name]}", file=sys.stderr, flush=True)
        done(out)
    shutil.rmtree(folder, ignore_errors=True)  # keep at most one corpus on disk
    return out


# ------------------------------------------------------------------------------- the report
def _cell(result: dict, run: str, *keys: str) -> str:
    """result[run]'s `keys`, '-' for a run not made."""
    if run not in result:
        return "-"
    r = result[run]
    return " / ".join("-" if r.get(k) is None else f"{r[k]:,.0f}" for k in keys)


def _best_tokens(result: dict) -> str:
    """Median and best tokens/s over the runs' steps after their first (the steps that compile
    a new batch shape count in the median: with few steps it is no steady figure)."""
    runs = [result[n] for n in RUNS if result.get(n, {}).get("tokens_per_sec")]
    if not runs:
        return "-"
    median = statistics.median(r["tokens_per_sec"] for r in runs)
    return f"{median:,.0f} / {max(r['tokens_per_sec_best'] for r in runs):,.0f}"


COLUMNS = (
    ("pairs", lambda r: f"{r['pairs']:,}"),
    ("text MB", lambda r: f"{r['text_mb']:,}"),
    (
        "prepare: s / CPU s / peak MB",
        lambda r: _cell(r, "prepare", "wall_s", "cpu_s", "peak_rss_mb"),
    ),
    *(
        (
            f"{name}: to step 1 s / peak MB",
            lambda r, n=name: _cell(r, n, "first_step_s", "peak_rss_mb"),
        )
        for name in RUNS[1:]
    ),
    ("tokens/s: median / best step", lambda r: _best_tokens(r)),
)


def table(sizes: list[dict]) -> str:
    """A Markdown table, one row per size (times to the first step, peak resident memory)."""
    lines = ["| " + " | ".join(c for c, _ in COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    lines += ["| " + " | ".join(f(r) for _, f in COLUMNS) + " |" for r in sizes]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes", default="200000,2000000,20000000", help="training pairs, comma separated"
    )
    p.add_argument("--dir", default="", help="where corpora and runs go (default: a temporary dir)")
    p.add_argument("--keep", action="store_true", help="keep --dir's runs (corpora are deleted)")
    p.add_argument("--text", default=DEFAULT_TEXT, help="the tutorial's eng-fra.txt, or 'random'")
    p.add_argument("--held-out", type=int, default=1000, help="validation and test pairs each")
    p.add_argument("--steps", type=int, default=4, help="train steps per run (the first compiles)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further config override, e.g. --set model.hidden=32 (repeatable)",
    )
    p.add_argument(
        "--runs",
        default=",".join(RUNS),
        help="which runs, comma separated: prepare, first_step, resume (of first_step's workdir)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="also write the JSON here (after every size)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    base = random_pairs(seed=args.seed) if args.text == "random" else tutorial_pairs(args.text)
    root = args.dir or tempfile.mkdtemp(prefix="large_corpus_")
    os.makedirs(root, exist_ok=True)
    report = {
        "command": shlex.join(["python", "-m", "benchmarks.large_corpus", *argv]),
        "machine": system.machine_info(),
        "config": os.path.relpath(MODEL_CONFIG, ROOT),
        "flags": overrides("CORPUS", "DATA_DIR", args.steps, args.held_out, args.set),
        "sizes": [],
    }

    def write(results: dict) -> None:
        if args.out:
            with open(args.out, "w") as f:
                json.dump({**report, "sizes": [*report["sizes"], results]}, f, indent=1)

    try:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            report["sizes"].append(bench_size(args, base, size, root, write))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(report["sizes"]), file=sys.stderr)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
