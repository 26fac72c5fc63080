"""The divergence guard (jaxattn.training.loop.DivergenceGuard) is right on both sides: it stops
runs
that blow up or never learn, before anything of theirs is saved, and it never stops a shipped
config that trains normally (each one run on a small corpus past the guard's warm-up)."""

import glob
import math
import os
import runpy

import numpy as np
import pytest
from shared import ROOT

from jaxattn.errors import TrainingError
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.training import loop as train_lib

CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


# ------------------------------------------------------------------------- the rules, unit
def test_low_loss_noise_is_not_divergence():
    """The demo config's case: near-zero losses with a 12x spike that stays far below log V."""
    guard = train_lib.DivergenceGuard(10.0, 16)
    rng = np.random.default_rng(0)
    for step in range(50, 2001, 50):
        losses = 0.03 * rng.lognormal(0, 0.5, 50)
        if step == 500:
            losses[-1] = 0.39  # the spike that stopped configs/synthetic.py
        assert guard.check(losses, np.ones(50), step) is None, step


@pytest.mark.parametrize("loss", [math.log(16) * 10.5, 8e6, 1e30])
def test_blow_up_is_caught_from_the_first_step(loss):
    """Far worse than a uniform guess: no history or warm-up needed."""
    guard = train_lib.DivergenceGuard(10.0, 16)
    problem = guard.check([2.7, loss], [1.0, 1.0], 2)
    assert problem and "blew up" in problem and "log V = 2.77" in problem
    assert len(guard.losses) == 0  # nothing of a bad interval is recorded


def test_spike_back_past_a_uniform_guess_is_caught():
    guard = train_lib.DivergenceGuard(10.0, 1000)  # log V = 6.9
    for step in range(100, 501, 100):
        assert guard.check(np.full(100, 0.5), np.ones(100), step) is None
    assert guard.check([0.5, 4.9], [1, 1], 502) is None  # 10x the median, still below log V
    problem = guard.check([0.5, 7.5], [1, 1], 504)  # 15x the median and worse than guessing
    assert problem and "diverged" in problem and "median 0.5" in problem


def test_no_learning_is_caught_after_the_warm_up_only():
    guard = train_lib.DivergenceGuard(10.0, 100, warmup=300)
    flat = np.full(100, math.log(100) + 0.01)
    assert guard.check(flat, np.ones(100), 100) is None
    assert guard.check(flat, np.ones(100), 200) is None
    problem = guard.check(flat, np.ones(100), 300)
    assert problem and "not learning" in problem
    learning = train_lib.DivergenceGuard(10.0, 100, warmup=300)
    for step in (100, 200, 300, 400):
        assert learning.check(np.full(100, 3.0), np.ones(100), step) is None


@pytest.mark.parametrize(
    "loss,norm,needle",
    [(float("nan"), 1.0, "nan"), (2.0, float("inf"), "inf"), (float("inf"), 1.0, "inf")],
)
def test_non_finite_is_caught_even_with_the_guard_off(loss, norm, needle):
    for factor in (10.0, 0.0):
        problem = train_lib.DivergenceGuard(factor, 16).check([1.0, loss], [1.0, norm], 10)
        assert problem and needle in problem


def test_factor_zero_checks_only_non_finite():
    guard = train_lib.DivergenceGuard(0.0, 16, warmup=0)
    for step in range(100, 1001, 100):
        assert guard.check(np.full(100, 1e30), np.ones(100), step) is None


def test_check_loss_says_when_nothing_was_saved(tmp_path):
    ck = Checkpointer(str(tmp_path))
    guard = train_lib.DivergenceGuard(10.0, 16)
    host = [{"loss": np.float32(1e9), "grad_norm": np.float32(1.0)}]
    with pytest.raises(
        TrainingError,
        match="Nothing is saved: this came before the run's "
        r"first checkpoint \(train.checkpoint_every = 500\)",
    ):
        train_lib.check_loss(host, 50, guard, ck, 500)
    ok = [{"loss": np.float32(2.0), "grad_norm": np.float32(1.0)}]
    assert train_lib.check_loss(ok, 50, guard, ck, 500) == pytest.approx(2.0)
    ck.close()


