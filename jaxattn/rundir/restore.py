"""Restoring trained runs for inference: a run's config and text processing (no corpus), the
parameters of one checkpoint (no optimizer state), and the check that several runs can decode
as one ensemble (the same vocabularies and text processing on both sides).

    run = restore.load_run("runs/a")                   # config + tokenizers + vocabularies
    restore.check_ensemble([run, restore.load_run("runs/b")])    # InferenceError if not
    params, step = restore.restore_params(run, "best")
    [(run_a, params_a, step_a), (run_b, ...)] = restore.restore_runs(["runs/a", "runs/b"], "best")
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxattn import config as config_lib
from jaxattn import data as data_lib
from jaxattn.data.processing import SRC_VOCAB_FILE, TGT_VOCAB_FILE, TextProcessing
from jaxattn.errors import ConfigError, InferenceError, UsageError, WorkdirError, first_line
from jaxattn.model.seq2seq import build_model
from jaxattn.rundir.averaging import averaged_dir
from jaxattn.rundir.checkpointer import (
    AVERAGED,
    CONFIG_FILE,
    Checkpointer,
    CheckpointError,
    check_selector,
    check_vocab_files,
    checkpoint_dir,
    quiet_failed_reads,
    resolve_step,
)


class Run(NamedTuple):
    """A training run's directory with its config and text processing, loaded."""

    workdir: str
    config: Any  # ml_collections.ConfigDict
    text: TextProcessing


def load_run(workdir: str) -> Run:
    """The run's config.json (over the defaults) and its tokenizers and vocabularies."""
    if not isinstance(workdir, (str, os.PathLike)):
        raise UsageError(f"workdir must be a directory path, not {workdir!r}.")
    workdir = os.fspath(workdir)
    try:
        config = config_lib.load_config(workdir)
    except (ConfigError, WorkdirError) as e:
        raise InferenceError(str(e)) from None
    try:
        text = data_lib.load_text_processing(config.data, workdir)
    except (FileNotFoundError, ValueError) as e:
        raise InferenceError(f"Cannot load the vocabularies of {workdir}: {e}") from None
    return Run(workdir, config, text)


def restore_params(run: Run, checkpoint: str | int = "latest"):
    """(params, step) of the run's checkpoint 'latest', 'best', 'averaged' or a step;
    UsageError (a ValueError) for any other `checkpoint` (bool included); InferenceError if it
    is missing, unreadable or trained with other vocabulary files."""
    _check_checkpoint(checkpoint)
    model = build_model(
        run.config.model,
        len(run.text.src_vocab),
        len(run.text.tgt_vocab),
        bos_id=run.text.tgt_vocab.bos_id,
    )
    example = jnp.zeros((1, 2), jnp.int32)
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), example, jnp.array([2]), example)
    )["params"]
    step, failure = checkpoint, None
    # the failure is raised outside: a failed read's exception (and Orbax's abandoned read
    # coroutines it holds) is freed inside quiet_failed_reads, which drops their noise
    with quiet_failed_reads() as reads:
        try:
            with Checkpointer(run.workdir, read_only=True) as ckpts:
                step = resolve_step(ckpts, checkpoint)
                params = ckpts.restore_params(step, abstract)
                check_vocab_files(run.workdir, ckpts, step)
        except CheckpointError as e:
            failure = str(e)
        except Exception as e:  # noqa: BLE001 - any failure: this checkpoint is unusable
            reads.failed = True
            failure = _unreadable(run.workdir, step, e)
    if failure is not None:
        raise InferenceError(failure)
    return params, step


def _check_checkpoint(checkpoint) -> None:
    """UsageError (a bad argument) unless `checkpoint` is a checkpoint selector."""
    try:
        check_selector(checkpoint)
    except CheckpointError as e:
        raise UsageError(str(e)) from None


