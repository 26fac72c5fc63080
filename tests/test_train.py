"""Training: exact resume (SIGKILL, SIGTERM, corrupt checkpoint), faults, data parallelism.

Runs that need a fresh JAX (forced device counts, jax.distributed, signals) go through
subprocesses: scripts/train.py or tests/distributed_worker.py, on configs/synthetic.py shrunk
to a tiny model.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from shared import ROOT, synthetic_config

from jaxattn.config import default_config
from jaxattn.errors import CheckpointError, ConfigError, TrainingError
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.training import loop as train_lib
from jaxattn.training.losses import loss_mask, token_losses
from jaxattn.training.optim import make_optimizer, make_schedule

TINY = {
    "model.hidden": 16,
    "model.embed_dim": 16,
    "data.synthetic_sizes": (400, 40, 40),
    "train.log_every": 5,
    "train.checkpoint_every": 10,
    "train.eval_every": 1000,
    "train.num_train_steps": 30,
    "train.progress_bar": False,
}
LONG = {**TINY, "train.num_train_steps": 400}  # long enough to be interrupted mid-run


def _env(devices: int = 1) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _worker(workdir, out, overrides, *, devices=1, port=0, pid=0, nproc=1):
    args = [f"{k}={v!r}" for k, v in overrides.items()]
    return subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "tests", "distributed_worker.py"),
            str(port),
            str(pid),
            str(nproc),
            str(workdir),
            str(out),
            *args,
        ],
        env=_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc, timeout=240):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _script(workdir, overrides):
    flags = [f"--config.{k}={v}" for k, v in overrides.items()]
    return subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "train.py"),
            f"--config={os.path.join(ROOT, 'configs', 'synthetic.py')}",
            f"--workdir={workdir}",
            *flags,
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_checkpoint(workdir, step, proc, timeout=180):
    path = os.path.join(workdir, "checkpoints", str(step))
    t0 = time.time()
    while not os.path.isdir(path):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.02)


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_equal_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Parameters of an uninterrupted LONG run (the reference for every resume test)."""
    d = tmp_path_factory.mktemp("uninterrupted")
    _finish(_worker(d / "w", d / "p.npz", LONG))
    return _load(d / "p.npz")


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact(tmp_path, uninterrupted):
    workdir = tmp_path / "w"
    proc = _script(workdir, LONG)
    _wait_for_checkpoint(workdir, 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = Checkpointer(str(workdir)).all_steps()
    assert steps and steps[-1] < 400, steps  # really killed mid-run
    out = _finish(_worker(workdir, tmp_path / "p.npz", LONG))  # rerun: resumes
    assert "step 400" in out
    _assert_equal_params(_load(tmp_path / "p.npz"), uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_then_resume_is_bit_exact(tmp_path, uninterrupted):
    workdir = tmp_path / "w"
    proc = _script(workdir, LONG)
    _wait_for_checkpoint(workdir, 10, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert "rerun the same command to resume" in out
    last = Checkpointer(str(workdir)).all_steps()[-1]
    assert 10 <= last < 400
    _finish(_worker(workdir, tmp_path / "p.npz", LONG))
    _assert_equal_params(_load(tmp_path / "p.npz"), uninterrupted)


@pytest.mark.slow
def test_data_parallel_over_4_devices_matches_1_device(tmp_path):
    one = _worker(tmp_path / "w1", tmp_path / "p1.npz", TINY, devices=1)
    four = _worker(tmp_path / "w4", tmp_path / "p4.npz", TINY, devices=4)
    _finish(one)
    assert "on 4 devices" in _finish(four)
    p1, p4 = _load(tmp_path / "p1.npz"), _load(tmp_path / "p4.npz")
    for k in p1:
        if k == "['decoder']['attention']['energy']['bias']":
            # softmax ignores this bias: its gradient is rounding noise, which Adam scales up to
            # lr-sized steps of random sign; it only has to stay within steps * lr.
            assert np.abs(p4[k]).max() <= 30 * 3e-3
            continue
        np.testing.assert_allclose(p4[k], p1[k], rtol=1e-5, atol=1e-6, err_msg=k)
    losses = []
    for w in ("w1", "w4"):
        with open(tmp_path / w / "metrics.jsonl") as f:
            losses.append([r["loss"] for r in map(json.loads, f) if r["split"] == "train"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


@pytest.mark.slow
def test_two_processes_train_together_to_identical_params(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        _worker(tmp_path / "w", tmp_path / f"p{i}.npz", TINY, port=port, pid=i, nproc=2)
        for i in range(2)
    ]
    outs = [_finish(p) for p in procs]
    assert all("of 2 on 2 devices" in o for o in outs)
    p0, p1 = _load(tmp_path / "p0.npz"), _load(tmp_path / "p1.npz")
    _assert_equal_params(p0, p1)
    assert not all(np.array_equal(p0[k], 0 * p0[k]) for k in p0)


# ------------------------------------------------------------------ in-process fault tests
def _config(**overrides):
    return synthetic_config({**TINY, **overrides})


def _params(state):
    import jax

    return {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_leaves_with_path(state.params)
    }


@pytest.mark.slow
def test_scheduled_sampling_resume_is_bit_exact(tmp_path):
    """With a decaying teacher-forcing schedule (a ratio from the traced step, coins from the
    step's key), 10 steps + a resume to 20 give the parameters of 20 uninterrupted steps."""
    schedule = {
        "train.teacher_forcing_schedule": "inverse_sigmoid",
        "train.teacher_forcing_sigmoid_k": 3.0,
        "train.num_train_steps": 20,
    }
    ref, _ = train_lib.train_and_evaluate(_config(**schedule), str(tmp_path / "ref"))
    train_lib.train_and_evaluate(
        _config(**{**schedule, "train.num_train_steps": 10}), str(tmp_path / "w")
    )
    resumed, _ = train_lib.train_and_evaluate(_config(**schedule), str(tmp_path / "w"))
    _assert_equal_params(_params(resumed), _params(ref))
    forced, _ = train_lib.train_and_evaluate(
        _config(**{"train.num_train_steps": 20}), str(tmp_path / "forced")
    )
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(_params(forced).values(), _params(ref).values(), strict=True)
    )


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
    ref, _ = train_lib.train_and_evaluate(_config(), str(tmp_path / "ref"))
    workdir = str(tmp_path / "w")
    train_lib.train_and_evaluate(_config(**{"train.num_train_steps": 20}), workdir)
    assert Checkpointer(workdir).all_steps() == [10, 20]
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "20", "state")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    with caplog.at_level("WARNING"):
        state, _ = train_lib.train_and_evaluate(_config(), workdir)
    assert "step 20 is unreadable" in caplog.text
    assert int(state.step) == 30
    _assert_equal_params(_params(state), _params(ref))


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, nan_loss_from):
    workdir = str(tmp_path / "w")
    train_lib.train_and_evaluate(_config(**{"train.num_train_steps": 10}), workdir)
    monkeypatch.setattr(train_lib, "train_step", nan_loss_from(10))
    with pytest.raises(TrainingError, match="Loss became nan"):
        train_lib.train_and_evaluate(_config(), workdir)
    monkeypatch.undo()
    ckpt = Checkpointer(workdir)
    assert ckpt.all_steps() == [10]
    good = _config(**{"train.num_train_steps": 10})
    state, _ = train_lib.train_and_evaluate(good, workdir)  # restores step 10, nothing to do
    assert int(state.step) == 10
    assert all(np.isfinite(v).all() for v in _params(state).values())


@pytest.mark.slow
def test_workdir_of_another_model_is_refused(tmp_path):
    workdir = str(tmp_path / "w")
    train_lib.train_and_evaluate(_config(**{"train.num_train_steps": 10}), workdir)
    with pytest.raises(CheckpointError, match="model.hidden: saved 16, now 32"):
        train_lib.train_and_evaluate(_config(**{"model.hidden": 32}), workdir)
    with pytest.raises(CheckpointError, match="data.synthetic_task"):
        train_lib.train_and_evaluate(_config(**{"data.synthetic_task": "copy"}), workdir)
    assert Checkpointer(workdir).all_steps() == [10]  # untouched


@pytest.mark.slow
def test_workdir_outputs(tmp_path):
    workdir = tmp_path / "w"
    _, metrics = train_lib.train_and_evaluate(_config(), str(workdir))
    assert {"loss", "perplexity", "bleu", "chrf"} <= metrics.keys()
    for name in ("config.json", "metrics.jsonl", "curves.png", "best.json", "tensorboard"):
        assert (workdir / name).exists(), name
    assert json.loads((workdir / "config.json").read_text())["model"]["hidden"] == 16
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "valid"}
    assert all(r["tokens_per_sec"] > 0 for r in records if r["split"] == "train")


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("model.decoder", "mamba", "config.model.decoder='mamba' is not one of"),
        ("train.batch_size", 0, "batch_size=0 must be >= 1"),
        ("train.teacher_forcing_ratio", 1.5, "teacher_forcing_ratio=1.5 must be <= 1"),
        ("train.optimizer", "adagrad", "config.train.optimizer='adagrad'"),
        ("train.teacher_forcing_schedule", "cosine", "teacher_forcing_schedule='cosine' is not"),
        (
            "train.teacher_forcing_min",
            0.5,
            "teacher_forcing_min=0.5 must be <= "
            "teacher_forcing_ratio \\(0.4\\), the start of the 'linear' schedule",
        ),
        ("train.teacher_forcing_decay_rate", 0.0, "teacher_forcing_decay_rate=0.0 must be > 0"),
        ("train.teacher_forcing_sigmoid_k", 0.5, "teacher_forcing_sigmoid_k=0.5 must be >= 1"),
    ],
)
def test_bad_config_fails_before_any_work(tmp_path, key, value, message):
    schedule = {"train.teacher_forcing_schedule": "linear", "train.teacher_forcing_ratio": 0.4}
    overrides = {**(schedule if key == "train.teacher_forcing_min" else {}), key: value}
    with pytest.raises(ConfigError, match=message):
        train_lib.train_and_evaluate(_config(**overrides), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


TRANSFORMER = {
    "model.encoder": "transformer",
    "model.decoder": "transformer",
    "model.heads": 2,
    "model.ff_dim": 32,
    "model.encoder_layers": 1,
    "model.decoder_layers": 2,
}


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"model.heads": 3}, "heads \\(3\\) must divide hidden \\(16\\)"),
        ({"model.decoder": "luong", "model.heads": 5}, "heads \\(5\\) must divide"),
        ({"model.encoder": "rnn", "model.heads": 0}, "heads=0 must be >= 1"),
        ({"model.alignment_layer": 2}, "alignment_layer 2 is not a layer of the 2-layer decoder"),
        ({"model.alignment_layer": -3}, "alignment_layer=-3 must be >= -1"),
        ({"model.alignment_head": 2}, "alignment_head 2 is not one of the 2 heads"),
        ({"model.positional": "rotary"}, "config.model.positional='rotary' is not one of"),
        (
            {"model.decoder": "bahdanau", "model.tie_embeddings": True, "model.embed_dim": 8},
            "tie_embeddings: the output layer reads 16 features",
        ),
        (
            {"model.positional": "learned", "model.max_positions": 8, "eval.max_decode_len": 9},
            "max_decode_len=9 must be <= model.max_positions \\(8\\)",
        ),
        ({"model.attention_dropout": 1.0}, "attention_dropout=1.0 must be < 1"),
        ({"model.ff_dim": 0}, "ff_dim=0 must be >= 1"),
    ],
)
def test_bad_transformer_config_fails_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train_lib.train_and_evaluate(_config(**{**TRANSFORMER, **overrides}), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "overrides,side",
    [
        (
            {"model.positional": "learned", "model.max_positions": 4, "eval.max_decode_len": 4},
            "source",
        ),
        (
            {
                "model.encoder": "rnn",
                "model.positional": "learned",
                "model.max_positions": 6,
                "eval.max_decode_len": 6,
            },
            "target",
        ),
    ],
)
def test_positions_the_data_needs_fail_before_training(tmp_path, overrides, side):
    """A learned positional table narrower than the widest training batch (known once the
    data is read) stops the run before any checkpoint, with the numbers."""
    message = f"The widest training batch has \\d+ {side} positions .* \\(model.max_positions\\)"
    with pytest.raises(TrainingError, match=message):
        train_lib.train_and_evaluate(_config(**{**TRANSFORMER, **overrides}), str(tmp_path / "w"))
    assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    [
        TRANSFORMER,
        {**TRANSFORMER, "model.scan_layers": True, "model.norm_first": True},
        {"model.encoder": "transformer", "model.heads": 2, "model.ff_dim": 32},  # + Bahdanau
    ],
    ids=["transformer", "scanned_pre_ln", "transformer_encoder_bahdanau"],
)
def test_transformer_trains_and_resumes_bit_exact(tmp_path, model):
    """A Transformer (or a mixed model) learns the synthetic task, and 10 steps + a resume to
    30 give the parameters of 30 uninterrupted steps."""
    run = {**model, "train.learning_rate": 3e-3}
    ref, metrics = train_lib.train_and_evaluate(_config(**run), str(tmp_path / "ref"))
    assert metrics["loss"] < 2.5, metrics  # a uniform guess is log(V) ~ 3.4
    train_lib.train_and_evaluate(
        _config(**{**run, "train.num_train_steps": 10}), str(tmp_path / "w")
    )
    state, _ = train_lib.train_and_evaluate(_config(**run), str(tmp_path / "w"))
    assert Checkpointer(str(tmp_path / "w")).all_steps()[-1] == 30
    _assert_equal_params(_params(state), _params(ref))