# -------------------------------------------------------------------- end to end, both sides
@pytest.mark.slow
def test_a_run_that_blows_up_from_the_start_saves_nothing(tmp_path, synthetic_config):
    """The issue's case: learning_rate 1e6 used to write checkpoints and best.json."""
    config = synthetic_config(
        {
            "train.learning_rate": 1e6,
            "train.progress_bar": False,
            "model.hidden": 16,
            "model.embed_dim": 16,
            "train.log_every": 10,
            "train.checkpoint_every": 40,
            "train.eval_every": 40,
            "train.num_train_steps": 80,
        }
    )
    with pytest.raises(
        TrainingError, match="blew up at step 10; stopped without saving. Nothing is saved"
    ):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    assert Checkpointer(str(tmp_path / "w"), read_only=True).all_steps() == []
    assert not (tmp_path / "w" / "best.json").exists()


@pytest.mark.slow
def test_a_run_that_never_learns_stops_after_the_warm_up(tmp_path, synthetic_config):
    config = synthetic_config(
        {
            "train.learning_rate": 1e-9,
            "train.progress_bar": False,
            "model.hidden": 16,
            "model.embed_dim": 16,
            "train.log_every": 20,
            "train.checkpoint_every": 40,
            "train.eval_every": 40,
            "train.num_train_steps": 200,
            "train.divergence_warmup": 100,
        }
    )
    with pytest.raises(TrainingError, match="not learning at step 100"):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    # the checkpoints of steps 40 and 80 were saved before; they are kept
    assert Checkpointer(str(tmp_path / "w"), read_only=True).all_steps() == [40, 80]


def _small(config, corpus):
    """A shipped config on the test's toy corpus with small layers and batches and fixed
    padding, for 40 steps past the guard's warm-up and the learning-rate warm-up, validated
    once at the end. Its optimizer, schedule, loss and data options are the config's own."""
    d, m, t = config.data, config.model, config.train
    d.path = corpus.parallel if d.name == "parallel" else corpus.tsv
    d.sp_vocab_size = min(d.sp_vocab_size, 300)
    d.pad_to = d.pad_to or 48  # one batch shape to compile (the toy pairs fit in 48 pieces)
    m.hidden = m.embed_dim = 16
    m.ff_dim = min(m.ff_dim, 64)  # the Transformer's feed-forward: most of its time here
    m.attention_max_length = max(m.attention_max_length, 48)
    t.batch_size = min(t.batch_size, 32)  # noisier losses than the config's: a harder test
    d.bucket_pool = min(d.bucket_pool, 20)  # a pool of batches within the toy corpus's pairs
    t.divergence_warmup = 200  # stricter than the default 1000 steps, and faster
    steps = max(t.divergence_warmup, t.warmup_steps) + 40
    t.num_train_steps, t.log_every = steps, 20
    t.eval_every = t.checkpoint_every = steps
    t.progress_bar = False
    config.eval.bleu = False
    return config


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_trains_past_the_guard(name, tmp_path, toy_corpus, monkeypatch):
    """No false alarm: each config (its optimizer, schedule, loss and data options) on a small
    learnable corpus, through the guard's warm-up; the guard sees every per-step loss."""
    config = runpy.run_path(os.path.join(ROOT, "configs", name))["get_config"]()
    config = _small(config, toy_corpus)
    seen = []
    real = train_lib.DivergenceGuard.check

    def spy(self, losses, norms, step):
        seen.extend(np.asarray(losses).tolist())
        return real(self, losses, norms, step)

    monkeypatch.setattr(train_lib.DivergenceGuard, "check", spy)
    state, _ = train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    assert int(state.step) == config.train.num_train_steps
    assert len(seen) == config.train.num_train_steps
    # it learned (the guard's own rule, checked here beside it): the last losses are lower
    assert np.median(seen[-40:]) < np.median(seen[:5]), (seen[:5], seen[-40:])
