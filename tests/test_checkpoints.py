"""jaxattn.checkpoints: what a checkpoint holds and gives back (parameters, optimizer state and
step, the data iterator's position, the meta item with the config) and which steps are kept
and ranked best. Driven directly with a small TrainState and a grain iterator: no training."""

from __future__ import annotations

import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxattn.checkpoints import Checkpointer
from jaxattn.train import TrainState


def make_state(updates: int):
    """A TrainState after `updates` Adam steps (non-trivial optimizer moments)."""
    params = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}}
    state = TrainState.create(apply_fn=None, params=params, tx=optax.adam(0.1))
    for i in range(updates):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p + i), state.params)
        state = state.apply_gradients(grads=grads)
    return state


def make_iter():
    return iter(grain.MapDataset.range(100).shuffle(seed=3).to_iter_dataset())


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_contents_round_trip(tmp_path):
    """A restored step gives back its params, optimizer state, step number and iterator
    position exactly; the meta item on disk holds the config and the step; the newest
    `keep_latest` steps and the best one by BLEU are kept, and the best is found again."""
    workdir = str(tmp_path / "w")
    ckpt = Checkpointer(workdir, keep_latest=2, best_metric="bleu", async_save=False)
    it, saved, seen = make_iter(), {}, []
    for step, bleu in [(5, 30.0), (10, 10.0), (15, 20.0), (20, 5.0)]:
        seen += [next(it) for _ in range(3)]
        saved[step] = (make_state(step // 5), list(seen))
        ckpt.save(step, saved[step][0], it, {"config": {"model": {"hidden": 16}}},
                  metrics={"bleu": bleu, "loss": 1.0 / step})
    ckpt.close()

    ckpt = Checkpointer(workdir, keep_latest=2, best_metric="bleu", async_save=False)
    assert ckpt.all_steps() == [5, 15, 20]  # the 2 newest and the best (BLEU 30 at step 5)
    assert ckpt.best_step() == 5
    for step in (5, 20):
        want, consumed = saved[step]
        it = make_iter()
        got = ckpt.restore(step, make_state(0), it)
        assert int(got.step) == step // 5 and int(got.step) == int(want.step)
        assert_trees_equal(got.params, want.params)
        assert_trees_equal(got.opt_state, want.opt_state)
        rest = list(it)  # the iterator resumes right after the items consumed before the save
        assert consumed + rest == list(make_iter())
    with open(os.path.join(workdir, "checkpoints", "20", "meta", "metadata")) as f:
        meta = json.load(f)
    assert meta["config"] == {"model": {"hidden": 16}} and meta["step"] == 20
    ckpt.close()


def test_best_older_than_the_newest_n_survives(tmp_path):
    """keep_latest=3: the best step (2) is older than the 3 newest and is kept through later,
    worse saves (one without metrics) and a reopened manager; the others drop out."""
    workdir = str(tmp_path / "w")
    it, state = make_iter(), make_state(0)
    bleus = {1: 10.0, 2: 40.0, 3: 30.0, 4: 20.0, 5: None, 6: 5.0, 7: 1.0, 8: 2.0}
    for reopen in (range(1, 5), range(5, 9)):  # a restart in between
        ckpt = Checkpointer(workdir, keep_latest=3, async_save=False)
        for step in reopen:
            ckpt.save(step, state, it, {}, None if bleus[step] is None else {"bleu": bleus[step]})
        ckpt.close()
    ro = Checkpointer(workdir, read_only=True)
    assert ro.all_steps() == [2, 6, 7, 8] and ro.best_step() == 2 < min(ro.all_steps()[1:])
    assert ro.metrics(2) == {"bleu": 40.0}
    assert json.load(open(os.path.join(workdir, "best.json")))["step"] == 2
    ro.close()
