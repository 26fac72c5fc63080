"""The exponential moving average of the weights (train.ema_decay): the update inside the jitted
train step against a NumPy recomputation, its config rules, the checkpoint item that keeps it
(resume with EMA turned on, kept or off), the 'ema' checkpoint selector and its errors; then,
slow, a trained run: resume bit-exact with the EMA, its validation metrics beside the others,
and 'ema' taken by Translator, scripts/evaluate.py and the export."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from shared import ROOT, synthetic_config

from jaxattn.config import validate
from jaxattn.errors import CheckpointError, ConfigError, InferenceError
from jaxattn.model.seq2seq import build_model
from jaxattn.rundir import params as params_lib
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.rundir.layout import EMA, EMA_ITEM, Ema, Step, step_item
from jaxattn.rundir.run import Checkpoints
from jaxattn.training import loop as train_lib
from jaxattn.training.optim import make_optimizer


def _flat(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_equal(a, b):
    for x, y in zip(_flat(a), _flat(b), strict=True):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------ the update
@functools.cache
def _tiny(decay: float, start: int):
    """(jitted train_step, initial state with EMA if decay > 0, a batch) of a tiny model."""
    config = synthetic_config(
        {
            "model.hidden": 8,
            "model.embed_dim": 8,
            "train.ema_decay": decay,
            "train.ema_start": start,
            "train.learning_rate": 0.05,
        }
    )
    model = build_model(config.model, 12, 12, bos_id=1)
    rng = np.random.default_rng(0)
    batch = {
        "src": jnp.asarray(rng.integers(3, 12, (4, 6)), jnp.int32),  # [B=4, S=6]
        "src_len": jnp.asarray([6, 5, 4, 3], jnp.int32),
        "tgt": jnp.asarray(rng.integers(3, 12, (4, 7)), jnp.int32),  # [B, T=7]
        "tgt_len": jnp.asarray([7, 6, 5, 4], jnp.int32),
    }
    tx = make_optimizer(config.train, 100)
    state = train_lib.create_train_state(model, tx, jax.random.PRNGKey(0), batch, ema=decay > 0)
    step = jax.jit(functools.partial(train_lib.train_step, model=model, tc=config.train))
    return step, state, batch


@pytest.mark.parametrize("decay,start", [(0.9, 0), (0.75, 2)])
def test_ema_after_k_steps_matches_numpy(decay, start):
    """After each of k jitted steps the EMA is d * ema + (1 - d) * params (d = 0 for the
    first ema_start updates: a copy), from a copy of the initial parameters, recomputed in
    NumPy from the parameters each step made; the parameters are those of a run without EMA."""
    step, state, batch = _tiny(decay, start)
    plain_step, plain, _ = _tiny(0.0, 0)
    assert plain.ema_params is None  # EMA off: no EMA leaves at all
    _assert_equal(state.ema_params, state.params)
    want = _flat(state.params)
    key = jax.random.key(1)
    for k in range(1, 6):
        state, _ = step(state, batch, key)
        plain, _ = plain_step(plain, batch, key)
        _assert_equal(state.params, plain.params)  # the EMA never changes the training
        d = 0.0 if k <= start else decay
        want = [d * e + (1 - d) * p for e, p in zip(want, _flat(state.params), strict=True)]
        for got, w in zip(_flat(state.ema_params), want, strict=True):
            np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-7)
        if k > start:  # averaging: not the parameters themselves
            assert any(
                not np.array_equal(e, p)
                for e, p in zip(_flat(state.ema_params), _flat(state.params), strict=True)
            )


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train.ema_decay": 1.0}, r"config.train.ema_decay=1.0 must be"),
        ({"train.ema_decay": -0.1}, r"config.train.ema_decay=-0.1 must be"),
        ({"train.ema_start": -1}, r"config.train.ema_start=-1 must be"),
        ({"train.ema_start": 100}, r"config.train.ema_start=100 needs train.ema_decay > 0"),
    ],
)
def test_ema_config_rules(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(synthetic_config(overrides))
    validate(synthetic_config({"train.ema_decay": 0.999, "train.ema_start": 100}))


# --------------------------------------------------------------- the checkpoint and 'ema'
def _state(updates: int, ema: bool):
    """A TrainState after `updates` Adam steps, with EMA weights (params / 2) if `ema`."""
    params = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}}
    state = train_lib.TrainState.create(apply_fn=None, params=params, tx=optax.adam(0.1))
    for i in range(updates):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p + i), state.params)
        state = state.apply_gradients(grads=grads)
    return state.replace(ema_params=jax.tree.map(lambda p: p / 2, state.params) if ema else None)


def _iter():
    return iter(grain.MapDataset.range(50).to_iter_dataset())


def _save(workdir, steps, ema: bool, metrics=None):
    with Checkpointer(workdir, async_save=False) as ckpt:
        for step in steps:
            ckpt.save(step, _state(step, ema), _iter(), {"config": {}}, metrics=metrics)


def test_checkpoint_keeps_the_ema_and_resumes_with_it_on_or_off(tmp_path, caplog):
    """The EMA weights are an item of their own (the `state` item is that of a run without
    EMA); a restore gives them back exactly; a state with EMA restored from a step without
    one starts it from the step's parameters, a state without EMA drops a saved one."""
    dirs = with_ema, without = str(tmp_path / "with"), str(tmp_path / "without")
    _save(with_ema, [3], ema=True)
    _save(without, [3], ema=False)
    assert os.path.isdir(step_item(with_ema, 3, EMA_ITEM))
    assert not os.path.exists(step_item(without, 3, EMA_ITEM))
    trees = [params_lib.shapes(params_lib.saved_tree(step_item(w, 3, "state"))) for w in dirs]
    assert trees[0] == trees[1] and not any("ema" in name for name in trees[0])

    want = _state(3, ema=True)
    caplog.set_level(logging.WARNING)
    with Checkpointer(with_ema, async_save=False) as ckpt:
        got = ckpt.restore(3, _state(0, ema=True), _iter())
        _assert_equal(got.ema_params, want.ema_params)
        _assert_equal((got.params, got.opt_state, got.step), (want.params, want.opt_state, 3))
        assert not [r for r in caplog.records if r.name.startswith("jaxattn")]
        off = ckpt.restore(3, _state(0, ema=False), _iter())  # EMA turned off
        assert off.ema_params is None
        _assert_equal(off.params, want.params)
    assert "train.ema_decay=0 now: they are dropped" in caplog.text
    caplog.clear()
    with Checkpointer(without, async_save=False) as ckpt:
        on = ckpt.restore(3, _state(0, ema=True), _iter())  # EMA turned on
    _assert_equal(on.ema_params, want.params)
    _assert_equal(on.opt_state, want.opt_state)
    assert (
        "Step 3 has no EMA weights" in caplog.text and "starts from its parameters" in caplog.text
    )


