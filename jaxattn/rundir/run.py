"""A training run's directory, opened and written: the one owner of the run's files (their
names and the layout, drawn there: `jaxattn.rundir.layout`)::

    WORKDIR/config.json, {src,tgt}_vocab.txt, *_spm.model, data_stats.json, best.json, .lock
    WORKDIR/checkpoints/<step>/{state, data_iter, meta, metrics}   training checkpoints
    WORKDIR/checkpoints/<step>/ema                                 their EMA weights, if kept
    WORKDIR/averaged/<version>/{params, meta}                      the averaged checkpoint

Opening a run (inference, evaluation, export): `load_config`, `load_run` (config + text
processing), and its checkpoints as typed references (`layout.Step`, `layout.AVERAGED`,
`layout.EMA`)::

    run = load_run("runs/a")                              # config + tokenizers + vocabularies
    with Checkpoints("runs/a") as ckpts:
        ckpts.list()                                      # [Step(150), Step(300), AVERAGED]
        ckpt = ckpts.resolve("best")                      # 'latest' | 'best' | 'averaged' | 300
        ckpts.resolve("ema")                              # EMA: the newest step's EMA weights
        params = ckpts.read_params(ckpt, abstract)        # checked against model + vocabularies
    params, ckpt = restore_params(run, "best")            # the same, errors as InferenceError
    check_ensemble([run, load_run("runs/b")])             # InferenceError if they differ

Writing it for training: `write_config` (with the first checkpoint), `check_resumable` (before
a resume); the vocabularies and data_stats.json are written by `Data.save_vocabs`, under the
layout's names. For averaging: `write_averaged`. Orbax saves and resumes of the training state
are the `checkpointer.Checkpointer`'s; this module reads its steps through it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from jaxattn import config as config_lib
from jaxattn import data as data_lib
from jaxattn.data.processing import TextProcessing
from jaxattn.errors import (
    CheckpointError,
    ConfigError,
    InferenceError,
    UsageError,
    WorkdirError,
    first_line,
)
from jaxattn.model.seq2seq import build_model, source_positions
from jaxattn.rundir import files as files_lib
from jaxattn.rundir import params as params_lib
from jaxattn.rundir.checkpointer import Checkpointer, quiet_failed_reads
from jaxattn.rundir.layout import (
    AVERAGED,
    AVERAGED_ITEMS,
    CONFIG_FILE,
    EMA,
    EMA_ITEM,
    JSON_ITEM_FILE,
    LOCK_FILE,
    SRC_VOCAB_FILE,
    TGT_VOCAB_FILE,
    Checkpoint,
    Selector,
    Step,
    averaged_dir,
    averaged_item,
    check_selector,
    checkpoint_dir,
    step_item,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the config
def load_config(workdir: str) -> ml_collections.ConfigDict:
    """A run's WORKDIR/config.json over the defaults; WorkdirError if there is no run there,
    ConfigError (naming the file and field) if it holds an invalid value."""
    if not os.path.isdir(workdir):
        raise WorkdirError(f"No such directory: {workdir} (give the --workdir of a training run).")
    config = read_config_file(os.path.join(workdir, CONFIG_FILE))
    if config is None:
        raise WorkdirError(
            f"{workdir} holds no training run (no {CONFIG_FILE}). Train first: python "
            f"scripts/train.py --config configs/base.py --workdir {workdir}"
        )
    return config


def read_config_file(path: str) -> ml_collections.ConfigDict | None:
    """WORKDIR/config.json over the defaults; None if absent; ConfigError naming the file if
    it is not a readable JSON object."""
    saved = files_lib.read_json(path)
    if saved is None:
        return None
    if not isinstance(saved, dict) or not all(
        isinstance(saved.get(s, {}), dict) for s in ("data", "model", "train", "eval")
    ):
        raise ConfigError(
            f"{path} is not a config saved by jaxattn (a JSON object with data, "
            "model, train and eval sections). Restore it from a backup, or use "
            "a new workdir."
        )
    config = _merge(config_lib.default_config(), saved)  # older runs lack newer fields
    try:  # fields of older versions are kept as they are; known ones must be valid
        for section in config_lib.rules():
            config_lib.validate_section(
                section, config[section] if section else config, allow_unknown=True
            )
    except ConfigError as e:
        raise ConfigError(f"{path} holds an invalid value: {e}") from None
    return config


def _merge(default: ml_collections.ConfigDict, saved: dict) -> ml_collections.ConfigDict:
    """Saved values over `default`; lists become tuples where the default is a tuple."""
    out = ml_collections.ConfigDict()
    for key in list(default.keys()) + [k for k in saved if k not in default]:
        d, s = default.get(key), saved.get(key, default.get(key))
        if isinstance(d, ml_collections.ConfigDict) and isinstance(s, dict):
            out[key] = _merge(d, s)
        elif isinstance(s, ml_collections.ConfigDict):
            out[key] = ml_collections.ConfigDict(s)
        else:
            out[key] = tuple(s) if isinstance(d, tuple) and isinstance(s, list) else s
    return out


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """WORKDIR/config.json (atomically): what `load_config` reads back."""
    files_lib.write_json(os.path.join(workdir, CONFIG_FILE), config_lib.to_json(config))


def is_run(directory: str) -> bool:
    """A training run's directory: checkpoints/ and the run's config.json or training lock."""
    return os.path.isdir(checkpoint_dir(directory)) and any(
        os.path.isfile(os.path.join(directory, name)) for name in (CONFIG_FILE, LOCK_FILE)
    )


# ----------------------------------------------------------------------- its checkpoints
def saved_steps(workdir: str) -> list[Step]:
    """The training steps saved in a run ([] if it has no checkpoints/; nothing created)."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        return []
    with Checkpoints(workdir) as ckpts:
        return ckpts.steps()


