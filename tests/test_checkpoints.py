"""jaxattn.rundir.checkpointer and run.Checkpoints: what a checkpoint holds and gives back
(parameters, optimizer state and step, the data iterator's position, the meta item with the
config), which steps are kept and ranked best, the run's checkpoints as typed references and
averaging. Driven directly with a small TrainState and a grain iterator: no training."""

from __future__ import annotations

import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxattn.errors import CheckpointError, InferenceError, UsageError
from jaxattn.rundir import averaging
from jaxattn.rundir.averaging import average_params
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.rundir.layout import AVERAGED, Averaged, Step, averaged_dir
from jaxattn.rundir.run import Checkpoints
from jaxattn.training.loop import TrainState


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
        ckpt.save(
            step,
            saved[step][0],
            it,
            {"config": {"model": {"hidden": 16}}},
            metrics={"bleu": bleu, "loss": 1.0 / step},
        )
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


# ------------------------------------------------------------------------------ averaging
def test_best_by_loss_is_the_lowest_and_the_run_says_so(tmp_path):
    """best_metric='loss': the lowest validation loss is kept through later, worse saves and
    named in best.json; a run's `Checkpoints` rank by the best_metric of its config.json
    (a run without one by BLEU)."""
    from jaxattn.config import default_config
    from jaxattn.rundir.run import write_config

    workdir = str(tmp_path / "w")
    it, state = make_iter(), make_state(0)
    scores = {1: (3.0, 10.0), 2: (1.0, 0.5), 3: (2.0, 30.0), 4: (4.0, 1.0), 5: (5.0, 2.0)}
    ckpt = Checkpointer(workdir, keep_latest=2, best_metric="loss", async_save=False)
    for step, (loss, bleu) in scores.items():
        ckpt.save(step, state, it, {}, {"loss": loss, "bleu": bleu})
    ckpt.close()
    assert json.load(open(os.path.join(workdir, "best.json")))["step"] == 2
    with Checkpoints(workdir) as ro:  # no config.json: BLEU
        assert ro.steps() == [2, 4, 5] and ro.best() == 5
    config = default_config()
    config.train.best_metric = "loss"
    write_config(workdir, config)
    with Checkpoints(workdir) as ro:
        assert ro.best() == 2 and ro.resolve("best") == 2
        # averaging's best N follow the run's metric (lowest loss: 2 and 4 of the kept 2, 4, 5);
        # another metric is asked for by name, an unknown one refused
        assert averaging.select_steps(ro, best=2) == [2, 4]
        assert averaging.select_steps(ro, best=2, metric="bleu") == [4, 5]
        with pytest.raises(UsageError, match="metric must be one of"):
            averaging.select_steps(ro, best=2, metric="ter")
    assert averaging.average_checkpoints(workdir, best=1)["metric"] == "loss"


def test_average_params_exact():
    """Floating leaves: the mean (in float64, cast back to the leaf dtype); integer leaves equal
    in every tree are kept; differing ones, other structures and no trees are refused."""
    trees = [
        {
            "w": np.array([1.0, 2.0], np.float32),
            "b": np.array(1.0, np.float64),
            "count": np.array(7, np.int32),
        },
        {
            "w": np.array([2.0, 0.0], np.float32),
            "b": np.array(2.0, np.float64),
            "count": np.array(7, np.int32),
        },
        {
            "w": np.array([4.0, 1.0], np.float32),
            "b": np.array(4.0, np.float64),
            "count": np.array(7, np.int32),
        },
    ]
    got = average_params(trees)
    assert got["w"].dtype == np.float32 and got["b"].dtype == np.float64
    np.testing.assert_array_equal(got["w"], np.array([7 / 3, 1.0], np.float32))
    assert got["b"] == 7 / 3 and got["count"] == 7 and got["count"].dtype == np.int32
    assert average_params(trees[:1])["w"].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="count"):
        average_params([trees[0], {**trees[1], "count": np.array(8, np.int32)}])
    with pytest.raises(ValueError, match="structure"):
        average_params([trees[0], {"w": trees[1]["w"]}])
    with pytest.raises(ValueError, match="shapes"):
        average_params([trees[0], {**trees[1], "w": np.zeros(3, np.float32)}])
    with pytest.raises(ValueError, match="at least one"):
        average_params([])


