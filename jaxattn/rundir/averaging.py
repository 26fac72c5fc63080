"""Checkpoint averaging: the mean of the parameters of a run's last N or best N checkpoints,
saved as the run's "averaged" checkpoint.

    average_checkpoints("runs/base", last=5)      # or best=5 (by the validation BLEU saved)
    Translator.from_workdir("runs/base", "averaged")
    python scripts/evaluate.py --workdir runs/base --checkpoint averaged

Layout: WORKDIR/averaged/<version>/{params, meta}, an Orbax directory of its own beside
WORKDIR/checkpoints, so that the training checkpoints, their keep-latest/best policy and a
resumed run (which restores the newest training checkpoint) never see it. Each averaging
writes version n+1 atomically (Orbax writes a temporary directory and renames it) and then
drops the older one; readers take the newest complete version. `meta` says which steps were
averaged and how they were chosen, with the run's config and the vocabulary files' sha256 (the
same for every averaged step, and checked again when the averaged checkpoint is loaded).

Averaging holds the run's training lock (WORKDIR/.lock, `workdir.Lock`) from listing the steps
to writing the average, so that a live training never rotates away a step being read: it is
refused (WorkdirError naming the holder) while a training runs, and a training started meanwhile
is refused until it ends. A step that vanishes anyway is told from a damaged one.

`checkpoints.resolve_step(ckpt, "averaged")` and `Checkpointer.restore_params` / `meta` accept
the name, so everything that restores a checkpoint by name accepts it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxattn.errors import CheckpointError, LockHeld, UsageError, WorkdirError, first_line
from jaxattn.rundir import checkpointer as checkpoints
from jaxattn.rundir import files as workdir_lib

AVERAGED = checkpoints.AVERAGED  # the checkpoint name; also the directory WORKDIR/averaged
_ITEMS = ("params", "meta")


def averaged_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), AVERAGED)


def _path(key_path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in key_path)


def _saved_tree(directory: str) -> dict:
    """The tree of jax.ShapeDtypeStruct an Orbax PyTree item directory holds."""
    metadata = ocp.PyTreeCheckpointer().metadata(directory)
    tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)


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
    ckpt: checkpoints.Checkpointer,
    *,
    last: int | None = None,
    best: int | None = None,
    metric: str = "bleu",
) -> list[int]:
    """The steps to average (ascending): the `last` newest, or the `best` by `metric` (higher
    is better; ties go to the newer step). Exactly one of last/best; CheckpointError when the
    run has fewer such checkpoints, UsageError for N < 1."""
    if (last is None) == (best is None):
        raise UsageError(
            "Give exactly one of last=N (the newest N checkpoints) and best=N "
            "(the N with the highest validation BLEU)."
        )
    n = last if last is not None else best
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(
            f"The number of checkpoints to average must be an integer >= 1, not {n!r}."
        )
    where = checkpoints.checkpoint_dir(ckpt.workdir)
    steps = ckpt.all_steps()
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
    scored = [
        (m[metric], s)
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
    workdir: str, *, last: int | None = None, best: int | None = None, metric: str = "bleu"
) -> dict:
    """Averages the parameters of the run's `last` N or `best` N checkpoints (see
    `select_steps`) into WORKDIR/averaged, replacing an earlier average; returns its meta
    (steps, how chosen, source metrics). The vocabulary files must be those every averaged
    step was trained with (CheckpointError naming the file otherwise). Holds the run's
    training lock meanwhile: WorkdirError while a training runs on `workdir`."""
    workdir = os.fspath(workdir)
    with _holding_the_run(workdir):  # no training rotates the steps read meanwhile
        with checkpoints.Checkpointer(workdir, read_only=True) as ckpt:
            steps = select_steps(ckpt, last=last, best=best, metric=metric)
            for step in steps:
                checkpoints.check_vocab_files(workdir, ckpt, step)
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
        _save_averaged(workdir, params, meta)
    return meta


@contextlib.contextmanager
def _holding_the_run(workdir: str):
    """Holds the run's training lock (WORKDIR/.lock, `workdir.Lock`) while averaging, so that
    no training saves or rotates away checkpoints being read (and no second averaging writes
    WORKDIR/averaged); WorkdirError naming the holder while a live process holds it. A lock
    left by a dead training is taken over, as a training does. Nothing for a workdir without
    checkpoints/ (Checkpointer then says there is nothing to average)."""
    if not os.path.isdir(checkpoints.checkpoint_dir(workdir)):
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


def _save_averaged(workdir: str, params, meta: dict) -> None:
    """Writes version n+1 of WORKDIR/averaged (Orbax: atomically), dropping the older one."""
    manager = ocp.CheckpointManager(
        averaged_dir(workdir),
        item_names=_ITEMS,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=False,
        ),
    )
    try:
        version = (manager.latest_step() or 0) + 1
        manager.save(
            version,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)
            ),
        )
        manager.wait_until_finished()
    finally:
        manager.close()


def _read_params(ckpt: checkpoints.Checkpointer, steps: list[int]) -> list:
    """The parameters of each step, shaped as the newest one saved them; CheckpointError naming
    an unreadable step (files deleted or truncated) and how to set it aside."""
    trees = []
    for step in reversed(steps):  # the newest first: it fixes the shapes
        try:
            if not trees:
                abstract = _saved_tree(
                    os.path.join(checkpoints.checkpoint_dir(ckpt.workdir), str(step), "state")
                )["params"]
            trees.append(ckpt.restore_params(step, abstract))
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure: this step is unusable
            where = os.path.join(checkpoints.checkpoint_dir(ckpt.workdir), str(step))
            if not os.path.isdir(where):  # removed since it was listed: not damage
                raise CheckpointError(
                    f"The checkpoint {where} vanished while it was being read (its directory "
                    "no longer exists): a training on the run (keeping only its newest "
                    "checkpoints and the best) or someone removed it, after it was chosen. "
                    "Average again: the steps the run holds now are chosen."
                ) from None
            raise CheckpointError(
                f"Cannot read the checkpoint {where} ({first_line(e)}); it is incomplete or "
                f"damaged. Move it aside (mv {where} {os.path.dirname(where)}/corrupt-{step}; "
                "a resumed training does the same) and average again."
            ) from None
    return trees[::-1]


def _reader(workdir: str) -> tuple[ocp.CheckpointManager, int]:
    """A read-only manager of WORKDIR/averaged and its newest version; CheckpointError if
    there is none."""
    where = averaged_dir(workdir)
    version = None
    if os.path.isdir(where):
        manager = ocp.CheckpointManager(
            where,
            item_names=_ITEMS,
            options=(ocp.CheckpointManagerOptions(read_only=True, create=False)),
        )
        version = manager.latest_step()
        if version is None:
            manager.close()
    if version is None:
        raise CheckpointError(
            f"No averaged checkpoint in {workdir} (no {where}). Make one first: python "
            f"scripts/average.py --workdir {workdir} --last 5 (or --best 5)."
        )
    return manager, version


def averaged_version(workdir: str) -> int:
    """The newest complete version in WORKDIR/averaged; CheckpointError (saying how to make
    one) if there is none."""
    manager, version = _reader(workdir)
    manager.close()
    return version


def averaged_meta(workdir: str) -> dict | None:
    """The meta of the run's averaged checkpoint, or None if it has none."""
    try:
        manager, version = _reader(workdir)
    except CheckpointError:
        return None
    try:
        meta = checkpoints._read_quietly(
            os.path.join(averaged_dir(workdir), str(version), "meta", "metadata")
        )
    finally:
        manager.close()
    return meta if isinstance(meta, dict) else None


def restore_averaged(ckpt: checkpoints.Checkpointer, abstract_params) -> dict:
    """The averaged parameters of `ckpt`'s run as numpy arrays shaped like `abstract_params`;
    CheckpointError if there are none or they do not fit the model (naming the parameter and
    the vocabulary file). `Checkpointer.restore_params(AVERAGED, ...)` calls this."""
    manager, version = _reader(ckpt.workdir)
    try:
        saved = checkpoints._shapes(
            _saved_tree(os.path.join(averaged_dir(ckpt.workdir), str(version), "params"))
        )
        for name, shape in checkpoints._shapes(abstract_params).items():
            if saved.get(name) != shape:
                raise CheckpointError(ckpt.shape_message(AVERAGED, name, saved.get(name), shape))
        restore_args = jax.tree.map(
            lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), abstract_params
        )
        args = ocp.args.PyTreeRestore(item=abstract_params, restore_args=restore_args)
        return manager.restore(version, args=ocp.args.Composite(params=args))["params"]
    finally:
        manager.close()
