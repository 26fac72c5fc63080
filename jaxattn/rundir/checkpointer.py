"""Orbax checkpoints: save every N steps, keep the latest and the best, resume exactly.

A checkpoint holds the train state (params, optimizer state, step), the data iterator's state
(so a resumed run sees the batches an uninterrupted one would), a small JSON `meta` item (the
run's config, the metrics and the vocabulary files' sha256 at that step) and Orbax's `metrics`
item. The metrics are stored with each checkpoint, so the best one is known again after a
restart and survives however often a run is stopped, resumed or extended. WORKDIR/best.json
repeats the best step for people; nothing depends on it.

A state with EMA weights (`ema_params`, train.ema_decay > 0) keeps them in an item of their
own, `ema` (a params tree, which the 'ema' selector reads as it reads any parameters), so that
the `state` item is the same with or without them: a run resumes when EMA is turned on (the
EMA starts from the restored parameters) or off (it is dropped).

The training state's side of the run directory only (`jaxattn.rundir.layout`: the names;
`jaxattn.rundir.run`: reading any checkpoint's parameters, the averaged one included, and
the checks before a resume). Layout: WORKDIR/checkpoints/<step>/{state, data_iter, meta,
metrics, ema}; an unreadable step is moved aside to WORKDIR/checkpoints/corrupt-<step>.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import sys

import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax.training import train_state
from orbax.checkpoint import checkpoint_managers as policies

from jaxattn.errors import CheckpointError, first_line
from jaxattn.metrics import BEST_METRICS
from jaxattn.rundir import files as workdir_lib
from jaxattn.rundir import params as params_lib
from jaxattn.rundir.layout import (
    BEST_FILE,
    CONFIG_FILE,
    EMA_ITEM,
    JSON_ITEM_FILE,
    METRICS_ITEM,
    STEP_ITEMS,
    Step,
    checkpoint_dir,
    corrupt_dir,
    step_dir,
    step_item,
)

log = logging.getLogger(__name__)


class Checkpointer:
    """Wraps an `ocp.CheckpointManager` with the project's keep/restore policy.

    Keeps the `keep_latest` newest checkpoints (at least 2, so that a corrupt latest one has a
    fallback) and the best one by `best_metric` (a name in `metrics.BEST_METRICS`: BLEU and
    chrF higher is better, the loss lower). A context manager:
    `with Checkpointer(workdir, read_only=True) as ckpt: ...` closes it.
    """

    def __init__(
        self,
        workdir: str,
        *,
        keep_latest: int = 2,
        best_metric: str | None = "bleu",
        async_save: bool = True,
        read_only: bool = False,
    ):
        self.workdir, self.best_metric, self.read_only = workdir, best_metric, read_only
        names = (*STEP_ITEMS, EMA_ITEM)
        if read_only:  # evaluation: writes nothing, even beside a running training
            if not os.path.isdir(checkpoint_dir(workdir)):
                raise CheckpointError(
                    f"No checkpoint in {checkpoint_dir(workdir)}. Train first: python "
                    f"scripts/train.py --config configs/base.py --workdir {workdir}"
                )
            self.manager = ocp.CheckpointManager(
                checkpoint_dir(workdir),
                item_names=names,
                options=ocp.CheckpointManagerOptions(read_only=True, create=False),
            )
            return
        keep = [policies.LatestN(n=max(2, keep_latest))]
        best_fn = None
        if best_metric:
            # Every save passes a metrics dict (empty without validation), which Orbax stores
            # in the checkpoint, so the ranking is known again after a restart.
            best_fn = functools.partial(_score, best_metric)
            keep.append(
                policies.BestN(get_metric_fn=best_fn, n=1, keep_checkpoints_without_metrics=False)
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep),
            best_fn=best_fn,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )  # a save killed midway leaves a tmp dir
        self.manager = ocp.CheckpointManager(
            checkpoint_dir(workdir), item_names=names, options=options
        )
        if best_metric and self._backfill_metrics():
            self.manager.reload()

    # ----------------------------------------------------------------------------- save
    def save(
        self,
        step: int,
        state,
        data_iter,
        meta: dict,
        metrics: dict | None = None,
        force: bool = False,
    ) -> bool:
        """Saves state + iterator + meta at `step` (and the state's EMA weights, if it has
        them); `metrics` (floats) rank the best one."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self.wait()  # the previous save is complete: best.json may name it
        state, ema = _split_ema(state)
        items = dict(
            state=ocp.args.StandardSave(state),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave({**meta, "step": int(step), "metrics": metrics}),
        )
        if ema is not None:
            items[EMA_ITEM] = ocp.args.StandardSave(ema)
        args = ocp.args.Composite(**items)
        return self.manager.save(
            step, args=args, metrics=metrics if self.best_metric else None, force=force
        )

    def wait(self) -> None:
        """Blocks until an asynchronous save has finished, then updates best.json."""
        self.manager.wait_until_finished()
        if not self.read_only and self.best_metric and jax.process_index() == 0:
            step = self.best_step()
            if step is not None:
                best = {"step": step, **self.metrics(step)}
                path = os.path.join(self.workdir, BEST_FILE)
                try:
                    if workdir_lib.read_json_quietly(path) != best:
                        workdir_lib.write_json(path, best)
                except OSError as e:
                    log.warning(
                        "Cannot write %s (%s); the best step is also in the checkpoints.",
                        path,
                        e.strerror or e,
                    )

    def close(self) -> None:
        """Waits for a pending save, then releases Orbax's manager (and its threads)."""
        try:
            self.wait()
        finally:
            self.manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------- contents
    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def metrics(self, step: int) -> dict:
        """The metrics saved with `step` ({} if none); older runs kept them in `meta` only."""
        try:
            m = self.manager.metrics(step)
        except Exception:  # noqa: BLE001 - an unreadable metrics file is no metrics
            m = None
        if m is None:
            m = self.meta(step).get("metrics")
        return dict(m) if isinstance(m, dict) else {}

    def best_step(self) -> int | None:
        """The step on disk with the best `best_metric`, or None if no step has one."""
        metric = self.best_metric or "bleu"
        scored = [
            (_score(metric, m), s)
            for s in self.all_steps()
            if isinstance((m := self.metrics(s)).get(metric), (int, float))
        ]
        return max(scored)[1] if scored else None

    def meta(self, step: int) -> dict:
        """The `meta` item of a step ({} if unreadable)."""
        meta = workdir_lib.read_json_quietly(
            os.path.join(step_item(self.workdir, step, "meta"), JSON_ITEM_FILE)
        )
        return meta if isinstance(meta, dict) else {}

    def _backfill_metrics(self) -> bool:
        """Checkpoints of runs from before metrics were stored with them get their metrics
        from `meta`, so that the keep-best policy sees them. True if anything was written."""
        wrote = False
        for step in self.all_steps():
            path = step_item(self.workdir, step, METRICS_ITEM)
            metrics = self.metrics(step)
            if os.path.exists(path) or not metrics or jax.process_index() != 0:
                continue
            try:
                os.makedirs(path, exist_ok=True)
                workdir_lib.write_json(os.path.join(path, METRICS_ITEM), metrics)
                wrote = True
            except OSError:
                pass
        return wrote

    # -------------------------------------------------------------------------- restore
    def restore_latest(self, abstract_state, data_iter):
        """Restores the newest usable checkpoint into (state, data_iter).

        - An unreadable step (corrupt or partial files) is moved aside to corrupt-<step> with
          a one-line warning, and the previous step is tried; the rerun saves it again. When
          none is left, one more line says that training starts from scratch. The failed
          reads' background noise (TensorStore's per-array tracebacks, asyncio's complaints)
          is dropped: `quiet_failed_reads`.
        - A model whose parameters differ in names or shapes (another config or vocabulary)
          raises CheckpointError naming the parameter (and the vocabulary file).
        - An optimizer state of another shape (train.optimizer, grad_clip, ... changed)
          restores the parameters and step with a fresh optimizer state, and says so.
        Returns (state, step), or (None, None) when the workdir holds no usable checkpoint.
        """
        moved = 0
        for step in reversed(self.all_steps()):
            with quiet_failed_reads() as reads:
                state, reason = self._try_restore(step, abstract_state, data_iter, reads)
            if state is not None:
                return state, step
            self.quarantine(step, reason)
            moved += 1
        if moved:
            log.warning(
                "No readable checkpoint left in %s: starting from scratch (step 0).",
                checkpoint_dir(self.workdir),
            )
        return None, None

    def _try_restore(self, step: int, abstract_state, data_iter, reads):
        """(state, None) from `step`, or (None, why) if its files are unreadable; raises
        CheckpointError if it holds another model. The failed reads' exceptions are dropped
        here (only their one-line reason leaves), so that their objects are freed at once;
        `reads.failed` (`quiet_failed_reads`) says that a read failed."""
        try:
            return self.restore(step, abstract_state, data_iter), None
        except Exception as e:  # noqa: BLE001 - classified below
            reason = _reason(e)
            reads.failed = True
        self._check_params(step, abstract_state.params)  # raises if the model changed
        try:
            state = self._restore_params_and_step(step, abstract_state, data_iter)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - the parameters are unreadable too
            if "structure" in str(e):  # not damage: never move a readable step aside
                raise CheckpointError(
                    f"Cannot restore step {step} in {checkpoint_dir(self.workdir)}: "
                    f"{first_line(e)}. Resume with the run's {CONFIG_FILE} settings, or "
                    "use a new --workdir."
                ) from None
            return None, reason
        log.warning(
            "The optimizer state of step %d does not fit this config's optimizer "
            "(train.optimizer, grad_clip or weight_decay changed?); resuming from "
            "its parameters and step with a fresh optimizer state.",
            step,
        )
        return state, None

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restores one step; `data_iter` (if given) is set to the saved iterator position.
        A state with `ema_params` gets the step's EMA weights (`_with_ema`)."""
        plain, ema = _split_ema(abstract_state)
        items = {"state": ocp.args.StandardRestore(plain)}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        if ema is not None and self.has_ema(step):
            items[EMA_ITEM] = ocp.args.StandardRestore(ema)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        state = restored["state"]
        return self._with_ema(
            step,
            abstract_state,
            state.params,
            restored[EMA_ITEM] if EMA_ITEM in items else None,
            step=state.step,
            opt_state=state.opt_state,
        )

    def has_ema(self, step: int) -> bool:
        """Whether `step` holds EMA weights (saved by a training with train.ema_decay > 0)."""
        return os.path.isdir(step_item(self.workdir, step, EMA_ITEM))

    def _with_ema(self, at: int, abstract_state, params, ema, /, **fields):
        """`abstract_state` with the `params` and `fields` restored from step `at`, and its EMA
        weights: the saved `ema`; the parameters when the state keeps an EMA but the step has
        none (EMA turned on for this resume); none when the state keeps none (turned off)."""
        wants = getattr(abstract_state, "ema_params", None) is not None
        if wants and ema is None:
            log.warning(
                "Step %d has no EMA weights (trained with train.ema_decay=0); the EMA starts "
                "from its parameters.",
                at,
            )
            ema = jax.tree.map(jnp.array, params)  # a copy: a train step donates both
        elif not wants and self.has_ema(at):
            log.warning(
                "Step %d has EMA weights, but train.ema_decay=0 now: they are dropped (the "
                "next checkpoints have none; --checkpoint ema reads the newest step's).",
                at,
            )
        extra = {"ema_params": ema} if wants else {}
        return abstract_state.replace(params=params, **fields, **extra)

    def _restore_params_and_step(self, step: int, abstract_state, data_iter):
        """The parameters, step and iterator of `step` with a fresh optimizer state."""
        params = params_lib.read(
            step_item(self.workdir, step, "state"),
            abstract_state.params,
            key="params",
            workdir=self.workdir,
            checkpoint=Step(step),
        )
        params = jax.tree.map(jnp.asarray, params)
        items = {}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        _, ema = _split_ema(abstract_state)
        if ema is not None and self.has_ema(step):
            items[EMA_ITEM] = ocp.args.StandardRestore(ema)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items)) if items else {}
        return self._with_ema(
            step,
            abstract_state,
            params,
            restored[EMA_ITEM] if EMA_ITEM in items else None,
            step=jnp.asarray(step, getattr(abstract_state.step, "dtype", jnp.int32)),
            opt_state=abstract_state.tx.init(params),
        )

    def _check_params(self, step: int, abstract_params) -> None:
        """CheckpointError if the saved parameters differ from the model's in names or shapes;
        nothing if they match or the metadata cannot be read (then the data decides)."""
        params_lib.check(
            step_item(self.workdir, step, "state"),
            abstract_params,
            key="params",
            workdir=self.workdir,
            checkpoint=Step(step),
        )

    def quarantine(self, step: int, error: BaseException | str) -> None:
        """Moves an unreadable step aside (checkpoints/corrupt-<step>), so that it is saved
        again and never chosen by evaluation; one warning line saying why (`error`)."""
        src, n = step_dir(self.workdir, step), 1
        dst = corrupt_dir(self.workdir, step)
        while os.path.exists(dst):
            n += 1
            dst = corrupt_dir(self.workdir, step, n)
        if jax.process_index() == 0 and not self.read_only:
            os.replace(src, dst)
            where = f"moved it to {dst}"
        else:
            where = "left it in place"
        log.warning(
            "Checkpoint at step %d is unreadable (%s); %s and tried the previous one.",
            step,
            error if isinstance(error, str) else _reason(error),
            where,
        )
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxattn_quarantine_{step}")
        self.manager.reload()


