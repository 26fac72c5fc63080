"""Fixtures shared by the test modules (test modules never import each other: they ask for these,
or import tests/shared.py for what they need at import time).

- `random_init`: random variables for any Flax module, without compiling its init.
- `synthetic_config`: configs/synthetic.py with overrides, for tests that train small runs.
- `tiny_run`: one trained synthetic run per session, for the tests of restoring, translating,
  evaluating and exporting.
- `nan_loss_from`: a train_step stand-in whose loss turns NaN from a given step on.
- `toy_corpus`: a small learnable eng-fra corpus, as a tutorial TSV and as Multi30k-style files.
- every test: $JAXATTN_CACHE (prepared training ids) in a session folder, and JAX's persistent
  compilation cache in one shared by the session's workers and subprocesses.

One definition of each shared thing: fixtures here, for test functions and other fixtures; what
must exist at import time (the repository's `ROOT`, for module-level globs and parametrize lists,
and the `synthetic_config` function behind the fixture, for module-level helpers and the scripts
tests start) in tests/shared.py (`from shared import ROOT`). A test module defines neither again.

Markers (pyproject.toml): `slow` marks the tests that train (a run, or a model to a quality bar)
or start a script as a subprocess, or use a fixture that does (`tiny_run`): a decorator or a
module's `pytestmark` says so at the test. Besides, for the parametrized tests in `FAST_EVERY`
below (one check over many compiled variants) only every n-th case stays out of `slow`.
`-m "not slow"` is then the fast subset that still unit-tests every module (README.md).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shared

# ---------------------------------------------------------------------------------------------
# the slow marker on parametrized breadth
# ---------------------------------------------------------------------------------------------

# {file::test: n}: the fast subset runs every n-th case of these tests (first, n+1-th, ...), the
# full suite all of them; each case compiles a model variant, the check is the same for all.
FAST_EVERY = {
    "test_attention.py::test_cache_jit_vmap": 2,
    "test_attention.py::test_gradients_finite_with_fully_masked_row": 2,
    "test_attention.py::test_inside_scan": 2,
    "test_attention.py::test_matches_numpy": 3,
    "test_bf16.py::test_every_matmul_runs_in_bf16": 5,
    "test_decoders.py::test_decoder_forward_masking_padding_and_grads": 4,
    "test_decoders.py::test_teacher_forcing_matches_step_loop": 2,
    "test_encoders.py::test_encoder_shapes_finals_and_padding_invariance": 2,
    "test_models.py::test_model_shapes_masking_and_padding_invariance": 2,
    "test_parity.py::test_tutorial_model_parity": 2,
    "test_search.py::test_greedy_matches_step_loop_and_free_running_and_beam1": 2,
    "test_search_options.py::test_a_sentences_samples_ignore_the_rest_of_its_batch": 3,
    "test_search_options.py::test_beam_scores_include_the_coverage_penalty": 2,
    "test_search_options.py::test_sample_frequencies_match_the_filtered_softmax": 3,
}


@pytest.hookimpl(tryfirst=True)  # before -m and -k deselect: count over every collected case
def pytest_collection_modifyitems(config, items):
    """Marks `slow` the cases of FAST_EVERY's tests beyond every n-th one."""
    seen, modules = collections.Counter(), {}
    for item in items:
        modules.setdefault(item.path.name, getattr(item, "module", None))
        name = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        if name in FAST_EVERY:
            if seen[name] % FAST_EVERY[name]:
                item.add_marker(pytest.mark.slow)
            seen[name] += 1
    for name in FAST_EVERY:  # a renamed test would silently join the fast subset in full
        file, test = name.split("::")
        if file in modules and not hasattr(modules[file], test):
            raise pytest.UsageError(f"tests/conftest.py FAST_EVERY: {file} has no {test}")


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache in one folder per test session (shared by the xdist
    workers and the scripts tests start): the same small models are compiled by many tests
    and subprocesses, and a hit skips XLA's compile (about a third of the suite's time). A
    size limit turns on JAX's file lock around reads and writes (filelock), so concurrent
    processes never read a half-written entry. Results cannot change: the key is the
    compiled program, the compiler options and the versions."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax_cache"
    folder.mkdir(exist_ok=True)
    settings = {"jax_compilation_cache_dir": str(folder), "jax_compilation_cache_max_size": 2**32}
    mp = pytest.MonkeyPatch()
    old = {k: getattr(jax.config, k) for k in settings}
    for key, value in settings.items():
        mp.setenv(key.upper(), str(value))
        jax.config.update(key, value)
    yield
    mp.undo()
    for key, value in old.items():
        jax.config.update(key, value)


