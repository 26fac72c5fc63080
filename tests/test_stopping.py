"""train.best_metric, early stopping, the plateau schedule and gradient accumulation in a run:
the validation history (jaxattn.training.stopping) by hand, the config rules, the refusal of a
resume that changes best_metric, and short synthetic runs with scripted validation scores
(early stop, its rerun, a raised patience; plateau + accumulate resumed bit-exact)."""

from __future__ import annotations

import json
import math

import ml_collections
import numpy as np
import pytest
from shared import synthetic_config

from jaxattn import config as config_lib
from jaxattn.errors import CheckpointError, ConfigError
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.rundir.run import check_workdir
from jaxattn.training import loop as train_lib
from jaxattn.training.optim import plateau_rate
from jaxattn.training.stopping import ValidationHistory

TINY = {
    "model.hidden": 16,
    "model.embed_dim": 16,
    "data.synthetic_sizes": (400, 40, 40),
    "train.log_every": 5,
    "train.checkpoint_every": 10,
    "train.eval_every": 5,
    "train.num_train_steps": 40,
    "train.progress_bar": False,
}


def _config(**overrides):
    return synthetic_config({**TINY, **overrides})


# ---------------------------------------------------------------------- the history by hand
def test_since_best_counts_validations_without_improvement():
    h = ValidationHistory("bleu", min_delta=0.5)
    counts = []
    for step, bleu in enumerate([10.0, 10.4, 11.0, 9.0, 11.4, 12.0, 12.0], start=1):
        h.add(step * 5, {"bleu": bleu, "loss": 1.0})
        counts.append(h.since_best())
    # 10.4 and 11.4 gain no more than 0.5 over the best (10, then 11); 11 and 12 do
    assert counts == [0, 1, 0, 1, 2, 0, 1]
    assert h.stop_reason(2) is None and h.stop_reason(0) is None
    h.add(40, {"bleu": 3.0})
    reason = h.stop_reason(2)
    assert "2 validations in a row without a better validation bleu than 12 (step 30" in reason
    lower = ValidationHistory("loss")  # lower is better; records without it are skipped
    for step, loss in [(5, 2.0), (10, 1.0), (15, None), (20, 1.5), (25, 0.9)]:
        lower.add(step, {} if loss is None else {"loss": loss})
    assert lower.since_best() == 0 and lower.last() == {"loss": 0.9}
    lower.add(30, {"loss": 0.95})
    assert lower.since_best() == 1


class _FakeCheckpointer:
    def __init__(self, metas, metrics):
        self._metas, self._metrics = metas, metrics

    def meta(self, step):
        return self._metas.get(step, {})

    def metrics(self, step):
        return self._metrics.get(step, {})

    def all_steps(self):
        return sorted(self._metrics)


def test_history_comes_from_the_resumed_checkpoints_meta():
    """The history saved with the resumed step, whichever checkpoints are kept; checkpoints
    of older versions (no history in their meta) fall back to the kept steps' metrics."""
    tc = _config(**{"train.early_stopping_min_delta": 0.25}).train
    saved = [{"step": 5, "bleu": 1.0}, {"step": 10, "bleu": 0.5}, {"step": 15, "bleu": 0.7}]
    ckpt = _FakeCheckpointer({15: {"validations": saved}}, {15: {"bleu": 0.7}})
    h = ValidationHistory.restored(tc, ckpt, 15)
    assert h.records == saved and h.since_best() == 2 and h.min_delta == 0.25
    old = _FakeCheckpointer({}, {10: {"bleu": 2.0}, 15: {"bleu": 1.0}, 20: {"bleu": 3.0}})
    assert [r["step"] for r in ValidationHistory.restored(tc, old, 15).records] == [10, 15]
    assert ValidationHistory.restored(tc, old, None).records == []


