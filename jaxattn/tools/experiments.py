"""One experiment run, resume-safe: its config (a base config plus overrides), its directory,
training it, and its test-split scores, cached.

An experiment asks a question with a `Group` of `Variant`s, each a set of config overrides on
top of one base config, trained as one run and scored under the group's `Decoding`s. The
groups that docs/experiments.md answers, and the loop over them, are in
scripts/experiments.py; the report (markdown tables, experiments.json) in
`jaxattn.tools.experiment_report`.

Variants with the same effective overrides are the same run (`run_key` names its directory),
so a run shared by several groups trains once. A run whose training reached its final step is
not trained again, and each test-split evaluation is cached in the run's directory
(RESULT_FILE), keyed by checkpoint step and decoding settings; test hypotheses are kept
beside it.

    config = make_config(base, cpu_budget(1500, 500), {"model.attention": "dot"})
    record = train_run(config, workdir)               # trains, or finds it finished
    scores = evaluate_run(config, workdir, [GREEDY, Decoding("beam 5", 5)])
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence

import ml_collections
import sacrebleu

from jaxattn.errors import first_line
from jaxattn.inference import translator as inference
from jaxattn.inference.eval_input import load_split
from jaxattn.metrics import read_metrics
from jaxattn.rundir import run as run_lib
from jaxattn.rundir.files import read_json, write_json
from jaxattn.tools import plots
from jaxattn.training import loop as train_lib

log = logging.getLogger(__name__)

RESULT_FILE = "experiment.json"  # per run: training status, wall time, cached test scores
HYPOTHESES_DIR = "test_hypotheses"  # per run: the test translations behind each cached score


# ------------------------------------------------------------------------------ the types
@dataclasses.dataclass(frozen=True)
class Variant:
    """One variant of the base config, trained as one run: a name for tables and its config
    overrides."""

    name: str
    overrides: tuple[tuple[str, object], ...] = ()  # (dotted key, value), e.g. ("model.hidden", 64)


@dataclasses.dataclass(frozen=True)
class Decoding:
    """A decoding setting for the test split: a name for tables, beam size and length penalty
    (stored as a group's 'searches' in experiments.json)."""

    name: str
    beam_size: int = 1
    alpha: float = 0.0


GREEDY = Decoding("greedy")


@dataclasses.dataclass(frozen=True)
class Group:
    """A question, answered by training `variants` and scoring them under each of
    `decodings`."""

    name: str
    title: str
    question: str
    variants: tuple[Variant, ...]
    decodings: tuple[Decoding, ...] = (GREEDY,)
    sweep: str | None = None  # dotted key plotted on x against BLEU (lr, hidden, ...)
    sweep_label: str = ""
    log_x: bool = False
    curves: bool = True  # plot loss / validation BLEU curves of the variants


def make_variants(*items: tuple[str, dict]) -> tuple[Variant, ...]:
    """Variants from (name, {dotted key: value}) pairs."""
    return tuple(Variant(name, tuple(ov.items())) for name, ov in items)


def cpu_budget(steps: int = 1500, eval_every: int = 500, log_every: int = 50) -> dict:
    """Overrides for a short CPU run: `steps` optimizer steps, validation every `eval_every`."""
    return {
        "train.num_train_steps": steps,
        "train.eval_every": eval_every,
        "train.checkpoint_every": eval_every,
        "train.log_every": log_every,
    }


# ------------------------------------------------------------------------------ configs
def get_value(config, key: str):
    """config's value at a dotted key ('train.learning_rate')."""
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _set(config, key: str, value) -> None:
    *path, last = key.split(".")
    node = config
    for part in path:
        node = node[part]
    if last not in node:
        raise KeyError(f"Unknown config key {key!r}.")
    node[last] = value


def parse_value(text: str):
    """A command-line override value: int, float, bool, None or a string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def make_config(base: ml_collections.ConfigDict, *overrides: dict) -> ml_collections.ConfigDict:
    """A copy of `base` with each {dotted key: value} of `overrides` set (KeyError if unknown)."""
    config = ml_collections.ConfigDict(base.to_dict())
    for ov in overrides:
        for key, value in ov.items():
            _set(config, key, value)
    return config


def effective_overrides(base: ml_collections.ConfigDict, variant: Variant) -> dict:
    """The variant's overrides that differ from the base config (so equal variants share a
    key)."""
    return {k: v for k, v in sorted(variant.overrides) if get_value(base, k) != v}


def format_value(v) -> str:
    """An override value as tables and directory names show it (floats as %g)."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def run_key(base: ml_collections.ConfigDict, variant: Variant) -> str:
    """A directory name for the variant's run: 'base', or its effective overrides."""
    ov = effective_overrides(base, variant)
    if not ov:
        return "base"
    text = ",".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in ov.items())
    return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in text)


