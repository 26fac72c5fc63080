"""Orbax checkpoints: save every N steps, keep the latest and the best, resume exactly.

A checkpoint holds the train state (params, optimizer state, step), the data iterator's state
(so a resumed run sees the batches an uninterrupted one would) and a small JSON `meta` item
(the run's config and the metrics at that step). The vocabularies and the config also live as
plain files in the workdir (`src_vocab.txt`, `tgt_vocab.txt`, `config.json`), so evaluation
never rebuilds anything from the corpus.

Layout: WORKDIR/checkpoints/<step>/{state, data_iter, meta}.
"""

from __future__ import annotations

import json
import logging
import os

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
BEST_FILE = "best.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, unreadable, or from another model."""


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


class Checkpointer:
    """Wraps an `ocp.CheckpointManager` with the project's keep/restore policy.

    Keeps the `keep_latest` newest checkpoints (at least 2, so that a corrupt latest one has a
    fallback) and the best one by `best_metric` (higher is better, e.g. BLEU).
    """

    def __init__(self, workdir: str, *, keep_latest: int = 2, best_metric: str | None = "bleu",
                 async_save: bool = True, read_only: bool = False):
        self.workdir = workdir
        if read_only:  # evaluation: writes nothing, even beside a running training
            if not os.path.isdir(checkpoint_dir(workdir)):
                raise CheckpointError(
                    f"No checkpoint in {checkpoint_dir(workdir)}. Train first: python "
                    f"scripts/train.py --config configs/base.py --workdir {workdir}")
            self.manager = ocp.CheckpointManager(
                checkpoint_dir(workdir), item_names=("state", "data_iter", "meta"),
                options=ocp.CheckpointManagerOptions(read_only=True, create=False))
            return
        self.best_metric = best_metric
        keep = [policies.LatestN(n=max(2, keep_latest))]
        if best_metric:
            keep.append(
                policies.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            checkpoint_dir(workdir),
            item_names=("state", "data_iter", "meta"),
            options=options,
        )

    # ----------------------------------------------------------------------------- save
    def save(self, step: int, state, data_iter, meta: dict, metrics: dict | None = None,
             force: bool = False) -> bool:
        """Saves state + iterator + meta at `step`; `metrics` (floats) rank the best one."""
        metrics = None if not metrics else {k: float(v) for k, v in metrics.items()}
        if (metrics is not None and self.best_metric is not None
                and self.best_metric not in metrics):
            metrics = None  # a metric-less checkpoint is kept only while it is among the latest
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave({**meta, "step": int(step), "metrics": metrics}),
        )
        saved = self.manager.save(step, args=args, metrics=metrics, force=force)
        if saved and metrics is not None and self.best_metric is not None:
            self._update_best(step, metrics)
        return saved

    def _update_best(self, step: int, metrics: dict) -> None:
        if jax.process_index() != 0:
            return
        path = os.path.join(self.workdir, BEST_FILE)
        best = read_json(path)
        if best is None or metrics[self.best_metric] > best[self.best_metric]:
            with open(path, "w") as f:
                json.dump({"step": int(step), **metrics}, f)

    def wait(self) -> None:
        """Blocks until an asynchronous save has finished."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    # -------------------------------------------------------------------------- restore
    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def best_step(self) -> int | None:
        best = read_json(os.path.join(self.workdir, BEST_FILE))
        if best is not None and best["step"] in self.all_steps():
            return int(best["step"])
        return None

    def restore_latest(self, abstract_state, data_iter):
        """Restores the newest readable checkpoint into (state, data_iter).

        A corrupt or partial checkpoint is skipped with a warning and the previous one is used.
        Returns (state, step) or (None, None) when the workdir holds no checkpoint.
        """
        for step in reversed(self.all_steps()):
            try:
                return self.restore(step, abstract_state, data_iter), step
            except Exception as e:  # noqa: BLE001 - any failure means "unreadable"
                log.warning("Checkpoint at step %d is unreadable (%s: %s); trying the previous "
                            "one.", step, type(e).__name__, e)
        if self.all_steps():
            raise CheckpointError(
                f"No readable checkpoint in {checkpoint_dir(self.workdir)}: every step "
                f"{self.all_steps()} failed to restore. Move the directory away to start afresh."
            )
        return None, None

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restores one step; `data_iter` (if given) is set to the saved iterator position."""
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def restore_params(self, step: int, abstract_params):
        """Only the `params` of the train state at `step` (the optimizer state is never read),
        as numpy arrays shaped like `abstract_params`; a shape mismatch is a CheckpointError."""
        restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray),
                                    abstract_params)
        args = ocp.args.PyTreeRestore(item={"params": abstract_params},
                                      restore_args={"params": restore_args}, partial_restore=True)
        params = self.manager.restore(step, args=ocp.args.Composite(state=args))["state"]["params"]
        got = jax.tree_util.tree_flatten_with_path(params)[0]
        want = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
        for (path, x), (_, a) in zip(got, want, strict=True):
            if x.shape != a.shape:
                raise CheckpointError(
                    f"parameter {jax.tree_util.keystr(path)} has shape {x.shape} in the "
                    f"checkpoint but {a.shape} in the model of {CONFIG_FILE}.")
        return params

    def restore_meta(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return restored["meta"]


def read_json(path: str):
    """The JSON content of `path`, or None if it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def resolve_step(ckpt: Checkpointer, which: str | int) -> int:
    """'latest' | 'best' | a step number -> an existing step, or a clear CheckpointError."""
    steps = ckpt.all_steps()
    if not steps:
        raise CheckpointError(
            f"No checkpoint in {checkpoint_dir(ckpt.workdir)}. Train first: "
            f"python scripts/train.py --config configs/base.py --workdir {ckpt.workdir}"
        )
    if which == "latest":
        return steps[-1]
    if which == "best":
        step = ckpt.best_step()
        if step is None:
            best = read_json(os.path.join(ckpt.workdir, BEST_FILE))
            why = ("no validation BLEU yet" if best is None
                   else f"its step {best['step']} is no longer on disk")
            log.warning("No best checkpoint (%s); using the latest, step %d.", why, steps[-1])
            return steps[-1]
        return step
    try:
        step = int(which)
    except ValueError:
        raise CheckpointError(
            f"--checkpoint must be 'latest', 'best' or a step number, not {which!r}."
        ) from None
    if step not in steps:
        raise CheckpointError(f"No checkpoint at step {step}; available steps: {steps}.")
    return step