# ------------------------------------------------------------------------------- the rules
@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train.accumulate": 0}, "accumulate=0 must be >= 1"),
        ({"train.accumulate": 3}, "batch_size=32 must divide into 3 micro-batches"),
        ({"train.best_metric": "ter"}, "best_metric='ter' is not one of"),
        ({"train.plateau_factor": 1.0}, "plateau_factor=1.0 must be < 1"),
        ({"train.plateau_patience": 0}, "plateau_patience=0 must be >= 1"),
        ({"train.min_learning_rate": -1.0}, "min_learning_rate=-1.0 must be >= 0"),
        ({"train.early_stopping_patience": -1}, "early_stopping_patience=-1 must be >= 0"),
        ({"train.early_stopping_min_delta": -0.1}, "early_stopping_min_delta=-0.1 must be"),
        (
            {"train.early_stopping_patience": 2, "eval.bleu": False},
            "best_metric='bleu' needs eval.bleu=True \\(train.early_stopping_patience",
        ),
        (
            {"train.lr_schedule": "plateau", "train.best_metric": "chrf", "eval.bleu": False},
            "best_metric='chrf' needs eval.bleu=True \\(train.lr_schedule",
        ),
        (
            {"train.lr_schedule": "plateau", "train.eval_every": 50},
            "eval_every=50 must be <= num_train_steps \\(40\\) for train.lr_schedule",
        ),
        (
            {"train.lr_schedule": "plateau", "train.min_learning_rate": 1.0},
            "min_learning_rate=1.0 must be <= learning_rate",
        ),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train_lib.train_and_evaluate(_config(**overrides), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_validation_driven_options_need_no_bleu_with_the_loss():
    """best_metric='loss' needs no BLEU; without early stopping or plateau, eval.bleu=False
    with the default best_metric stays valid (today's runs)."""
    config_lib.validate(
        _config(
            **{
                "train.best_metric": "loss",
                "train.early_stopping_patience": 2,
                "train.lr_schedule": "plateau",
                "eval.bleu": False,
            }
        )
    )
    config_lib.validate(_config(**{"eval.bleu": False}))
    six = _config(**{"train.batch_size": 6, "train.accumulate": 2})
    config_lib.validate(six, device_count=3)  # 2 micro-batches of 3 rows, 1 a device
    with pytest.raises(ConfigError, match="must divide into 2 micro-batches .* x 2 devices"):
        config_lib.validate(six, device_count=2)  # 3 rows a micro-batch: not over 2 devices


def test_a_resume_may_not_change_best_metric(tmp_path):
    """The kept best checkpoint and the counts of validations without improvement were
    ranked by the saved best_metric: another one is refused, naming the field; a config of
    an older version (no best_metric saved) ranks by BLEU, which the default resumes."""
    saved = _config()
    with pytest.raises(CheckpointError, match="train.best_metric='bleu'.*not 'loss'"):
        check_workdir(str(tmp_path), _config(**{"train.best_metric": "loss"}), saved)
    check_workdir(str(tmp_path), _config(**{"train.early_stopping_patience": 3}), saved)
    old = config_lib.to_json(saved)
    del old["train"]["best_metric"]
    check_workdir(str(tmp_path), _config(), ml_collections.ConfigDict(old))


# ----------------------------------------------------------------------- runs (scripted)
def _scripted(monkeypatch, bleus: dict, start: int = 0):
    """validation_scores gives BLEU `bleus[step]` (and a loss falling with it) at the
    validations of a run that starts at step `start`; returns the list of steps scored."""
    calls = []

    def fake(model, params, data, split, *, config, p_eval_step, replicated, with_bleu=True):
        step = start + (len(calls) + 1) * config.train.eval_every
        calls.append(step)
        bleu = bleus[step]
        return {"loss": 5.0 - bleu / 10, "perplexity": math.exp(5.0 - bleu / 10), "bleu": bleu}

    monkeypatch.setattr(train_lib, "validation_scores", fake)
    return calls


def _steps_logged(workdir, split):
    with open(workdir / "metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


@pytest.mark.slow
def test_early_stopping_stops_saves_and_stays_stopped(tmp_path, monkeypatch, caplog):
    """BLEU peaks at step 10: with patience 3 the run stops after the validation of step 25
    with that checkpoint saved and best = step 10; a rerun says so and trains nothing; a
    raised patience goes on (from the history in the checkpoint's meta)."""
    bleus = {5: 1.0, 10: 4.0, 15: 3.0, 20: 3.9, 25: 2.0, 30: 3.5, 35: 5.0, 40: 1.0}
    workdir = tmp_path / "w"
    calls = _scripted(monkeypatch, bleus)
    with caplog.at_level("INFO"):
        state, last = train_lib.train_and_evaluate(
            _config(**{"train.early_stopping_patience": 3}), str(workdir)
        )
    assert calls == [5, 10, 15, 20, 25] and int(state.step) == 25 and last["bleu"] == 2.0
    assert "Stopped early at step 25" in caplog.text
    assert "3 validations in a row without a better validation bleu than 4" in caplog.text
    ckpt = Checkpointer(str(workdir), read_only=True)
    assert ckpt.all_steps()[-1] == 25 and ckpt.best_step() == 10
    ckpt.close()
    caplog.clear()
    with caplog.at_level("INFO"):
        state, last = train_lib.train_and_evaluate(
            _config(**{"train.early_stopping_patience": 3}), str(workdir)
        )
    assert int(state.step) == 25 and calls == [5, 10, 15, 20, 25] and last["bleu"] == 2.0
    assert "The run stopped early at step 25" in caplog.text
    calls = _scripted(monkeypatch, bleus, start=25)
    state, _ = train_lib.train_and_evaluate(
        _config(**{"train.early_stopping_patience": 5}), str(workdir)
    )
    assert calls == [30, 35, 40] and int(state.step) == 40  # the new best at 35 resets the count
    assert json.loads((workdir / "best.json").read_text())["step"] == 35


@pytest.mark.slow
def test_plateau_and_accumulate_resume_bit_exact(tmp_path, monkeypatch):
    """accumulate=4 with lr_schedule='plateau' (patience 2): BLEU stalls from step 10, so the
    rate halves after the validations of steps 20, 30 and 40; 20 steps + a resume to 40 give
    the parameters and the reduced rate of 40 uninterrupted steps, and the log shows the
    rate each update used."""
    bleus = {5: 1.0, 10: 2.0, 15: 2.0, 20: 1.5, 25: 1.0, 30: 1.0, 35: 1.0, 40: 1.0}
    run = {
        "train.accumulate": 4,
        "train.lr_schedule": "plateau",
        "train.plateau_patience": 2,
        "train.plateau_factor": 0.5,
    }
    lr = _config().train.learning_rate
    _scripted(monkeypatch, bleus)
    ref, _ = train_lib.train_and_evaluate(_config(**run), str(tmp_path / "ref"))
    assert plateau_rate(ref.opt_state) == pytest.approx(lr / 8)
    logged = {r["step"]: r["learning_rate"] for r in _steps_logged(tmp_path / "ref", "train")}
    want = {5: lr, 20: lr, 25: lr / 2, 30: lr / 2, 35: lr / 4, 40: lr / 4}
    assert {s: logged[s] for s in want} == pytest.approx(want)

    _scripted(monkeypatch, bleus)
    train_lib.train_and_evaluate(
        _config(**{**run, "train.num_train_steps": 20}), str(tmp_path / "w")
    )
    _scripted(monkeypatch, bleus, start=20)
    resumed, _ = train_lib.train_and_evaluate(_config(**run), str(tmp_path / "w"))
    assert plateau_rate(resumed.opt_state) == pytest.approx(lr / 8)
    for a, b in zip(_leaves(resumed), _leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def _leaves(state):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves((state.params, state.opt_state))]
