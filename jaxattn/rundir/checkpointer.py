"""Orbax checkpoints: save every N steps, keep the latest and the best, resume exactly.

A checkpoint holds the train state (params, optimizer state, step), the data iterator's state
(so a resumed run sees the batches an uninterrupted one would), a small JSON `meta` item (the
run's config, the metrics and the vocabulary files' sha256 at that step) and Orbax's `metrics`
item. The metrics are stored with each checkpoint, so the best one is known again after a
restart and survives however often a run is stopped, resumed or extended. WORKDIR/best.json
repeats the best step for people; nothing depends on it.

Layout: WORKDIR/checkpoints/<step>/{state, data_iter, meta, metrics}; an unreadable step is
moved aside to WORKDIR/checkpoints/corrupt-<step>.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxattn import config as config_lib
from jaxattn.config import CONFIG_FILE
from jaxattn.errors import CheckpointError, WorkdirError, first_line
from jaxattn.rundir import files as workdir_lib

log = logging.getLogger(__name__)

BEST_FILE = "best.json"
AVERAGED = "averaged"  # the name of a run's averaged checkpoint (jaxattn.rundir.averaging)
# Parameters whose first or last axis is a vocabulary size, by the vocabulary file.
VOCAB_PARAMS = {
    "encoder/embed": "src_vocab.txt",
    "decoder/embed": "tgt_vocab.txt",
    "decoder/out": "tgt_vocab.txt",
}

__all__ = [
    "BEST_FILE",
    "CONFIG_FILE",
    "SELECTORS",
    "CheckpointError",
    "Checkpointer",
    "checkpoint_dir",
    "check_resumable",
    "check_selector",
    "check_vocab_files",
    "drop_closed_loop_reports",
    "quiet_failed_reads",
    "resolve_step",
]


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def _shapes(tree) -> dict[str, tuple]:
    """{'a/b/c': shape} for a nested dict of arrays (or of Orbax array metadata)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(str(getattr(k, "key", k)) for k in path)] = tuple(leaf.shape)
    return out