def test_resume_with_another_optimizer_keeps_the_ema(tmp_path, caplog):
    """A resume whose optimizer state no longer fits (another optimizer: fresh optimizer
    state from the step's parameters) still restores the step's EMA weights."""
    workdir = str(tmp_path / "w")
    _save(workdir, [3], ema=True)
    sgd = optax.sgd(0.1)
    fresh = _state(0, ema=True)
    fresh = fresh.replace(tx=sgd, opt_state=sgd.init(fresh.params))
    caplog.set_level(logging.WARNING)
    with Checkpointer(workdir, async_save=False) as ckpt:
        got, step = ckpt.restore_latest(fresh, _iter())
    assert step == 3 and int(got.step) == 3 and "fresh optimizer state" in caplog.text
    want = _state(3, ema=True)
    _assert_equal((got.params, got.ema_params), (want.params, want.ema_params))


def test_ema_selector_reads_the_newest_steps_ema(tmp_path):
    """Checkpoints lists EMA when the newest step has EMA weights, resolves 'ema' to it, reads
    them, gives its meta and its ema_* validation metrics; a run without them is told to set
    train.ema_decay."""
    workdir = str(tmp_path / "w")
    _save(workdir, [2, 5], ema=True, metrics={"bleu": 10.0, "loss": 2.0, "ema_bleu": 12.5})
    like = jax.eval_shape(lambda: _state(0, ema=False).params)
    with Checkpoints(workdir) as ro:
        assert ro.list() == [Step(2), Step(5), EMA] and type(ro.list()[-1]) is Ema
        assert ro.resolve("ema") is EMA and ro.resolve(EMA) is EMA
        _assert_equal(ro.read_params(EMA, like), _state(5, ema=True).ema_params)
        _assert_equal(ro.read_params(Step(5), like), _state(5, ema=True).params)
        assert ro.meta(EMA)["step"] == 5 and ro.metrics(EMA) == {"bleu": 12.5}
    plain = str(tmp_path / "plain")
    _save(plain, [2], ema=False)
    with Checkpoints(plain) as ro:
        assert ro.list() == [Step(2)]
        with pytest.raises(CheckpointError, match=r"step 2\) holds no EMA.*train.ema_decay"):
            ro.resolve("ema")
    with pytest.raises(CheckpointError, match="No checkpoint in"):
        os.makedirs(tmp_path / "empty" / "checkpoints")
        with Checkpoints(str(tmp_path / "empty")) as ro:
            ro.resolve(EMA)