def _run_with_bleus(workdir, bleus: dict):
    ckpt = Checkpointer(workdir, keep_latest=len(bleus), async_save=False)
    for step, bleu in bleus.items():
        ckpt.save(
            step,
            make_state(step),
            make_iter(),
            {"config": {"step": step}},
            None if bleu is None else {"bleu": bleu},
        )
    ckpt.close()


def test_average_last_and_best_n(tmp_path):
    """The last N or the best N by BLEU are averaged into WORKDIR/averaged (one version, the
    newest), restorable by name; the training checkpoints, their best and latest, stay."""
    workdir = str(tmp_path / "w")
    _run_with_bleus(workdir, {1: 5.0, 2: 30.0, 3: None, 4: 10.0, 5: 20.0})
    like = jax.eval_shape(lambda: make_state(0).params)
    with Checkpoints(workdir) as ro:
        params = {s: ro.read_params(s, like) for s in ro.steps()}
    for kwargs, steps in [({"last": 3}, [3, 4, 5]), ({"best": 2}, [2, 5]), ({"last": 1}, [5])]:
        meta = averaging.average_checkpoints(workdir, **kwargs)
        assert meta["steps"] == steps and meta["n"] == len(steps)
        assert meta["method"] == next(iter(kwargs)) and meta["config"] == {"step": steps[-1]}
        with Checkpoints(workdir) as ro:
            assert ro.resolve(AVERAGED) is AVERAGED
            assert ro.meta(AVERAGED)["steps"] == steps and ro.metrics(AVERAGED) == {}
            got = ro.read_params(AVERAGED, like)
            assert ro.steps() == [1, 2, 3, 4, 5] and ro.best() == 2
            assert ro.resolve("latest") == 5
        want = average_params([params[s] for s in steps])
        assert_trees_equal(got, want)
        assert os.listdir(averaged_dir(workdir)) != []
    assert len(os.listdir(averaged_dir(workdir))) == 1  # older versions dropped
    # a training manager (keep 2 + best) reopened on the workdir sees only its own steps
    with Checkpointer(workdir, keep_latest=2, async_save=False) as train_ckpt:
        assert 3 in train_ckpt.all_steps() and AVERAGED not in map(str, train_ckpt.all_steps())


def test_a_runs_checkpoints_as_typed_references(tmp_path):
    """run.Checkpoints lists a run's checkpoints as Step / AVERAGED references and resolves
    'latest', 'best', 'averaged', a step (int or digits) to one of them; a missing step or a
    bad selector is a CheckpointError naming what there is or what is allowed."""
    import pickle

    from jaxattn.rundir.run import saved_steps

    workdir = str(tmp_path / "w")
    assert saved_steps(workdir) == [] and not os.path.exists(workdir)  # nothing created
    _run_with_bleus(workdir, {3: 10.0, 7: 30.0, 9: None})
    with Checkpoints(workdir) as ro:
        listed = ro.list()
        assert listed == [3, 7, 9] and all(type(c) is Step for c in listed)
        assert ro.best() == Step(7) and type(ro.best()) is Step
        for which, want in [("best", 7), ("latest", 9), ("7", 7), (" 7 ", 7), (np.int64(7), 7)]:
            got = ro.resolve(which)
            assert type(got) is Step and got == want, (which, got)
        with pytest.raises(CheckpointError, match=r"No checkpoint at step 5; .*\[3, 7, 9\]"):
            ro.resolve("5")
        for bad in ("newest", True, 7.0, None):
            with pytest.raises(CheckpointError, match="must be 'latest', 'best', 'averaged'"):
                ro.resolve(bad)
        with pytest.raises(CheckpointError, match="No averaged checkpoint"):
            ro.resolve(str(AVERAGED))
    assert saved_steps(workdir) == [3, 7, 9]
    averaging.average_checkpoints(workdir, last=2)
    with Checkpoints(workdir) as ro:
        assert ro.list() == [Step(3), Step(7), Step(9), AVERAGED]
        assert isinstance(ro.list()[-1], Averaged) and not isinstance(ro.list()[-1], Step)
        assert ro.resolve(str(AVERAGED)) is AVERAGED  # the name as a user types it
        assert ro.meta(AVERAGED)["steps"] == [7, 9] and ro.meta(Step(7))["config"] == {"step": 7}
    # they print, compare and are stored as the number and the name
    assert f"{Step(7)}" == str(Step(7)) == repr(Step(7)) == "7" and f"{AVERAGED!r}" == "'averaged'"
    assert json.dumps([Step(7), AVERAGED]) == '[7, "averaged"]'
    assert type(pickle.loads(pickle.dumps(AVERAGED))) is Averaged
    assert type(pickle.loads(pickle.dumps(Step(7)))) is Step