def _averaged_version(workdir: str) -> int | None:
    """The newest complete version in WORKDIR/averaged, None if there is none."""
    where = averaged_dir(workdir)
    if not os.path.isdir(where):
        return None
    manager = ocp.CheckpointManager(
        where,
        item_names=AVERAGED_ITEMS,
        options=ocp.CheckpointManagerOptions(read_only=True, create=False),
    )
    try:
        return manager.latest_step()
    finally:
        manager.close()


def averaged_version(workdir: str) -> int:
    """The newest complete version in WORKDIR/averaged; CheckpointError (saying how to make
    one) if there is none."""
    version = _averaged_version(workdir)
    if version is None:
        raise CheckpointError(
            f"No averaged checkpoint in {workdir} (no {averaged_dir(workdir)}). Make one "
            f"first: python scripts/average.py --workdir {workdir} --last 5 (or --best 5)."
        )
    return version


def write_averaged(workdir: str, params, meta: dict) -> None:
    """Writes version n+1 of WORKDIR/averaged (Orbax: atomically), dropping the older one."""
    manager = ocp.CheckpointManager(
        averaged_dir(workdir),
        item_names=AVERAGED_ITEMS,
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


class Checkpoints:
    """A run's checkpoints, read-only, by typed reference: each training `Step`, the
    `AVERAGED` checkpoint and the `EMA` weights of the newest step. CheckpointError (saying to
    train first) for a run without checkpoints/. A context manager: `with
    Checkpoints(workdir) as ckpts: ...` closes it."""

    def __init__(self, workdir: str):
        self.workdir = os.fspath(workdir)
        self._ckpt = Checkpointer(self.workdir, read_only=True, best_metric=_best_metric(workdir))

    def close(self) -> None:
        self._ckpt.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------------------- listing
    def steps(self) -> list[Step]:
        """The training steps on disk, ascending."""
        return [Step(s) for s in self._ckpt.all_steps()]

    def list(self) -> list[Checkpoint]:
        """Every checkpoint of the run: its steps, ascending, then AVERAGED and EMA if it has
        them."""
        steps = self.steps()
        averaged = [AVERAGED] if _averaged_version(self.workdir) is not None else []
        return steps + averaged + ([EMA] if steps and self._ckpt.has_ema(steps[-1]) else [])

    def ema_step(self) -> Step:
        """The newest step, whose EMA weights `EMA` names; CheckpointError if it has none."""
        steps = self.steps()
        if not steps:
            raise CheckpointError(
                f"No checkpoint in {checkpoint_dir(self.workdir)}. Train first: python "
                f"scripts/train.py --config configs/base.py --workdir {self.workdir}"
            )
        if not self._ckpt.has_ema(steps[-1]):
            raise CheckpointError(
                f"The newest checkpoint of {self.workdir} (step {steps[-1]}) holds no EMA "
                f"weights: it was trained with train.ema_decay=0 (off). Train or resume with "
                f"--config.train.ema_decay=0.999 (say) to keep them, or use another "
                "--checkpoint."
            )
        return steps[-1]

    @property
    def best_metric(self) -> str:
        """The validation metric that ranks this run's checkpoints (its train.best_metric)."""
        return self._ckpt.best_metric

    def best(self) -> Step | None:
        """The step with the best validation train.best_metric (BLEU unless the run's config
        says otherwise), None if no step has one."""
        step = self._ckpt.best_step()
        return None if step is None else Step(step)

    def resolve(self, which: Selector) -> Checkpoint:
        """'latest' | 'best' | a step number (or its digits) -> that `Step`; 'averaged' ->
        AVERAGED if the run has an averaged checkpoint; 'ema' -> EMA if its newest step has
        EMA weights; else a clear CheckpointError (for a `which` that is no checkpoint
        selector too: `layout.check_selector`)."""
        check_selector(which)
        if which == AVERAGED:
            averaged_version(self.workdir)  # CheckpointError if the run has none
            return AVERAGED
        if which == EMA:
            self.ema_step()  # CheckpointError if it has none
            return EMA
        steps = self.steps()
        if not steps:
            raise CheckpointError(
                f"No checkpoint in {checkpoint_dir(self.workdir)}. Train first: python "
                f"scripts/train.py --config configs/base.py --workdir {self.workdir}"
            )
        if which == "latest":
            return steps[-1]
        if which == "best":
            step = self.best()
            if step is None:
                log.warning(
                    "No best checkpoint (no validation %s saved with any checkpoint); "
                    "using the latest, step %d.",
                    self._ckpt.best_metric,
                    steps[-1],
                )
                return steps[-1]
            return step
        step = int(which)
        if step not in steps:
            raise CheckpointError(f"No checkpoint at step {step}; available steps: {steps}.")
        return Step(step)

    # ------------------------------------------------------------------------- contents
    def meta(self, checkpoint: Checkpoint) -> dict:
        """The `meta` item of a checkpoint ({} if absent or unreadable): the run's config and
        the vocabulary files' sha256 when it was saved; for AVERAGED, the averaged steps; for
        EMA, the newest step's (its `step` says which)."""
        if checkpoint == EMA:
            return self._ckpt.meta(self.ema_step())
        if checkpoint == AVERAGED:
            version = _averaged_version(self.workdir)
            if version is None:
                return {}
            path = os.path.join(averaged_item(self.workdir, version, "meta"), JSON_ITEM_FILE)
            meta = files_lib.read_json_quietly(path)
            return meta if isinstance(meta, dict) else {}
        return self._ckpt.meta(checkpoint)

    def metrics(self, checkpoint: Checkpoint) -> dict:
        """The validation metrics saved with a step ({} if none); EMA's are those of its step
        named ema_* (the EMA weights' validation); AVERAGED has none of its own (its meta names
        its sources' metrics)."""
        if checkpoint == EMA:
            prefix = f"{EMA}_"
            metrics = self._ckpt.metrics(self.ema_step())
            return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
        if checkpoint == AVERAGED:
            return dict(self.meta(checkpoint).get("metrics") or {})
        return self._ckpt.metrics(checkpoint)

    def _params_item(self, checkpoint: Checkpoint) -> tuple[str, str | None]:
        """(the Orbax item directory holding the parameters, their key in its tree)."""
        if checkpoint == AVERAGED:
            version = averaged_version(self.workdir)  # CheckpointError if there is none
            return averaged_item(self.workdir, version, "params"), None
        if checkpoint == EMA:
            return step_item(self.workdir, self.ema_step(), EMA_ITEM), None
        return step_item(self.workdir, checkpoint, "state"), "params"

    def saved_params(self, checkpoint: Checkpoint) -> dict:
        """The tree of jax.ShapeDtypeStruct of the parameters a checkpoint holds (its files'
        metadata; raises if they are unreadable)."""
        item, key = self._params_item(checkpoint)
        tree = params_lib.saved_tree(item)
        return tree[key] if key else tree

    def read_params(self, checkpoint: Checkpoint, abstract_params) -> dict:
        """The parameters of a checkpoint (never the optimizer state) as numpy arrays shaped
        like `abstract_params`; CheckpointError naming the parameter (and the vocabulary
        file) if they do not fit the model."""
        item, key = self._params_item(checkpoint)
        return params_lib.read(
            item, abstract_params, key=key, workdir=self.workdir, checkpoint=checkpoint
        )

    def check_vocab_files(self, checkpoint: Checkpoint) -> None:
        """CheckpointError unless the run's vocabulary files are those the checkpoint was
        trained with (their sha256 in its meta)."""
        saved = self.meta(checkpoint).get("vocab_sha256") or {}
        now = files_lib.fingerprints(self.workdir, saved)
        for name, digest in saved.items():
            if now.get(name) != digest:
                raise CheckpointError(
                    f"{os.path.join(self.workdir, name)} is "
                    f"{'missing' if name not in now else 'changed'} since the checkpoint at "
                    f"step {checkpoint} was saved with it. Restore the original file (or use "
                    "a new --workdir)."
                )


# ------------------------------------------------------------------------- resuming a run
def _best_metric(workdir: str) -> str:
    """The run's train.best_metric ('bleu' for runs without a readable config.json: the
    errors about that file come from the code that needs the rest of it)."""
    try:
        config = read_config_file(os.path.join(workdir, CONFIG_FILE))
    except (ConfigError, WorkdirError):
        config = None
    return "bleu" if config is None else config.train.best_metric


def check_resumable(workdir: str, config) -> list[Step]:
    """The steps a training would resume from ([] for a new run; nothing is created). A run
    with checkpoints resumes only with the same model, data and vocabulary files:
    CheckpointError naming what differs (train/eval changes are logged, allowed). A
    workdir's files count only once a checkpoint uses them: those of a run that died before
    its first checkpoint are rebuilt, never reused."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        return []
    with Checkpoints(workdir) as ckpts:
        steps = ckpts.steps()
        if steps:
            check_workdir(workdir, config, read_config_file(os.path.join(workdir, CONFIG_FILE)))
            ckpts.check_vocab_files(steps[-1])
    return steps


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

    if now["train"].get("best_metric") != before["train"].get("best_metric", "bleu"):
        raise CheckpointError(
            f"{workdir} ranks its checkpoints by train.best_metric="
            f"{before['train'].get('best_metric', 'bleu')!r} (the best one kept, and the "
            f"validations without improvement that early stopping and lr_schedule='plateau' "
            f"count), not {now['train'].get('best_metric')!r}: resume with "
            f"--config.train.best_metric={before['train'].get('best_metric', 'bleu')}, or use "
            "a new --workdir."
        )
    if bad := diffs(("model", "data")):
        raise CheckpointError(
            f"{workdir} holds checkpoints of a different model or data/vocabulary:\n  "
            + "\n  ".join(bad)
            + "\nUse a new --workdir, or the same config to resume."
        )
    if changed := diffs(("train", "eval")):
        log.info("Resuming with changed settings: %s.", "; ".join(changed))


# ------------------------------------------------------------------ restoring for inference
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
        config = load_config(workdir)
    except (ConfigError, WorkdirError) as e:
        raise InferenceError(str(e)) from None
    try:
        text = data_lib.load_text_processing(config.data, workdir)
    except (FileNotFoundError, ValueError) as e:
        raise InferenceError(f"Cannot load the vocabularies of {workdir}: {e}") from None
    return Run(workdir, config, text)


def restore_params(run: Run, checkpoint: Selector = "latest") -> tuple[Any, Checkpoint]:
    """(params, the checkpoint) of the run's 'latest', 'best', 'averaged', 'ema' or a step;
    UsageError (a ValueError) for any other `checkpoint` (bool included); InferenceError if it
    is missing, unreadable or trained with other vocabulary files."""
    _check_checkpoint(checkpoint)
    model = build_model(
        run.config.model,
        len(run.text.src_vocab),
        len(run.text.tgt_vocab),
        bos_id=run.text.tgt_vocab.bos_id,
    )
    example = jnp.zeros((1, 2), jnp.int32)  # [B=1, S=2]
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), example, jnp.array([2]), example)
    )["params"]
    resolved, failure = checkpoint, None
    # the failure is raised outside: a failed read's exception (and Orbax's abandoned read
    # coroutines it holds) is freed inside quiet_failed_reads, which drops their noise
    with quiet_failed_reads() as reads:
        try:
            with Checkpoints(run.workdir) as ckpts:
                resolved = ckpts.resolve(checkpoint)
                params = ckpts.read_params(resolved, abstract)
                ckpts.check_vocab_files(resolved)
        except CheckpointError as e:
            failure = str(e)
        except Exception as e:  # noqa: BLE001 - any failure: this checkpoint is unusable
            reads.failed = True
            failure = _unreadable(run.workdir, resolved, e)
    if failure is not None:
        raise InferenceError(failure)
    return params, resolved


def _check_checkpoint(checkpoint) -> None:
    """UsageError (a bad argument) unless `checkpoint` is a checkpoint selector."""
    try:
        check_selector(checkpoint)
    except CheckpointError as e:
        raise UsageError(str(e)) from None


def _unreadable(workdir: str, checkpoint, error: BaseException) -> str:
    """Why a checkpoint's parameters could not be read, and which others there are."""
    why = first_line(error, 300)
    if checkpoint == AVERAGED:
        return (
            f"Cannot restore the averaged checkpoint in {averaged_dir(workdir)} ({why}); it "
            f"is incomplete or damaged. Make it again: python scripts/average.py --workdir "
            f"{workdir} --last N (or --best N)."
        )
    try:
        others = [s for s in saved_steps(workdir) if s != checkpoint]
    except Exception:  # noqa: BLE001 - only for the hint
        others = []
    if checkpoint == EMA:
        checkpoint = f"{others[-1]} (its EMA weights)" if others else checkpoint
    return (
        f"Cannot restore the parameters of step {checkpoint} in {checkpoint_dir(workdir)} "
        f"({why}). Is it complete, and from this run's {CONFIG_FILE}? Try another --checkpoint"
        + (f" (steps: {', '.join(map(str, others))})." if others else ".")
    )


def restore_runs(workdirs, checkpoints="latest") -> list[tuple[Run, Any, Checkpoint]]:
    """[(run, params, checkpoint)] of one workdir or a list (an ensemble: `check_ensemble`
    first, so a mismatch fails before any parameters are read), with one checkpoint for all
    or a list."""
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
    pa, pb = source_positions(a.config.model), source_positions(b.config.model)
    if pa != pb:
        return (
            f"their location attention scores {pa or 'any number of'} vs "
            f"{pb or 'any number of'} source positions"
        )
    return ""
