"""Checkpoint averaging: the mean of the parameters of a run's last N or best N checkpoints,
saved as the run's averaged checkpoint (`layout.AVERAGED`).

    average_checkpoints("runs/base", last=5)      # or best=5 (by the validation BLEU saved)
    Translator.from_workdir("runs/base", AVERAGED)  # or the name, as a user types it
    python scripts/evaluate.py --workdir runs/base --checkpoint averaged

Layout: WORKDIR/averaged/<version>/{params, meta}, an Orbax directory of its own beside
WORKDIR/checkpoints, so that the training checkpoints, their keep-latest/best policy and a
resumed run (which restores the newest training checkpoint) never see it. Each averaging
writes version n+1 atomically (Orbax writes a temporary directory and renames it) and then
drops the older one; readers take the newest complete version. `meta` says which steps were
averaged and how they were chosen, with the run's config and the vocabulary files' sha256 (the
same for every averaged step, and checked again when the averaged checkpoint is loaded).

Averaging holds the run's training lock (WORKDIR/.lock, `files.Lock`) from listing the steps
to writing the average, so that a live training never rotates away a step being read: it is
refused (WorkdirError naming the holder) while a training runs, and a training started meanwhile
is refused until it ends. A step that vanishes anyway is told from a damaged one.

A client of `jaxattn.rundir.run`, which lists, reads and writes the checkpoints (the averaged
one included: `run.Checkpoints.resolve(AVERAGED)`, `read_params(AVERAGED, ...)`, `meta`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

import jax
import numpy as np

from jaxattn.errors import CheckpointError, LockHeld, UsageError, WorkdirError, first_line
from jaxattn.metrics import BEST_METRICS
from jaxattn.rundir import files as workdir_lib
from jaxattn.rundir import run as run_lib
from jaxattn.rundir.layout import AVERAGED, Step, checkpoint_dir, corrupt_dir, step_dir


def _path(key_path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in key_path)


# ------------------------------------------------------------------------------- the mean
def average_params(trees: Sequence) -> dict:
    """The leaf-wise mean of parameter trees of one structure, as numpy arrays.

    Floating leaves: the mean in float64, cast back to the leaf's dtype. Integer and boolean
    leaves (counters, step numbers) are not averaged: they must be equal in every tree and are
    kept; if they differ, ValueError naming the leaf. ValueError too for no trees or trees of
    different structures or shapes.
    """
    if not trees:
        raise ValueError("average_params needs at least one tree.")
    flat = [jax.tree_util.tree_flatten_with_path(t) for t in trees]
    treedef = flat[0][1]
    for _, other in flat[1:]:
        if other != treedef:
            raise ValueError(f"The trees differ in structure: {treedef} vs {other}.")
    out = []
    for i, (key_path, _) in enumerate(flat[0][0]):
        name = _path(key_path)
        values = [np.asarray(leaves[i][1]) for leaves, _ in flat]
        if len({v.shape for v in values}) > 1:
            raise ValueError(f"Leaf {name} has different shapes: {[v.shape for v in values]}.")
        dtype = values[0].dtype
        if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
            mean = np.mean(
                np.stack(values).astype(np.complex128 if dtype.kind == "c" else np.float64), axis=0
            )
            out.append(mean.astype(dtype))
        elif all(np.array_equal(values[0], v) for v in values[1:]):
            out.append(values[0])
        else:
            raise ValueError(
                f"Leaf {name} ({dtype}) is not a floating-point parameter and "
                "differs between the checkpoints; it cannot be averaged."
            )
    return jax.tree_util.tree_unflatten(treedef, out)


# ---------------------------------------------------------------------- which checkpoints
def select_steps(
    ckpt: run_lib.Checkpoints,
    *,
    last: int | None = None,
    best: int | None = None,
    metric: str | None = None,
) -> list[int]:
    """The steps to average (ascending): the `last` newest, or the `best` by `metric` (a name
    in `metrics.BEST_METRICS`; None = the run's train.best_metric, which ranks its best
    checkpoint; ties go to the newer step). Exactly one of last/best; CheckpointError when the
    run has fewer such checkpoints, UsageError for N < 1 or an unknown metric."""
    if (last is None) == (best is None):
        raise UsageError(
            "Give exactly one of last=N (the newest N checkpoints) and best=N "
            "(the N with the best validation train.best_metric)."
        )
    metric = metric or ckpt.best_metric
    if metric not in BEST_METRICS:
        raise UsageError(f"metric must be one of {', '.join(BEST_METRICS)}, not {metric!r}.")
    n = last if last is not None else best
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(
            f"The number of checkpoints to average must be an integer >= 1, not {n!r}."
        )
    where = checkpoint_dir(ckpt.workdir)
    steps = ckpt.steps()
    if not steps:
        raise CheckpointError(
            f"No checkpoint in {where} to average. Train first: python "
            f"scripts/train.py --config configs/base.py --workdir "
            f"{ckpt.workdir}"
        )
    keep_more = (
        "Train with a larger train.keep_checkpoints (the newest kept; the best one by "
        "BLEU is kept too) to have more."
    )
    if last is not None:
        if n > len(steps):
            raise CheckpointError(
                f"Cannot average the last {n} checkpoints: {where} holds "
                f"{len(steps)} (steps {steps}). {keep_more}"
            )
        return steps[-n:]
    sign = 1 if BEST_METRICS[metric] else -1  # higher is better, or lower (the loss)
    scored = [
        (sign * m[metric], s)
        for s in steps
        if isinstance((m := ckpt.metrics(s)).get(metric), (int, float))
    ]
    if not scored:  # nothing to rank: more checkpoints or training would not help
        config = ckpt.meta(steps[-1]).get("config")
        evals = config.get("eval") if isinstance(config, dict) else None
        off = metric == "bleu" and isinstance(evals, dict) and evals.get("bleu") is False
        label = "BLEU" if metric == "bleu" else metric
        raise CheckpointError(
            f"Cannot average the best {n} checkpoints by {metric}: this run has no validation "
            f"{label} (none of the {len(steps)} checkpoints in {where}, steps {steps}, carries "
            + (
                "one; it was trained with config.eval.bleu=False)"
                if off
                else "one: trained with config.eval.bleu=False, or never validated at a saved step)"
            )
            + f". Average the newest ones instead: --last {min(n, len(steps))} (last="
            f"{min(n, len(steps))} in Python)."
        )
    if n > len(scored):
        raise CheckpointError(
            f"Cannot average the best {n} checkpoints by {metric}: {len(scored)} of the "
            f"{len(steps)} in {where} (steps {steps}) have a validation {metric}. {keep_more} "
            "Checkpoints saved at eval_every steps carry one."
        )
    return sorted(s for _, s in sorted(scored, reverse=True)[:n])


# --------------------------------------------------------------------- write and read back
def average_checkpoints(
    workdir: str, *, last: int | None = None, best: int | None = None, metric: str | None = None
) -> dict:
    """Averages the parameters of the run's `last` N or `best` N checkpoints (see
    `select_steps`) into WORKDIR/averaged, replacing an earlier average; returns its meta
    (steps, how chosen, source metrics). The vocabulary files must be those every averaged
    step was trained with (CheckpointError naming the file otherwise). Holds the run's
    training lock meanwhile: WorkdirError while a training runs on `workdir`."""
    workdir = os.fspath(workdir)
    with _holding_the_run(workdir):  # no training rotates the steps read meanwhile
        with run_lib.Checkpoints(workdir) as ckpt:
            metric = metric or ckpt.best_metric
            steps = select_steps(ckpt, last=last, best=best, metric=metric)
            for step in steps:
                ckpt.check_vocab_files(step)
            params = average_params(_read_params(ckpt, steps))
            newest = ckpt.meta(steps[-1])
            meta = {
                "name": AVERAGED,
                "steps": steps,
                "method": "last" if last is not None else "best",
                "n": len(steps),
                "metric": metric,
                "sources": {str(s): ckpt.metrics(s) for s in steps},
                "metrics": {},  # this average has not been validated
                "config": newest.get("config"),
                "vocab_sha256": newest.get("vocab_sha256") or {},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        run_lib.write_averaged(workdir, params, meta)
    return meta


@contextlib.contextmanager
def _holding_the_run(workdir: str):
    """Holds the run's training lock (WORKDIR/.lock, `workdir.Lock`) while averaging, so that
    no training saves or rotates away checkpoints being read (and no second averaging writes
    WORKDIR/averaged); WorkdirError naming the holder while a live process holds it. A lock
    left by a dead training is taken over, as a training does. Nothing for a workdir without
    checkpoints/ (Checkpointer then says there is nothing to average)."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        yield
        return
    lock = workdir_lib.Lock(workdir)
    try:
        lock.acquire()
    except LockHeld as e:  # a live process (the kernel drops a dead one's lock)
        raise WorkdirError(
            f"Cannot average {workdir} now: a training (or another averaging) is running on it "
            f"({e.holder}, holding {lock.path}); a live training saves and deletes checkpoints "
            "while they would be read. Average when it has finished, or stop it first (Ctrl-C "
            "saves a checkpoint)."
        ) from None
    except OSError as e:
        raise WorkdirError(
            f"Cannot average into {workdir}: cannot open its lock file "
            f"{lock.path} ({e.strerror or e}); the run must be writable to "
            f"hold {AVERAGED}/."
        ) from None
    try:
        yield
    finally:
        lock.release()


def _read_params(ckpt: run_lib.Checkpoints, steps: list[Step]) -> list:
    """The parameters of each step, shaped as the newest one saved them; CheckpointError naming
    an unreadable step (files deleted or truncated) and how to set it aside."""
    trees = []
    for step in reversed(steps):  # the newest first: it fixes the shapes
        try:
            if not trees:
                abstract = ckpt.saved_params(step)
            trees.append(ckpt.read_params(step, abstract))
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure: this step is unusable
            where = step_dir(ckpt.workdir, step)
            if not os.path.isdir(where):  # removed since it was listed: not damage
                raise CheckpointError(
                    f"The checkpoint {where} vanished while it was being read (its directory "
                    "no longer exists): a training on the run (keeping only its newest "
                    "checkpoints and the best) or someone removed it, after it was chosen. "
                    "Average again: the steps the run holds now are chosen."
                ) from None
            raise CheckpointError(
                f"Cannot read the checkpoint {where} ({first_line(e)}); it is incomplete or "
                f"damaged. Move it aside (mv {where} {corrupt_dir(ckpt.workdir, step)}; "
                "a resumed training does the same) and average again."
            ) from None
    return trees[::-1]
