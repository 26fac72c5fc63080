"""The run directory's layout: the name of every file and folder in a WORKDIR, and the typed
references to its checkpoints. Imports nothing of jaxattn but the errors, so that every module
that reads or writes a run (the data package included) takes its names from here::

    WORKDIR/
      config.json                    the run's config (CONFIG_FILE)
      src_vocab.txt, tgt_vocab.txt   the vocabularies (SRC_VOCAB_FILE, TGT_VOCAB_FILE)
      src_spm.model, tgt_spm.model   SentencePiece models (tokenizer='sentencepiece'), or
      joint_spm.model                one for both sides (data.sp_joint)
      data_stats.json                training pairs and longest sentences (DATA_STATS_FILE)
      best.json                      the best step and its metrics, for people (BEST_FILE)
      .lock                          pid and host of the training holding the run (LOCK_FILE)
      checkpoints/<step>/            a training checkpoint (Orbax): state, data_iter, meta,
                                     metrics, and ema (the EMA weights, train.ema_decay > 0);
                                     an unreadable one is moved to corrupt-<step>
      averaged/<version>/            the averaged checkpoint (Orbax): params, meta
      metrics.jsonl                  logged scalars, a JSON record a line (METRICS_FILE)
      tensorboard/                   the same as TensorBoard events (TENSORBOARD_DIR)
      curves.png                     training curves, drawn at the end (CURVES_FILE)

A checkpoint is named by a `Checkpoint`: a `Step` (a training step, an int), `AVERAGED` (the
run's averaged checkpoint) or `EMA` (the EMA weights saved with the newest training step);
'latest' and 'best' are selectors that `jaxattn.rundir.run` resolves to a `Step`. Who reads
and writes these files: `jaxattn.rundir.run` (opening a run, its checkpoints' parameters and
meta, the files written for training), `checkpointer` (Orbax saves and resumes of the
training state, its EMA weights included), `averaging` (the mean of checkpoints), `files`
(atomic writes, the lock).
"""

from __future__ import annotations

import os
import re

import numpy as np

from jaxattn.errors import CheckpointError

CONFIG_FILE = "config.json"
BEST_FILE = "best.json"
LOCK_FILE = ".lock"
DATA_STATS_FILE = "data_stats.json"
METRICS_FILE, TENSORBOARD_DIR, CURVES_FILE = "metrics.jsonl", "tensorboard", "curves.png"
SRC_VOCAB_FILE, TGT_VOCAB_FILE = "src_vocab.txt", "tgt_vocab.txt"
SRC_SPM_FILE, TGT_SPM_FILE = "src_spm.model", "tgt_spm.model"
JOINT_SPM_FILE = "joint_spm.model"  # data.sp_joint: one SentencePiece model for both sides
# What a run reuses (and its checkpoints fingerprint): those of them the run has.
VOCAB_FILES = (SRC_VOCAB_FILE, TGT_VOCAB_FILE, SRC_SPM_FILE, TGT_SPM_FILE, JOINT_SPM_FILE)
SIDE_FILES = {"src": (SRC_VOCAB_FILE, SRC_SPM_FILE), "tgt": (TGT_VOCAB_FILE, TGT_SPM_FILE)}
# Parameters whose first or last axis is a vocabulary size, by the vocabulary file.
VOCAB_PARAMS = {
    "encoder/embed": SRC_VOCAB_FILE,
    "decoder/embed": TGT_VOCAB_FILE,
    "decoder/out": TGT_VOCAB_FILE,
}
CHECKPOINTS_DIR = "checkpoints"
STEP_ITEMS = ("state", "data_iter", "meta")  # Orbax items of a training checkpoint
AVERAGED_ITEMS = ("params", "meta")  # Orbax items of the averaged checkpoint
EMA_ITEM = "ema"  # a step's EMA weights (train.ema_decay > 0): <step>/ema, a params tree
METRICS_ITEM = "metrics"  # a step's metrics (Orbax's): <step>/metrics/metrics, a JSON file
JSON_ITEM_FILE = "metadata"  # the file of a JSON item (meta) in its folder: <step>/meta/metadata