class Checkpointer:
    """Wraps an `ocp.CheckpointManager` with the project's keep/restore policy.

    Keeps the `keep_latest` newest checkpoints (at least 2, so that a corrupt latest one has a
    fallback) and the best one by `best_metric` (higher is better, e.g. BLEU). A context
    manager: `with Checkpointer(workdir, read_only=True) as ckpt: ...` closes it.
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
        names = ("state", "data_iter", "meta")
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
            best_fn = lambda m: m.get(best_metric, float("-inf"))  # noqa: E731
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
        """Saves state + iterator + meta at `step`; `metrics` (floats) rank the best one."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self.wait()  # the previous save is complete: best.json may name it
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave({**meta, "step": int(step), "metrics": metrics}),
        )
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
                    if _read_quietly(path) != best:
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

    def metrics(self, step: int | str) -> dict:
        """The metrics saved with `step` ({} if none); older runs kept them in `meta` only."""
        if step == AVERAGED:  # not validated: its meta names the sources' metrics
            return dict(self.meta(step).get("metrics") or {})
        try:
            m = self.manager.metrics(step)
        except Exception:  # noqa: BLE001 - an unreadable metrics file is no metrics
            m = None
        if m is None:
            m = self.meta(step).get("metrics")
        return dict(m) if isinstance(m, dict) else {}

    def best_step(self) -> int | None:
        """The step on disk with the highest `best_metric`, or None if no step has one."""
        metric = self.best_metric or "bleu"
        scored = [
            (m[metric], s)
            for s in self.all_steps()
            if isinstance((m := self.metrics(s)).get(metric), (int, float))
        ]
        return max(scored)[1] if scored else None

    def meta(self, step: int | str) -> dict:
        """The `meta` item of a step or of the "averaged" checkpoint ({} if unreadable)."""
        if step == AVERAGED:
            from jaxattn.rundir import averaging  # averaging builds on this module

            return averaging.averaged_meta(self.workdir) or {}
        meta = _read_quietly(
            os.path.join(checkpoint_dir(self.workdir), str(step), "meta", "metadata")
        )
        return meta if isinstance(meta, dict) else {}

    def _backfill_metrics(self) -> bool:
        """Checkpoints of runs from before metrics were stored with them get their metrics
        from `meta`, so that the keep-best policy sees them. True if anything was written."""
        wrote = False
        for step in self.all_steps():
            path = os.path.join(checkpoint_dir(self.workdir), str(step), "metrics")
            metrics = self.metrics(step)
            if os.path.exists(path) or not metrics or jax.process_index() != 0:
                continue
            try:
                os.makedirs(path, exist_ok=True)
                workdir_lib.write_json(os.path.join(path, "metrics"), metrics)
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
        """Restores one step; `data_iter` (if given) is set to the saved iterator position."""
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def _restore_params_and_step(self, step: int, abstract_state, data_iter):
        """The parameters, step and iterator of `step` with a fresh optimizer state."""
        # a reader of its own: this manager's "state" handler is the full-state one
        with Checkpointer(self.workdir, read_only=True) as reader:
            params = jax.tree.map(jnp.asarray, reader.restore_params(step, abstract_state.params))
        if data_iter is not None:
            self.manager.restore(
                step,
                args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(data_iter)),
            )
        return abstract_state.replace(
            params=params,
            step=jnp.asarray(step, jnp.asarray(abstract_state.step).dtype),
            opt_state=abstract_state.tx.init(params),
        )

    def _check_params(self, step: int, abstract_params) -> None:
        """CheckpointError if the saved parameters differ from the model's in names or shapes;
        nothing if they match or the metadata cannot be read (then the data decides)."""
        try:
            saved = _shapes(self.manager.item_metadata(step)["state"].tree["params"])
        except Exception:  # noqa: BLE001 - unreadable metadata: treated as corrupt data
            return
        want = _shapes(abstract_params)
        if saved.keys() != want.keys():
            extra, missing = sorted(saved.keys() - want.keys()), sorted(want.keys() - saved.keys())
            raise CheckpointError(
                f"The checkpoint at step {step} in {checkpoint_dir(self.workdir)} holds another "
                f"model (only in the checkpoint: {extra[:4]}; only in this config: "
                f"{missing[:4]}). Use this run's {CONFIG_FILE} (--config.model.* as saved) or "
                "a new --workdir."
            )
        for name, shape in want.items():
            if saved[name] != shape:
                raise CheckpointError(self.shape_message(step, name, saved[name], shape))

    def shape_message(self, step: int | str, name: str, saved: tuple, now: tuple) -> str:
        vocab = next((f for prefix, f in VOCAB_PARAMS.items() if name.startswith(prefix)), None)
        why = (
            f"{os.path.join(self.workdir, vocab)} has changed since the checkpoint was saved "
            "(restore the original file, or use a new --workdir)"
            if vocab
            else f"the model config differs from the run's {CONFIG_FILE}"
        )
        at = f"at step {step}" if step != AVERAGED else f"'{AVERAGED}'"
        return (
            f"Parameter {name} has shape {saved} in the checkpoint {at} but {now} in this "
            f"model: {why}."
        )

    def quarantine(self, step: int, error: BaseException | str) -> None:
        """Moves an unreadable step aside (checkpoints/corrupt-<step>), so that it is saved
        again and never chosen by evaluation; one warning line saying why (`error`)."""
        src = os.path.join(checkpoint_dir(self.workdir), str(step))
        dst = os.path.join(checkpoint_dir(self.workdir), f"corrupt-{step}")
        n = 1
        while os.path.exists(dst):
            n += 1
            dst = os.path.join(checkpoint_dir(self.workdir), f"corrupt-{step}.{n}")
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

    def restore_params(self, step: int | str, abstract_params):
        """Only the `params` of the train state at `step` (the optimizer state is never read),
        or of the "averaged" checkpoint, as numpy arrays shaped like `abstract_params`; a
        shape mismatch is a CheckpointError."""
        if step == AVERAGED:
            from jaxattn.rundir import averaging

            return averaging.restore_averaged(self, abstract_params)
        self._check_params(step, abstract_params)
        restore_args = jax.tree.map(
            lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), abstract_params
        )
        args = ocp.args.PyTreeRestore(
            item={"params": abstract_params},
            restore_args={"params": restore_args},
            partial_restore=True,
        )
        params = self.manager.restore(step, args=ocp.args.Composite(state=args))["state"]["params"]
        got, want = _shapes(params), _shapes(abstract_params)
        for name, shape in want.items():
            if got[name] != shape:
                raise CheckpointError(self.shape_message(step, name, got[name], shape))
        return params


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