def _score(metric: str, metrics: dict) -> float:
    """`metrics[metric]` as a score where higher is better (the loss negated); -inf if absent."""
    value = metrics.get(metric, float("-inf") if BEST_METRICS[metric] else float("inf"))
    return value if BEST_METRICS[metric] else -value


def _split_ema(state) -> tuple:
    """(flax's TrainState of `state`'s step, params and optimizer state: the `state` item, the
    same with or without EMA; its EMA weights, `ema_params`, or None). Any other pytree is
    saved as it is, without EMA."""
    if not isinstance(state, train_state.TrainState):
        return state, None
    plain = train_state.TrainState(
        step=state.step,
        apply_fn=state.apply_fn,
        params=state.params,
        tx=state.tx,
        opt_state=state.opt_state,
    )
    return plain, getattr(state, "ema_params", None)


def _reason(error: BaseException) -> str:
    """One short line on why a read failed: the root cause (TensorStore's own message, not
    Orbax's wrapper with its 50-line spec dump)."""
    root = error
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = first_line(root)
    return text.split(" See full TensorStore details:")[0]


# What failed Orbax/TensorStore reads leave behind: each array read still in flight is a
# coroutine that, when collected, re-raises as "Exception ignored in: <coroutine ...>" with
# a 60-line spec dump; asyncio logs its tasks' unretrieved exceptions; absl logs Orbax's; and
# TensorStore reads that finish after Orbax closed its event loop report "Event loop is
# closed" (an unraisable exception without an object), up to a moment after the failure.
_NOISY_LOGGERS = ("absl", "asyncio", "orbax", "tensorstore")