# ------------------------------------------------------------------------------ a trained run
RUN = {
    "model.hidden": 16,
    "model.embed_dim": 16,
    "data.synthetic_sizes": (400, 40, 40),
    "train.learning_rate": 3e-3,
    "train.log_every": 5,
    "train.checkpoint_every": 10,
    "train.eval_every": 10,
    "train.num_train_steps": 20,
    "train.progress_bar": False,
    "train.ema_decay": 0.8,
    "train.ema_start": 3,
}


def _train(workdir, **overrides):
    return train_lib.train_and_evaluate(synthetic_config({**RUN, **overrides}), str(workdir))


@pytest.mark.slow
def test_trained_run_resumes_bit_exact_and_its_ema_is_validated_and_selected(tmp_path):
    """10 steps + a resume to 20 give the parameters and EMA of 20 uninterrupted steps; each
    validation logs ema_* metrics beside the weights' (which alone rank 'best'); 'ema' gives
    Translator, scripts/evaluate.py and the export those weights (their translations); a run
    without EMA is refused naming train.ema_decay, and resuming it with EMA on trains the same
    parameters and starts the EMA there."""
    from jaxattn.inference import exported
    from jaxattn.inference.translator import Translator
    from jaxattn.metrics import read_metrics

    ref, last = _train(tmp_path / "ref")
    _train(tmp_path / "w", **{"train.num_train_steps": 10})
    resumed, _ = _train(tmp_path / "w")
    _assert_equal((resumed.params, resumed.ema_params), (ref.params, ref.ema_params))
    pairs = zip(_flat(ref.ema_params), _flat(ref.params), strict=True)
    assert any(not np.array_equal(a, b) for a, b in pairs)

    valid = [r for r in read_metrics(str(tmp_path / "ref")) if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [10, 20]
    for r in valid:
        assert {"loss", "bleu", "chrf", "ema_loss", "ema_bleu", "ema_chrf"} <= r.keys()
        assert r["ema_loss"] != r["loss"]
    assert last["ema_chrf"] == valid[-1]["ema_chrf"]
    with Checkpointer(str(tmp_path / "ref"), read_only=True) as ckpt:  # ranked by the weights
        want_best = max((r["bleu"], r["step"]) for r in valid)[1]
        assert ckpt.best_step() == want_best

    tr = Translator.from_workdir(str(tmp_path / "ref"), "ema")
    assert tr.step is EMA
    _assert_equal(tr.variables["params"], ref.ema_params)
    sentences = ["1 2 3 4", "5 6 7", "8 9 10 11 12", "3 3 1", "12 11 10 9 8 7", "2 4 6 8"]
    src, hyps = tmp_path / "src.txt", tmp_path / "hyps.txt"
    src.write_text("".join(s + "\n" for s in sentences))
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "evaluate.py"),
            f"--workdir={tmp_path / 'ref'}",
            "--checkpoint=ema",
            f"--src={src}",
            f"--ref={src}",
            f"--output={hyps}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    want = tr.translate(sentences)
    assert hyps.read_text().splitlines() == [t.text for t in want]
    assert json.loads((tmp_path / "hyps.txt.json").read_text())["checkpoint"] == "ema"
    latest = Translator.from_workdir(str(tmp_path / "ref"), "latest").translate(sentences)
    assert [t.tokens for t in latest] != [t.tokens for t in want]  # another model

    export = str(tmp_path / "export")
    exported.export_workdir(str(tmp_path / "ref"), export, checkpoint="ema", platforms=("cpu",))
    loaded = exported.load(export)
    assert loaded.translator.step == "ema"
    got = loaded.translate(sentences, beam_size=1)  # greedy, as `want`
    assert [t.tokens for t in got] == [t.tokens for t in want]

    plain = tmp_path / "plain"
    _train(plain, **{"train.num_train_steps": 10, "train.ema_decay": 0.0, "train.ema_start": 0})
    with pytest.raises(InferenceError, match=r"holds no EMA weights.*train.ema_decay"):
        Translator.from_workdir(str(plain), "ema")
    turned_on, _ = _train(plain)  # EMA from step 10's parameters on; the same training
    _assert_equal(turned_on.params, ref.params)
    with Checkpoints(str(plain)) as ro:
        assert ro.resolve("ema") is EMA and ro.meta(EMA)["step"] == 20