# ------------------------------------------------------------------ checkpoint references
class Step(int):
    """A training checkpoint: the step it was saved at (an int: it prints, compares and is
    stored in JSON as the number, so messages and results read as before)."""

    __slots__ = ()


class _Named(str):
    """A checkpoint that is no training step, by its name (one instance per subclass): a str,
    so that it prints and is stored in JSON as its name, as a step is as its number."""

    __slots__ = ()
    NAME = ""

    def __new__(cls):
        return super().__new__(cls, cls.NAME)

    def __getnewargs__(self) -> tuple:  # pickle and copy make it again without arguments
        return ()


class Averaged(_Named):
    """The run's averaged checkpoint (`AVERAGED`, the only instance): WORKDIR/averaged."""

    __slots__ = ()
    NAME = "averaged"


class Ema(_Named):
    """The EMA weights (`EMA`, the only instance) saved with the run's newest training step
    (checkpoints/<step>/ema), by a training with train.ema_decay > 0."""

    __slots__ = ()
    NAME = "ema"


AVERAGED = Averaged()
EMA = Ema()
Checkpoint = Step | Averaged | Ema  # what a selector resolves to
SELECTORS = ("latest", "best", AVERAGED, EMA)  # checkpoint names; else a step number
Selector = str | int  # what a user names a checkpoint by: one of SELECTORS or a step (digits)


def check_selector(which) -> Selector:
    """`which` as `run.Checkpoints.resolve` takes it: one of SELECTORS, a step number (an int,
    numpy integers too) or its digits ("20"); CheckpointError for anything else, bool
    included (True is an int in Python, but no step number). Returns it unchanged."""
    if isinstance(which, str):
        if which in SELECTORS or re.fullmatch(r"[0-9]+", which.strip()):
            return which
    elif isinstance(which, (int, np.integer)) and not isinstance(which, (bool, np.bool_)):
        return which
    kind = "" if isinstance(which, str) else f" (a {type(which).__name__})"
    raise CheckpointError(
        f"checkpoint must be 'latest', 'best', '{AVERAGED}', '{EMA}' or a step number (an int, "
        f"or its digits as a string), not {which!r}{kind}."
    )


# ------------------------------------------------------------------------------- paths
def checkpoint_dir(workdir: str) -> str:
    """WORKDIR/checkpoints: the training checkpoints (absolute)."""
    return os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR)


def averaged_dir(workdir: str) -> str:
    """WORKDIR/averaged: the averaged checkpoint's versions (absolute)."""
    return os.path.join(os.path.abspath(workdir), AVERAGED)


def step_dir(workdir: str, step: int) -> str:
    """WORKDIR/checkpoints/<step>."""
    return os.path.join(checkpoint_dir(workdir), str(int(step)))


def corrupt_dir(workdir: str, step: int, n: int = 1) -> str:
    """WORKDIR/checkpoints/corrupt-<step> (corrupt-<step>.<n> for the n-th): where an
    unreadable step is moved aside, out of the steps Orbax lists."""
    return os.path.join(
        checkpoint_dir(workdir), f"corrupt-{int(step)}" + (f".{n}" if n > 1 else "")
    )


def step_item(workdir: str, step: int, item: str) -> str:
    """WORKDIR/checkpoints/<step>/<item>: an Orbax item folder (STEP_ITEMS, METRICS_ITEM,
    EMA_ITEM)."""
    return os.path.join(step_dir(workdir, step), item)


def averaged_item(workdir: str, version: int, item: str) -> str:
    """WORKDIR/averaged/<version>/<item>: an Orbax item folder (AVERAGED_ITEMS)."""
    return os.path.join(averaged_dir(workdir), str(int(version)), item)


def spm_file(cfg, side: str) -> str:
    """The SentencePiece model file of a side ('src' or 'tgt'): the joint one if sp_joint."""
    return JOINT_SPM_FILE if cfg.sp_joint else SIDE_FILES[side][1]
