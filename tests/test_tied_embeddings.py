"""Tied embeddings (model.tie_embeddings: the decoder's output layer is its embedding table;
model.share_embeddings: the encoder's table is the decoder's; both: all three are one): a tied
model computes what an untied one computes with its tables set equal, for RNN and Transformer
models; the shared table is one parameter that gets the gradients of every side; the config
rules that refuse what cannot be tied."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn.config import default_config, default_model_config, validate
from jaxattn.errors import ConfigError
from jaxattn.model.seq2seq import build_model

V, BOS = 13, 1  # one vocabulary for both sides (what share_embeddings needs)
B, S, T = 3, 6, 5
LENGTHS = np.array([6, 3, 1], np.int32)
MODES = {"tie": (True, False), "share": (False, True), "all": (True, True)}
# Where an untied model keeps each side's table, under params[side].
TABLE = {"rnn": ("embed", "embedding"), "transformer": ("embed", "embed", "embedding")}


@pytest.fixture(autouse=True)
def _full_precision():
    with jax.default_matmul_precision("highest"):  # no TF32 on GPUs
        yield


def small_config(arch: str, decoder: str | None = None, **overrides):
    c = default_model_config()
    c.encoder = arch
    c.decoder = decoder or ("bahdanau" if arch == "rnn" else "transformer")
    c.hidden = c.embed_dim = 8
    c.heads, c.ff_dim, c.dropout = 2, 16, 0.0
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def batch(seed=0):
    rng = np.random.default_rng(seed)
    src = jnp.asarray(rng.integers(3, V, size=(B, S)), jnp.int32)
    tgt = jnp.asarray(rng.integers(3, V, size=(B, T)), jnp.int32)
    return src, jnp.asarray(LENGTHS), tgt


def count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def put(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def untie(params, arch: str, tie: bool, share: bool):
    """The untied model's parameters with the tied model's values: the one table copied into
    every place it stands for (each side's embedding; the output kernel, transposed, with a
    zero bias)."""
    p = jax.tree.map(lambda x: x, params)  # a copy of the nested dicts
    path = TABLE[arch]
    if share:
        table = p["encoder"].pop("embedding")["embedding"]
        put(p["encoder"], path, table)
        put(p["decoder"], path, table)
    if tie:
        table = get(p["decoder"], path)
        p["decoder"]["out"] = {"kernel": table.T, "bias": jnp.zeros((V,), table.dtype)}
    return p


CASES = [
    ("rnn", "bahdanau"),
    ("rnn", "luong"),
    ("rnn", "plain"),
    ("transformer", "transformer"),
]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("arch,decoder", CASES, ids=[f"{a}-{d}" for a, d in CASES])
def test_tied_model_is_the_untied_one_with_equal_tables(random_init, arch, decoder, mode):
    """Logits (teacher forced and free running) of a tied model = those of the untied model
    whose tables hold the tied table; the tied one has fewer parameters by the tables."""
    tie, share = MODES[mode]
    tied = build_model(
        small_config(arch, decoder, tie_embeddings=tie, share_embeddings=share), V, V, BOS
    )
    untied = build_model(small_config(arch, decoder), V, V, BOS)
    src, lengths, tgt = batch()
    params = random_init(tied, src, lengths, tgt)["params"]
    if share:  # one leaf: the encoder's; the decoder has no table of its own
        assert params["encoder"]["embedding"]["embedding"].shape == (V, 8)
        assert "embed" not in params["decoder"] or "embed" not in params["decoder"]["embed"]
    assert ("out" in params["decoder"]) != tie
    reference = untie(params, arch, tie, share)
    expected = jax.eval_shape(lambda: untied.init(jax.random.PRNGKey(0), src, lengths, tgt))
    assert jax.tree.structure(reference) == jax.tree.structure(expected["params"])
    assert jax.tree.map(jnp.shape, reference) == jax.tree.map(jnp.shape, expected["params"])
    for kwargs in ({"targets": tgt}, {"max_len": T}):
        got, got_w = tied.apply({"params": params}, src, lengths, **kwargs)
        want, want_w = untied.apply({"params": reference}, src, lengths, **kwargs)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got_w), np.asarray(want_w), rtol=0, atol=1e-6)
    table = V * 8
    saved = (table + V if tie else 0) + (table if share else 0)  # out kernel + bias; a table
    assert count(reference) - count(params) == saved


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_the_shared_table_gets_every_sides_gradient(random_init, arch):
    """All three tied: the one table's gradient is the sum of the untied model's gradients of
    its encoder table, decoder table and output kernel (transposed): one parameter, trained
    from both sides."""
    c = small_config(arch, tie_embeddings=True, share_embeddings=True)
    tied, untied = build_model(c, V, V, BOS), build_model(small_config(arch), V, V, BOS)
    src, lengths, tgt = batch(1)
    params = random_init(tied, src, lengths, tgt, seed=1)["params"]

    def loss(model):
        def f(p):
            logits, _ = model.apply({"params": p}, src, lengths, tgt)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tgt[..., None], -1))

        return f

    tables = [k for k, x in jax.tree_util.tree_leaves_with_path(params) if x.shape == (V, 8)]
    assert len(tables) == 1, tables
    g_tied = jax.grad(loss(tied))(params)["encoder"]["embedding"]["embedding"]
    g = jax.grad(loss(untied))(untie(params, arch, True, True))
    path = TABLE[arch]
    parts = [get(g["encoder"], path), get(g["decoder"], path), g["decoder"]["out"]["kernel"].T]
    assert all(float(jnp.abs(x).max()) > 0 for x in parts)  # every side contributes
    np.testing.assert_allclose(np.asarray(g_tied), np.asarray(sum(parts)), rtol=0, atol=1e-6)


def joint_config(**model):
    config = default_config()
    config.data.tokenizer, config.data.sp_joint = "sentencepiece", True
    for key, value in model.items():
        config.model[key] = value
    return config


@pytest.mark.parametrize(
    "data, model, says",
    [
        ({"sp_joint": False}, {"share_embeddings": True}, "share_embeddings=True needs one voc"),
        ({"tokenizer": "word"}, {"share_embeddings": True}, "data.sp_joint=True"),
        ({}, {"tie_embeddings": True, "embed_dim": 64}, "reads 128 features \\(model.hidden\\)"),
        (
            {},
            {"share_embeddings": True, "encoder": "transformer", "embed_dim": 64},
            "the transformer encoder's is 128 and the bahdanau decoder's 64",
        ),
    ],
)
def test_config_rules(data, model, says):
    validate(joint_config(tie_embeddings=True, share_embeddings=True))  # the base is valid
    config = joint_config(**model)
    for key, value in data.items():
        config.data[key] = value
    with pytest.raises(ConfigError, match=says):
        validate(config)


def test_sharing_needs_one_vocabulary_size():
    c = small_config("rnn", share_embeddings=True)
    with pytest.raises(ValueError, match="source has 13 ids and the target 12"):
        build_model(c, V, V - 1, BOS)