def test_averaging_errors(tmp_path):
    """N larger than the checkpoints there are (or than those with a BLEU), N < 1, one of last
    and best, no checkpoints, and no averaged checkpoint yet: each a clear error."""
    workdir = str(tmp_path / "w")
    _run_with_bleus(workdir, {10: 5.0, 20: None})
    with pytest.raises(
        CheckpointError,
        match=r"last 3 checkpoints: .* holds 2 \(steps \[10, 20"
        r"\]\).*keep_checkpoints",
    ):
        averaging.average_checkpoints(workdir, last=3)
    with pytest.raises(CheckpointError, match="best 2 checkpoints by bleu: 1 of the 2"):
        averaging.average_checkpoints(workdir, best=2)
    for kwargs in ({"last": 0}, {"best": -1}, {"last": 1.5}):
        with pytest.raises(UsageError, match=">= 1"):
            averaging.average_checkpoints(workdir, **kwargs)
    for kwargs in ({}, {"last": 1, "best": 1}):
        with pytest.raises(UsageError, match="exactly one"):
            averaging.average_checkpoints(workdir, **kwargs)
    with (
        Checkpoints(workdir) as ro,
        pytest.raises(CheckpointError, match="No averaged checkpoint.*scripts/average.py"),
    ):
        ro.resolve(AVERAGED)
    os.makedirs(tmp_path / "empty" / "checkpoints")
    with pytest.raises(CheckpointError, match="No checkpoint in .* to average"):
        averaging.average_checkpoints(str(tmp_path / "empty"), last=1)
    with pytest.raises(CheckpointError, match="No checkpoint in"):
        averaging.average_checkpoints(str(tmp_path / "nothing"), last=1)


@pytest.mark.slow
def test_averaged_checkpoint_of_a_run_translates(tiny_run, tmp_path):
    """scripts/average.py averages the tiny run's two checkpoints; Translator.from_workdir(w,
    "averaged") restores exactly their mean and translates; a changed vocabulary file is named;
    too many checkpoints asked for is one error line."""
    import shutil
    import subprocess
    import sys

    from jaxattn.inference.translator import Translator

    w = tmp_path / "w"
    shutil.copytree(tiny_run.workdir, w)
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "average.py")
    r = subprocess.run(
        [sys.executable, script, f"--workdir={w}", "--last=2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "averaged the last 2 checkpoints" in r.stdout, r.stderr
    bad = subprocess.run(
        [sys.executable, script, f"--workdir={w}", "--last=3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [x for x in bad.stderr.splitlines() if x.startswith("error:")]
    assert bad.returncode == 1 and len(errors) == 1 and "holds 2" in errors[0], bad.stderr

    tr = Translator.from_workdir(str(w), str(AVERAGED))  # as a user spells it
    assert tr.step is AVERAGED
    with Checkpoints(str(w)) as ro:
        assert ro.steps() == [150, 300] and ro.meta(AVERAGED)["steps"] == [150, 300]
        like = jax.eval_shape(lambda: tr.variables["params"])
        want = average_params([ro.read_params(Step(s), like) for s in (150, 300)])
    assert_trees_equal(tr.variables["params"], want)
    out = tr.translate(["1 2 3 4", "5 6 7"])
    assert len(out) == 2 and all(t.tokens for t in out)

    vocab = (w / "tgt_vocab.txt").read_text().splitlines()
    (w / "tgt_vocab.txt").write_text("\n".join(vocab[:-2] + vocab[-1:] + vocab[-2:-1]) + "\n")
    with pytest.raises(
        InferenceError, match="tgt_vocab.txt is changed since the checkpoint at step averaged"
    ):  # same size: the sha256
        Translator.from_workdir(str(w), AVERAGED)
    (w / "tgt_vocab.txt").write_text("\n".join(vocab + ["extra"]) + "\n")
    with pytest.raises(InferenceError, match="checkpoint 'averaged' .*tgt_vocab.txt has changed"):
        Translator.from_workdir(str(w), AVERAGED)  # another size: the parameter's shape
