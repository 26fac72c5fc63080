"""bfloat16 end to end: with model.dtype='bfloat16' every matmul of the model (encoder, the
attention's energies and pooling, the decoder's layers and the vocabulary projection) runs on
bfloat16 operands, read from the lowered graph, while parameters, softmax, log-softmax, logits
and the loss stay float32; and a tiny model trains to float32's accuracy."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

from jaxattn import search
from jaxattn.config import default_model_config
from jaxattn.model.seq2seq import build_model
from jaxattn.training.loop import TrainState, train_step

V_SRC, V_TGT, B, S, T = 13, 11, 2, 6, 5
DOT = re.compile(r"stablehlo\.dot_general.*?:\s*\((.*?)\)\s*->\s*(tensor<[^>]*>)")
COMBOS = [
    ("bahdanau", "additive"),
    ("bahdanau", "local_p"),
    ("luong", "general"),
    ("luong", "dot"),
    ("legacy", "location"),
]


def model_and_inputs(decoder, attention, dtype, **overrides):
    c = default_model_config()
    c.hidden = c.embed_dim = 16
    c.decoder, c.attention, c.dtype, c.attention_max_length = decoder, attention, dtype, S
    c.update(overrides)
    model = build_model(c, V_SRC, V_TGT, bos_id=1)
    src, src_len = jnp.ones((B, S), jnp.int32), jnp.array([S, 3], jnp.int32)
    tgt = jnp.ones((B, T), jnp.int32)
    return model, model.init(jax.random.key(0), src, src_len, tgt), (src, src_len, tgt)


def dots(fn, *args):
    """[(operand types, result type)] of every dot_general in fn's lowered graph."""
    return DOT.findall(jax.jit(fn).lower(*args).as_text())


@pytest.mark.parametrize("decoder,attention", COMBOS)
def test_every_matmul_runs_in_bf16(decoder, attention):
    model, variables, (src, src_len, tgt) = model_and_inputs(decoder, attention, "bfloat16")
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))  # params float32
    forward = dots(lambda v: model.apply(v, src, src_len, tgt), variables)
    decode = dots(
        lambda v: search.decode(
            model, v, src, src_len, eos_id=2, max_len=T, method="beam", beam_size=2
        ),
        variables,
    )
    for found in (forward, decode):
        assert found and all("bf16" in ops and "f32" not in ops for ops, _ in found), found
        assert any(f"x{V_TGT}x" in out for _, out in found)  # the vocabulary projection
    logits, weights = model.apply(variables, src, src_len, tgt)
    assert logits.dtype == jnp.float32 and weights.dtype == jnp.float32
    f32_model, f32_vars, _ = model_and_inputs(decoder, attention, "float32")
    assert all(
        "bf16" not in ops
        for ops, _ in dots(lambda v: f32_model.apply(v, src, src_len, tgt), f32_vars)
    )


def test_bf16_loss_and_gradients_are_float32():
    model, variables, (src, src_len, tgt) = model_and_inputs("luong", "general", "bfloat16")
    tc = default_train_tc()
    import optax

    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.1))
    batch = {"src": src, "src_len": src_len, "tgt": tgt, "tgt_len": jnp.array([T, 2])}
    new, metrics = jax.jit(lambda s: train_step(s, batch, jax.random.key(0), model=model, tc=tc))(
        state
    )
    assert metrics["loss"].dtype == jnp.float32 and jnp.isfinite(metrics["loss"])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new.params))


def default_train_tc():
    from jaxattn.config import default_train_config

    return default_train_config()


@pytest.mark.slow
def test_bf16_trains_as_well_as_float32(synthetic_config, tmp_path):
    """The synthetic reverse task, 300 steps each: bf16 reaches float32's validation BLEU
    (within 5) and learns the task (> 85)."""
    from jaxattn.training.loop import train_and_evaluate

    bleu = {}
    for dtype in ("float32", "bfloat16"):
        config = synthetic_config(
            {
                "model.hidden": 32,
                "model.embed_dim": 32,
                "model.dtype": dtype,
                "data.synthetic_sizes": (2000, 100, 100),
                "train.num_train_steps": 300,
                "train.eval_every": 300,
                "train.checkpoint_every": 300,
                "train.progress_bar": False,
            }
        )
        _, metrics = train_and_evaluate(config, str(tmp_path / dtype))
        bleu[dtype] = metrics["bleu"]
    assert bleu["bfloat16"] > 85 and bleu["bfloat16"] >= bleu["float32"] - 5, bleu