def _read_quietly(path: str):
    """JSON content, or None if absent or unreadable."""
    try:
        return workdir_lib.read_json(path)
    except WorkdirError:
        return None


SELECTORS = ("latest", "best", AVERAGED)  # checkpoint names; else a step number


def check_selector(which) -> str | int:
    """`which` as `resolve_step` takes it: one of SELECTORS, a step number (an int, numpy
    integers too) or its digits ("20"); CheckpointError for anything else, bool included
    (True is an int in Python, but no step number). Returns it unchanged."""
    if isinstance(which, str):
        if which in SELECTORS or re.fullmatch(r"[0-9]+", which.strip()):
            return which
    elif isinstance(which, (int, np.integer)) and not isinstance(which, (bool, np.bool_)):
        return which
    kind = "" if isinstance(which, str) else f" (a {type(which).__name__})"
    raise CheckpointError(
        f"checkpoint must be 'latest', 'best', 'averaged' or a step number (an int, or its "
        f"digits as a string), not {which!r}{kind}."
    )


def resolve_step(ckpt: Checkpointer, which: str | int) -> int | str:
    """'latest' | 'best' | a step number -> an existing step; 'averaged' -> 'averaged' if the
    run has an averaged checkpoint (jaxattn.rundir.averaging); else a clear CheckpointError (for a
    `which` that is no checkpoint selector too: `check_selector`)."""
    check_selector(which)
    if which == AVERAGED:
        from jaxattn.rundir import averaging

        averaging.averaged_version(ckpt.workdir)  # CheckpointError if the run has none
        return AVERAGED
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
            log.warning(
                "No best checkpoint (no validation BLEU saved with any checkpoint); "
                "using the latest, step %d.",
                steps[-1],
            )
            return steps[-1]
        return step
    step = int(which)
    if step not in steps:
        raise CheckpointError(f"No checkpoint at step {step}; available steps: {steps}.")
    return step


# ------------------------------------------------------------------------ resuming a run
def check_resumable(workdir: str, config, ckpt: Checkpointer) -> None:
    """A workdir with checkpoints resumes only with the same model, data and vocabulary
    files; CheckpointError naming what differs (train/eval changes are logged, allowed)."""
    steps = ckpt.all_steps()
    if steps:
        check_workdir(
            workdir, config, config_lib.read_config_file(os.path.join(workdir, CONFIG_FILE))
        )
        check_vocab_files(workdir, ckpt, steps[-1])


def check_workdir(workdir: str, config, saved) -> None:
    """Refuses a workdir whose checkpoints come from another model or data/vocabulary
    (`saved`: its config.json); says which train/eval settings a resume changes."""
    if saved is None:
        return
    now, before = config_lib.to_json(config), config_lib.to_json(saved)

    def diffs(sections):
        return [
            f"{section}.{k}: saved {before[section].get(k)!r}, now {now[section].get(k)!r}"
            for section in sections
            for k in sorted(set(now[section]) | set(before[section]))
            if before[section].get(k) != now[section].get(k)
        ]

    if bad := diffs(("model", "data")):
        raise CheckpointError(
            f"{workdir} holds checkpoints of a different model or data/vocabulary:\n  "
            + "\n  ".join(bad)
            + "\nUse a new --workdir, or the same config to resume."
        )
    if changed := diffs(("train", "eval")):
        log.info("Resuming with changed settings: %s.", "; ".join(changed))


def check_vocab_files(workdir: str, ckpt: Checkpointer, step: int) -> None:
    """The vocabulary files must be those the checkpoint was trained with (sha256 in meta)."""
    saved = ckpt.meta(step).get("vocab_sha256") or {}
    now = workdir_lib.fingerprints(workdir, saved)
    for name, digest in saved.items():
        if now.get(name) != digest:
            raise CheckpointError(
                f"{os.path.join(workdir, name)} is {'missing' if name not in now else 'changed'}"
                f" since the checkpoint at step {step} was saved with it. Restore the original "
                "file (or use a new --workdir)."
            )