@pytest.mark.slow
def test_token_batches_train_and_resume_bit_exact(tmp_path):
    """With train.batch_tokens (batches of varying rows and widths, empty filler rows), the
    loss falls and 10 steps + a resume to 20 give the parameters of 20 uninterrupted steps."""
    run = {
        "train.batch_tokens": 96,  # widths 8 and 16: 12 or 6 rows (fewer: the last ones)
        "data.synthetic_max_len": 12,
        "train.num_train_steps": 20,
        "train.learning_rate": 3e-3,
    }
    ref, metrics = train_lib.train_and_evaluate(_config(**run), str(tmp_path / "ref"))
    assert np.isfinite(metrics["loss"]) and metrics["loss"] < 3.0, metrics  # log(V) ~ 3.4
    train_lib.train_and_evaluate(
        _config(**{**run, "train.num_train_steps": 10}), str(tmp_path / "w")
    )
    resumed, _ = train_lib.train_and_evaluate(_config(**run), str(tmp_path / "w"))
    _assert_equal_params(_params(resumed), _params(ref))


@pytest.mark.slow
def test_cli_rejects_unknown_key_and_wrong_type_without_traceback(tmp_path):
    for flag, needle in [
        ("--config.model.hiden=3", "hiden"),
        ("--config.model.hidden=abc", "hidden"),
    ]:
        r = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "scripts", "train.py"),
                f"--config={os.path.join(ROOT, 'configs', 'synthetic.py')}",
                f"--workdir={tmp_path / 'w'}",
                flag,
            ],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode != 0
        assert needle in r.stderr
        assert "Traceback" not in r.stderr


