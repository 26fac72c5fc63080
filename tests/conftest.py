"""Fixtures shared by the test modules (tests never import each other; they ask for these).

- `random_init`: random variables for any Flax module, without compiling its init.
- `synthetic_config`: configs/synthetic.py with overrides, for tests that train small runs.
- `tiny_run`: one trained synthetic run per session, for the tests of restoring, translating,
  evaluating and exporting.
- `nan_loss_from`: a train_step stand-in whose loss turns NaN from a given step on.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------
# random_init
# ---------------------------------------------------------------------------------------------


def _random_init(module, *args, seed=0, scale=0.3, **kwargs):
    """Variables of `module.init(key, *args, **kwargs)` filled with N(0, scale^2) values.

    Traces init with jax.eval_shape instead of running it: no compilation, so tests stay fast.
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes
    )


@pytest.fixture(scope="session")
def random_init():
    """The function `random_init(module, *init_args, seed=0, scale=0.3, **init_kwargs)`:
    variables shaped as `module.init` makes them, filled with N(0, scale^2) draws from `seed`.
    Random (not init's) values make every parameter matter in the tests' comparisons."""
    return _random_init


# ---------------------------------------------------------------------------------------------
# tiny_run
# ---------------------------------------------------------------------------------------------


class TinyRun(NamedTuple):
    """A finished training run on disk."""

    workdir: str  # checkpoints at steps 150 and 300, config.json, vocabularies, metrics
    config: Any  # the ml_collections.ConfigDict it was trained with


def _synthetic_config(overrides: dict | None = None):
    """configs/synthetic.py (reverse 3..8 symbols out of 12) with {"section.field": value}."""
    config = runpy.run_path(os.path.join(ROOT, "configs", "synthetic.py"))["get_config"]()
    for key, value in (overrides or {}).items():
        section, name = key.split(".")
        config[section][name] = value
    return config


@pytest.fixture(scope="session")
def synthetic_config():
    """The function `synthetic_config({"model.hidden": 16, ...})`: configs/synthetic.py with
    dotted overrides, the base of every small training run in the tests (offline, seconds)."""
    return _synthetic_config


# The tiny run: big and long enough to learn its task, small enough for a CPU test session.
TINY_RUN = {
    "model.hidden": 32, "model.embed_dim": 32, "data.synthetic_sizes": (2000, 100, 100),
    "train.num_train_steps": 300, "train.eval_every": 300, "train.checkpoint_every": 150,
    "train.progress_bar": False,
}


def train_tiny_run(workdir: Path) -> TinyRun:
    """Trains the tiny run into `workdir` once (a `done` file marks it finished) and returns it.

    The run learns its task (validation BLEU > 90), so tests may check translations, not just
    that something came out. Offline: the synthetic corpus needs no download.
    """
    config = _synthetic_config(TINY_RUN)
    if not (workdir / "done").exists():
        from jaxattn.train import train_and_evaluate  # orbax, grain: only for sessions that train

        _, metrics = train_and_evaluate(config, str(workdir))
        assert metrics["bleu"] > 90, metrics
        (workdir / "done").touch()
    return TinyRun(str(workdir), config)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One trained synthetic run (reverse task, hidden 32, 300 steps) shared by the session:
    `tiny_run.workdir` (str) and `tiny_run.config`. Treat the workdir as read-only: copy it
    (shutil.copytree) before a test changes or trains on it."""
    return train_tiny_run(tmp_path_factory.getbasetemp() / "tiny_run")


# ---------------------------------------------------------------------------------------------
# nan_loss_from
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def nan_loss_from():
    """A factory of train_step stand-ins that report a NaN loss from a given step on: a config
    cannot ask for one (config validation refuses NaN rates), a diverging run can."""
    from jaxattn import train as train_lib

    real = train_lib.train_step

    def make(step: int):
        def train_step(state, batch, key, **kw):
            new, m = real(state, batch, key, **kw)
            return new, {**m, "loss": jnp.where(state.step >= step, jnp.nan, m["loss"])}

        return train_step

    return make