def _unreadable(workdir: str, step, error: BaseException) -> str:
    """Why a checkpoint's parameters could not be read, and which others there are."""
    why = first_line(error, 300)
    if step == AVERAGED:
        return (
            f"Cannot restore the averaged checkpoint in {averaged_dir(workdir)} ({why}); it "
            f"is incomplete or damaged. Make it again: python scripts/average.py --workdir "
            f"{workdir} --last N (or --best N)."
        )
    try:
        with Checkpointer(workdir, read_only=True) as ckpts:
            others = [s for s in ckpts.all_steps() if s != step]
    except Exception:  # noqa: BLE001 - only for the hint
        others = []
    return (
        f"Cannot restore the parameters of step {step} in {checkpoint_dir(workdir)} ({why})."
        f" Is it complete, and from this run's {CONFIG_FILE}? Try another --checkpoint"
        + (f" (steps: {', '.join(map(str, others))})." if others else ".")
    )


def restore_runs(workdirs, checkpoints="latest") -> list[tuple[Run, Any, int]]:
    """[(run, params, step)] of one workdir or a list (an ensemble: `check_ensemble` first, so
    a mismatch fails before any parameters are read), with one checkpoint for all or a list."""
    workdirs = list(workdirs) if isinstance(workdirs, (list, tuple)) else [workdirs]
    if isinstance(checkpoints, (list, tuple)):
        checkpoints = list(checkpoints)
    else:
        checkpoints = [checkpoints] * len(workdirs)
    if not workdirs or len(checkpoints) != len(workdirs):
        raise UsageError(
            f"Give one workdir or more, and one checkpoint for all or one each: "
            f"got {len(workdirs)} workdir(s), {len(checkpoints)} checkpoints."
        )
    for checkpoint in checkpoints:  # before any run is loaded
        _check_checkpoint(checkpoint)
    runs = [load_run(w) for w in workdirs]
    check_ensemble(runs)
    return [(r, *restore_params(r, c)) for r, c in zip(runs, checkpoints, strict=True)]


def max_src_positions(config) -> int:
    """Source positions (EOS included) the model scores: location attention's fixed number;
    0 = any."""
    return config.model.attention_max_length if config.model.attention == "location" else 0


def check_ensemble(runs: list[Run]) -> None:
    """InferenceError naming two runs and what differs unless every run has the first's
    source and target vocabularies, tokenizers (kind, normalization, case, SentencePiece
    model) and source positions."""
    first = runs[0]
    for other in runs[1:]:
        why = _difference(first, other)
        if why:
            raise InferenceError(
                f"{first.workdir} and {other.workdir} cannot decode as one "
                f"ensemble: {why}. Ensemble members need the same "
                "vocabularies and text processing."
            )


def _difference(a: Run, b: Run) -> str:
    """What differs between two runs' text processing ('' if nothing)."""
    for side, name, va, vb in (
        ("source", SRC_VOCAB_FILE, a.text.src_vocab, b.text.src_vocab),
        ("target", TGT_VOCAB_FILE, a.text.tgt_vocab, b.text.tgt_vocab),
    ):
        if va.tokens != vb.tokens:
            pairs = enumerate(zip(va.tokens, vb.tokens, strict=False))
            first = next((i for i, (x, y) in pairs if x != y), min(len(va), len(vb)))
            at = (
                f"first difference at id {first}: {va.tokens[first]!r} vs {vb.tokens[first]!r}"
                if first < min(len(va), len(vb))
                else "one extends the other"
            )
            return f"their {side} vocabularies ({name}) differ: {len(va)} vs {len(vb)} tokens, {at}"
    for side, ta, tb in (
        ("source", a.text.src_tokenizer, b.text.src_tokenizer),
        ("target", a.text.tgt_tokenizer, b.text.tgt_tokenizer),
    ):
        for what in ("kind", "normalize", "lowercase", "sp_model"):
            x, y = getattr(ta, what), getattr(tb, what)
            if x != y:
                shown = "" if what == "sp_model" else f": {x!r} vs {y!r}"
                return f"their {side} tokenizers differ in {what}{shown}"
    pa, pb = max_src_positions(a.config), max_src_positions(b.config)
    if pa != pb:
        return (
            f"their location attention scores {pa or 'any number of'} vs "
            f"{pb or 'any number of'} source positions"
        )
    return ""