def test_optimizer_options_build_and_step():
    import jax.numpy as jnp

    for opt, sched in [
        ("adam", "constant"),
        ("adamw", "cosine"),
        ("sgd", "warmup_cosine"),
        ("adam", "rsqrt"),
    ]:
        tc = default_config().train
        tc.optimizer, tc.lr_schedule, tc.warmup_steps, tc.grad_clip = opt, sched, 10, 1.0
        tx = make_optimizer(tc, total_steps=100)
        params = {"w": jnp.ones(3)}
        updates, _ = tx.update({"w": jnp.full(3, 100.0)}, tx.init(params), params)
        assert np.isfinite(np.asarray(updates["w"])).all()
        if opt != "sgd":
            assert float(jnp.abs(updates["w"]).max()) > 0
    tc.lr_schedule = "rsqrt"
    schedule = make_schedule(tc, 100)
    assert float(schedule(4)) < float(schedule(9)) and float(schedule(99)) < float(schedule(9))
    tc.lr_schedule, tc.warmup_steps = "warmup_cosine", 500  # a short run of a long config
    with pytest.raises(TrainingError, match="warmup_steps"):
        make_schedule(tc, 60)


def test_loss_mask_and_label_smoothing():
    import jax.numpy as jnp

    batch = {"tgt": jnp.array([[5, 2, 0, 0]]), "tgt_len": jnp.array([2])}
    np.testing.assert_array_equal(loss_mask(batch, False), [[1, 1, 0, 0]])
    np.testing.assert_array_equal(loss_mask(batch, True), [[1, 1, 1, 1]])
    logits = jnp.log(jnp.array([[[0.7, 0.1, 0.2]]]))
    plain = float(token_losses(logits, jnp.array([[0]]))[0, 0])
    assert plain == pytest.approx(-np.log(0.7), rel=1e-6)
    smooth = float(token_losses(logits, jnp.array([[0]]), 0.3)[0, 0])
    expected = -(0.8 * np.log(0.7) + 0.1 * np.log(0.1) + 0.1 * np.log(0.2))
    assert smooth == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_gradient_is_autodiffs(eps):
    """token_losses' written-out gradient (softmax - smoothed one-hot) against autodiff of
    optax's cross-entropy, weighted by a mask as in train_step."""
    import jax
    import jax.numpy as jnp
    import optax

    logits = jax.random.normal(jax.random.key(0), (3, 5, 40)) * 4
    targets = jax.random.randint(jax.random.key(1), (3, 5), 0, 40)
    mask = (jnp.arange(5)[None] < jnp.array([5, 2, 0])[:, None]).astype(jnp.float32)
    labels = optax.smooth_labels(jax.nn.one_hot(targets, 40), eps)
    ref = jax.value_and_grad(lambda x: (optax.softmax_cross_entropy(x, labels) * mask).sum())
    ours = jax.jit(jax.value_and_grad(lambda x: (token_losses(x, targets, eps) * mask).sum()))
    (v1, g1), (v2, g2) = ref(logits), ours(logits)
    assert float(v2) == pytest.approx(float(v1), rel=1e-5)
    np.testing.assert_allclose(g2, g1, atol=1e-6)
    assert np.all(np.asarray(g2)[2] == 0) and np.abs(np.asarray(g2)[0]).max() > 0.01
    tangent = jax.random.normal(jax.random.key(3), logits.shape)  # forward mode works too
    _, t1 = jax.jvp(lambda x: optax.softmax_cross_entropy(x, labels), (logits,), (tangent,))
    _, t2 = jax.jvp(lambda x: token_losses(x, targets, eps), (logits,), (tangent,))
    np.testing.assert_allclose(t2, t1, rtol=1e-4, atol=1e-5)