def budget_tag(config_path: str, budget_name: str, budget: dict, extra: dict) -> str:
    """The folder of a budget under the work root: config, budget, steps, extra overrides."""
    stem = os.path.splitext(os.path.basename(config_path))[0] or "config"
    steps = budget.get("train.num_train_steps")
    tag = f"{stem}-{budget_name}" + (f"-{steps}" if steps else "")
    extra = {k: v for k, v in extra.items() if k != "data.path"}  # where, not what
    if extra or budget_name not in ("cpu", "full"):
        blob = json.dumps([budget, extra], sort_keys=True, default=str)
        tag += "-" + hashlib.sha1(blob.encode()).hexdigest()[:8]
    return tag


# ------------------------------------------------------------------------------ training
def _read(path: str) -> dict:
    return read_json(path) or {}


def is_finished(workdir: str) -> bool:
    """Training reached its final step: recorded as finished, and that step's checkpoint is
    the latest on disk."""
    rec = _read(os.path.join(workdir, RESULT_FILE))
    steps = run_lib.saved_steps(workdir)
    return bool(rec.get("finished_step")) and bool(steps) and steps[-1] == rec["finished_step"]


def train_run(
    config: ml_collections.ConfigDict, workdir: str, train_fn: Callable | None = None
) -> dict:
    """Trains (or resumes) unless finished; returns the run's record. Wall time accumulates
    over resumptions; a failed run is recorded with its error (not raised), so a grid goes on.
    train_fn(config, workdir) -> (state, metrics): `train.train_and_evaluate` by default."""
    path = os.path.join(workdir, RESULT_FILE)
    if is_finished(workdir):
        log.info(
            "%s: finished at step %d, not trained again.", workdir, _read(path)["finished_step"]
        )
        return _read(path)
    train_fn = train_fn or train_lib.train_and_evaluate
    os.makedirs(workdir, exist_ok=True)
    rec = _read(path)
    rec.pop("error", None)
    t0 = time.time()
    try:
        state, _ = train_fn(config, workdir)
    except KeyboardInterrupt:
        rec["train_seconds"] = rec.get("train_seconds", 0.0) + time.time() - t0
        write_json(path, rec)
        raise
    except Exception as e:  # noqa: BLE001 - a failed run is reported, the grid goes on
        rec["train_seconds"] = rec.get("train_seconds", 0.0) + time.time() - t0
        rec["error"] = first_line(e, 300)
        write_json(path, rec)
        log.error("%s failed: %s", workdir, rec["error"])
        return rec
    rec["train_seconds"] = rec.get("train_seconds", 0.0) + time.time() - t0
    rec["finished_step"] = int(state.step)
    rec["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_json(path, rec)
    return rec


def curves(workdir: str) -> dict:
    """Train loss and validation loss/BLEU by step from metrics.jsonl: {name: [(step, value)]}."""
    records = read_metrics(workdir)
    series = {
        "train_loss": ("train", "loss"),
        "valid_loss": ("valid", "loss"),
        "valid_bleu": ("valid", "bleu"),
    }
    return {
        name: list(zip(*plots.metric_series(records, split, key), strict=True))
        for name, (split, key) in series.items()
    }


# ------------------------------------------------------------------------------ scoring
_TEST_CACHE: dict = {}


def test_split(config, workdir: str) -> tuple[list[str], list[str]]:
    """(sources, references) of the test split (cached per data config)."""
    key = json.dumps(config.data.to_dict(), sort_keys=True, default=str)
    if key not in _TEST_CACHE:
        _TEST_CACHE[key] = load_split(config, workdir, "test")
    return _TEST_CACHE[key]


def bleu_ci(
    hypotheses: list[str], references: list[str], n_bootstrap: int = 1000
) -> tuple[float, float]:
    """(BLEU, half-width of sacreBLEU's 95% bootstrap confidence interval): resampling the
    test sentences (sacreBLEU's seed 12345) shows how much of a BLEU difference is noise."""
    score = sacrebleu.metrics.BLEU().corpus_score(
        hypotheses, [list(references)], n_bootstrap=n_bootstrap
    )
    return float(score.score), float(score._ci)


def _with_ci(scores: dict, hypotheses: list[str], references: list[str]) -> None:
    bleu, ci = bleu_ci(hypotheses, references)
    if abs(bleu - scores["bleu"]) > 1e-6:
        log.warning(
            "Bootstrap BLEU %.4f differs from the scored %.4f (reference text?).",
            bleu,
            scores["bleu"],
        )
    scores["bleu_ci"] = ci


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def _score(
    translator, config, workdir: str, decoding: Decoding, max_len: int, hyp_path: str
) -> dict:
    """Test-split scores of one checkpoint under one decoding (through `Translator.evaluate`,
    the library's one decoding path); the hypotheses are written to hyp_path."""
    sources, refs = test_split(config, workdir)
    r = translator.evaluate(
        sources,
        refs,
        beam_size=decoding.beam_size,
        alpha=decoding.alpha,
        max_len=max_len,
        overlong="truncate",
    )  # as evaluate.py --split
    hyps = r.pop("hypotheses")
    os.makedirs(os.path.dirname(hyp_path), exist_ok=True)
    with open(hyp_path, "w", encoding="utf-8") as f:
        f.write("".join(h + "\n" for h in hyps))
    scores = {
        k: r[k]
        for k in (
            "bleu",
            "chrf",
            "bleu_signature",
            "chrf_signature",
            "bleu_detail",
            "sentences",
            "seconds",
            "sentences_per_sec",
            "unfinished",
        )
    }
    _with_ci(scores, hyps, refs)
    log.info(
        "%s step %d %s: test BLEU %.2f, chrF %.2f",
        workdir,
        translator.step,
        decoding.name,
        r["bleu"],
        r["chrf"],
    )
    return scores


def evaluate_run(config, workdir: str, decodings: Sequence[Decoding]) -> dict:
    """Test-split scores of the best-by-validation and the last checkpoint under each decoding:
    {'best': {decoding name: scores}, 'last': {...}, 'best_step', 'last_step'}. Cached in the
    run's record; decoding steps = config.eval.max_decode_len (the validation setting, the
    tutorial's MAX_LENGTH for configs/base.py)."""
    path = os.path.join(workdir, RESULT_FILE)
    rec = _read(path)
    cache = rec.setdefault("test", {})
    with run_lib.Checkpoints(workdir) as ckpts:
        steps = {"best": ckpts.resolve("best"), "last": ckpts.resolve("latest")}
    max_len = int(config.eval.max_decode_len)
    out: dict = {"best_step": steps["best"], "last_step": steps["last"]}
    translators: dict = {}
    for which, step in steps.items():
        out[which] = {}
        for s in decodings:
            key = f"step={step},beam={s.beam_size},alpha={s.alpha:g},max_len={max_len}"
            hyp_path = os.path.join(workdir, HYPOTHESES_DIR, key.replace(",", "_") + ".txt")
            if key in cache and "bleu_ci" not in cache[key] and os.path.exists(hyp_path):
                # scored before intervals were recorded: add one from the kept hypotheses
                _with_ci(cache[key], _read_lines(hyp_path), test_split(config, workdir)[1])
                write_json(path, rec)
            if key not in cache or "bleu_ci" not in cache[key]:
                if step not in translators:
                    translators[step] = inference.Translator.from_workdir(workdir, step)
                cache[key] = _score(translators[step], config, workdir, s, max_len, hyp_path)
                write_json(path, rec)
            out[which][s.name] = cache[key]
    return out


def run_row(
    base: ml_collections.ConfigDict,
    variant: Variant,
    group: Group,
    root: str,
    budget: dict,
    train_fn: Callable | None = None,
) -> dict:
    """Trains (unless finished) and scores one variant of a group under ROOT/run_key: the row
    of its table, with the curves the plots draw."""
    key = run_key(base, variant)
    workdir = os.path.join(root, key)
    overrides = effective_overrides(base, variant)
    config = make_config(base, budget, overrides)
    config.train.progress_bar = False
    log.info("[%s] %s -> %s", group.name, variant.name, workdir)
    rec = train_run(config, workdir, train_fn)
    row = {
        "run": variant.name,
        "key": key,
        "overrides": overrides,
        "workdir": workdir,
        "train_seconds": rec.get("train_seconds"),
        "steps": rec.get("finished_step"),
        "error": rec.get("error"),
    }
    if not rec.get("error"):
        try:
            row["test"] = evaluate_run(config, workdir, group.decodings)
        except Exception as e:  # noqa: BLE001 - report, go on with the grid
            row["error"] = f"evaluation: {type(e).__name__}: {e}"
            log.error("%s: %s", workdir, row["error"])
    c = row["curves"] = curves(workdir)
    row["final_train_loss"] = c["train_loss"][-1][1] if c["train_loss"] else None
    if c["valid_bleu"]:
        step, bleu = max(c["valid_bleu"], key=lambda p: p[1])
        row["best_valid_bleu"], row["best_valid_step"] = bleu, step
    if group.sweep:
        row["x"] = get_value(config, group.sweep)
    return row