@pytest.fixture(scope="session", autouse=True)
def _prepared_ids_cache(tmp_path_factory):
    """Prepared training ids (jaxattn.data.prepared) go to a session folder, not ~/.cache,
    also for the scripts tests start (they inherit the environment)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXATTN_CACHE", str(tmp_path_factory.mktemp("jaxattn_cache")))
    yield
    mp.undo()


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


@pytest.fixture(scope="session")
def synthetic_config():
    """The function `synthetic_config({"model.hidden": 16, ...})`: configs/synthetic.py with
    dotted overrides, the base of every small training run in the tests (offline, seconds)."""
    return shared.synthetic_config


# The tiny run: big and long enough to learn its task, small enough for a CPU test session.
TINY_RUN = {
    "model.hidden": 32,
    "model.embed_dim": 32,
    "data.synthetic_sizes": (2000, 100, 100),
    "train.num_train_steps": 300,
    "train.eval_every": 300,
    "train.checkpoint_every": 150,
    "train.progress_bar": False,
}


def train_tiny_run(workdir: Path) -> TinyRun:
    """Trains the tiny run into `workdir` once (a `done` file marks it finished) and returns it.

    The run learns its task (validation BLEU > 90), so tests may check translations, not just
    that something came out. Offline: the synthetic corpus needs no download.
    """
    config = shared.synthetic_config(TINY_RUN)
    if not (workdir / "done").exists():
        from jaxattn.training.loop import (
            train_and_evaluate,  # orbax, grain: only for sessions that train
        )

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
    from jaxattn.training import loop as train_lib

    real = train_lib.train_step

    def make(step: int):
        def train_step(state, batch, key, **kw):
            new, m = real(state, batch, key, **kw)
            return new, {**m, "loss": jnp.where(state.step >= step, jnp.nan, m["loss"])}

        return train_step

    return make


# ---------------------------------------------------------------------------------------------
# toy_corpus
# ---------------------------------------------------------------------------------------------


class ToyCorpus(NamedTuple):
    """A small learnable French-English corpus written by the tests, in two layouts."""

    tsv: str  # the tutorial's format: 'english<TAB>french' lines (configs/base.py and kin)
    parallel: str  # a folder of {train,val,test_2016_flickr}.{de,en} (configs/multi30k*.py)


def _toy_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (english, french) pairs: a tutorial prefix ('i am', 'he is', ...) and 1-5 words
    drawn from a Zipf law over 300 words, translated word by word (a made-up dictionary).
    Skewed like real text, so a model learns frequencies within a few steps."""
    from jaxattn.data.text import ENG_PREFIXES

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, rng.integers(2, 7))) for _ in range(300)]
    french = {w: "".join(rng.choice(letters, rng.integers(2, 8))) for w in words}
    prefixes = [p.strip() for p in ENG_PREFIXES if "'" not in p and not p.strip().endswith(" m")]
    zipf = 1.0 / np.arange(1, len(words) + 1)
    pairs = []
    for _ in range(n):
        prefix = prefixes[rng.integers(len(prefixes))]
        body = [words[i] for i in rng.choice(len(words), rng.integers(1, 6), p=zipf / zipf.sum())]
        pairs.append(
            (
                f"{prefix} {' '.join(body)} .",
                f"{prefix[::-1]} {' '.join(french[w] for w in body)} .",
            )
        )
    return pairs


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> ToyCorpus:
    """`toy_corpus.tsv` (3,400 lines in the tutorial's eng-fra format) and
    `toy_corpus.parallel` (the same pairs as Multi30k-style files, 'de' = the French side)."""
    root = tmp_path_factory.mktemp("toy_corpus")
    pairs = _toy_pairs(3400)
    tsv = root / "eng-fra.txt"
    tsv.write_text("".join(f"{e}\t{f}\n" for e, f in pairs), encoding="utf-8")
    parallel = root / "parallel"
    parallel.mkdir()
    for split, rows in (
        ("train", pairs[:3000]),
        ("val", pairs[3000:3200]),
        ("test_2016_flickr", pairs[3200:]),
    ):
        (parallel / f"{split}.en").write_text("".join(e + "\n" for e, _ in rows), "utf-8")
        (parallel / f"{split}.de").write_text("".join(f + "\n" for _, f in rows), "utf-8")
    return ToyCorpus(str(tsv), str(parallel))