def _is_closed_loop(unraisable) -> bool:
    return isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(
        unraisable.exc_value
    )


def _is_read_noise(unraisable) -> bool:
    code = getattr(unraisable.object, "cr_code", None) or getattr(
        unraisable.object, "gi_code", None
    )
    if code is not None and any(lib in code.co_filename for lib in ("orbax", "tensorstore")):
        return True
    return _is_closed_loop(unraisable) or "Encountered error while reading array" in str(
        unraisable.exc_value
    )


class _Reads:
    """What `quiet_failed_reads` yields: set `failed` when a read inside failed."""

    failed = False


@contextlib.contextmanager
def quiet_failed_reads():
    """Drops the noise of failed checkpoint reads inside the block: the unraisable exceptions
    of Orbax's abandoned read coroutines and the asyncio/absl/Orbax logs; their objects are
    collected before the block ends (gc), so that nothing surfaces later. Other unraisable
    exceptions and log records still reach their hook and handlers.

    After a failed read (an exception leaving the block, or `reads.failed = True` set on the
    yielded object), the late "Event loop is closed" reports of TensorStore reads still in
    flight keep being dropped for the rest of the process (`drop_closed_loop_reports`):
    they can come at any moment later, and never mean anything.
    """
    hook = sys.unraisablehook

    def quiet(unraisable):
        if not _is_read_noise(unraisable):
            hook(unraisable)

    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    sys.unraisablehook = quiet
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    reads = _Reads()
    try:
        yield reads
    except BaseException:
        reads.failed = True
        raise
    finally:
        try:
            gc.collect()
        finally:
            sys.unraisablehook = hook
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
            if reads.failed:
                drop_closed_loop_reports()


def drop_closed_loop_reports() -> None:
    """Wraps sys.unraisablehook (once per process) to drop only RuntimeError('Event loop is
    closed'): Orbax's and TensorStore's background threads report it after a failed read or
    save, once their event loop has ended. Everything else goes on to the hook that was there.
    The scripts install it at start (jaxattn.tools.cli.main)."""
    hook = sys.unraisablehook
    if getattr(hook, "drops_closed_loop_reports", False):
        return

    def quiet(unraisable):
        if not _is_closed_loop(unraisable):
            hook(unraisable)

    quiet.drops_closed_loop_reports = True
    sys.unraisablehook = quiet
