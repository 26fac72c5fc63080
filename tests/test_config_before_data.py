"""Config fields the API had (kernel attention's width, location attention's length with 0 =
auto) and the rules a config alone decides, which fail in `validate` before the corpus is
read (data.build is never called) or, needing the data, before anything is written."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shared import synthetic_config

from jaxattn.config import default_model_config, validate
from jaxattn.errors import ConfigError
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib

TINY = {
    "model.hidden": 16,
    "model.embed_dim": 16,
    "data.synthetic_sizes": (400, 40, 40),
    "train.num_train_steps": 30,
    "train.progress_bar": False,
}


def _config(**overrides):
    return synthetic_config({**TINY, **overrides})


# ------------------------------------------------------------------------ kernel attention
def kernel_model(**overrides):
    c = default_model_config()
    c.attention, c.hidden, c.embed_dim, c.dropout = "kernel", 8, 8, 0.0
    for key, value in overrides.items():
        setattr(c, key, value)
    return build_model(c, 11, 11, 1)


def test_kernel_width_fields_reach_the_attention(random_init):
    """model.kernel_width sets the width (a wider kernel gives flatter weights);
    learn_kernel_width makes it the parameter log_width, initialised to log(kernel_width),
    which then gives the fixed width's weights."""
    src = jnp.asarray(np.random.default_rng(0).integers(3, 11, size=(2, 6)), jnp.int32)
    lengths, tgt = jnp.asarray([6, 4]), src[:, :5]
    narrow, wide = kernel_model(kernel_width=0.5), kernel_model(kernel_width=2.0)
    v = random_init(narrow, src, lengths, tgt)
    _, w_narrow = narrow.apply(v, src, lengths, tgt)
    _, w_wide = wide.apply(v, src, lengths, tgt)
    entropy = lambda w: float(-(w * jnp.log(jnp.maximum(w, 1e-30))).sum(-1).mean())  # noqa: E731
    assert entropy(w_wide) > entropy(w_narrow) + 0.1
    learned = kernel_model(kernel_width=2.0, learn_kernel_width=True)
    init = learned.init(jax.random.PRNGKey(0), src, lengths, tgt)["params"]
    assert math.isclose(float(init["decoder"]["attention"]["log_width"]), math.log(2), rel_tol=1e-6)
    params = {**v["params"], "decoder": {**v["params"]["decoder"]}}
    params["decoder"]["attention"] = {"log_width": init["decoder"]["attention"]["log_width"]}
    _, w_learned = learned.apply({"params": params}, src, lengths, tgt)
    np.testing.assert_allclose(np.asarray(w_learned), np.asarray(w_wide), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("kernel_width", 0.0, "kernel_width=0.0 must be > 0"),
        ("kernel_width", -1.0, "kernel_width=-1.0 must be > 0"),
        ("attention_max_length", -1, "attention_max_length=-1 must be >= 0"),
    ],
)
def test_model_field_rules(field, value, says):
    with pytest.raises(ConfigError, match=says):
        validate(_config(**{f"model.{field}": value}))


# ------------------------------------------------------------- location attention: 0 = auto
LOCATION = {"model.decoder": "legacy", "model.attention": "location"}


def test_auto_attention_max_length_is_the_widest_source_and_is_saved(tmp_path):
    """attention_max_length=0: the widest training source (padded, EOS included) is set
    before the model is built, saved in config.json, and a resume keeps it."""
    auto = {**LOCATION, "model.attention_max_length": 0, "train.num_train_steps": 2}
    auto.update({"train.checkpoint_every": 2, "train.eval_every": 1000, "train.log_every": 1})
    config = _config(**auto)
    run = train_lib._prepare(config, str(tmp_path / "w"))
    widest = run["data"].largest_batch_shape(config.train.batch_size)[1]
    assert widest == 16  # 3..8 symbols + EOS, padded to a multiple of 8
    assert run["config"].model.attention_max_length == widest
    assert config.model.attention_max_length == 0  # the caller's config is not changed
    assert run["model"].decoder.attention.max_length == widest
    train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    with open(tmp_path / "w" / "config.json") as f:
        assert json.load(f)["model"]["attention_max_length"] == widest
    resumed = _config(**{**auto, "train.num_train_steps": 4})  # still 0: the saved value
    state, _ = train_lib.train_and_evaluate(resumed, str(tmp_path / "w"))
    assert int(state.step) == 4


def test_explicit_attention_max_length_is_checked_before_any_file(tmp_path):
    config = _config(**LOCATION, **{"model.attention_max_length": 9})
    with pytest.raises(Exception, match="16 source positions .* than the model's 9"):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w" / "config.json")


# ------------------------------------------------------------ fail before the corpus is read
MOVED = {
    "warmup_cosine": (
        {"train.lr_schedule": "warmup_cosine", "train.warmup_steps": 30},
        "warmup_steps=30 must be smaller than the run's 30 training steps",
    ),
    "share_without_joint_vocabulary": (
        {"model.share_embeddings": True},
        "share_embeddings=True needs one vocabulary",
    ),
    "empty_validation_split": (
        {"data.synthetic_sizes": (400, 0, 40)},
        "eval.split='validation' is empty: data.synthetic_sizes=\\(400, 0, 40\\)",
    ),
    "tutorial_split_fractions": (
        {"data.name": "tutorial", "data.split_fractions": (1, 0, 0)},
        "eval.split='validation' is empty: data.split_fractions",
    ),
    "tie_rnn_widths": (
        {"model.tie_embeddings": True, "model.embed_dim": 8},
        "tie_embeddings: the output layer reads 16 features",
    ),
}


@pytest.fixture
def no_data(monkeypatch):
    """data.build and build_model replaced by functions that record a call and fail."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the corpus was read")

    monkeypatch.setattr(train_lib.data_lib, "build", refuse)
    monkeypatch.setattr(train_lib, "build_model", refuse)
    return calls


@pytest.mark.parametrize("rule", list(MOVED))
def test_config_decidable_rules_fail_before_the_corpus_is_read(tmp_path, no_data, rule):
    overrides, says = MOVED[rule]
    with pytest.raises(ConfigError, match=says):
        train_lib.train_and_evaluate(_config(**overrides), str(tmp_path / "w"))
    assert no_data == [] and not (tmp_path / "w").exists()


def test_warmup_against_epochs_fails_once_the_data_is_read(tmp_path, monkeypatch):
    """With num_epochs the run's steps need the corpus: the rule fails right after it is
    read, with the numbers, before the model is built or any file written."""
    monkeypatch.setattr(train_lib, "build_model", lambda *a, **k: pytest.fail("built"))
    config = _config(
        **{"train.num_train_steps": -1, "train.num_epochs": 2, "train.batch_size": 40},
        **{"train.lr_schedule": "warmup_cosine", "train.warmup_steps": 20},
    )
    says = "warmup_steps=20 must be smaller than the run's 20 training steps \\(num_epochs 2 x 10"
    with pytest.raises(ConfigError, match=says):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w" / "config.json")
    assert not os.path.exists(tmp_path / "w" / "checkpoints")
