"""Parity of jaxattn.model.transformer's parts with torch.nn's: the same weights (random, every
parameter, LayerNorms included), copied from torch, give the same outputs (float32, atol 1e-5,
dropout 0): MultiHeadAttention = nn.MultiheadAttention (outputs and per-head weights),
EncoderLayer = nn.TransformerEncoderLayer, DecoderLayer = nn.TransformerDecoderLayer, post-LN
and pre-LN (norm_first), under key padding and causal masks."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxattn.model.transformer import DecoderLayer, EncoderLayer, MultiHeadAttention

torch = pytest.importorskip("torch")

ATOL = 1e-5
B, T, S, D, HEADS, FF = 3, 5, 6, 8, 2, 16
SRC_LEN = np.array([6, 3, 1])  # memory / source lengths (padding after)


@pytest.fixture(autouse=True)
def _full_precision():
    with jax.default_matmul_precision("highest"):  # no TF32 on GPUs
        yield


def close(actual, expected):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=ATOL)


def randomized(module, seed=0, std=0.3):
    """The module in eval mode with every parameter drawn from N(0, std^2)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module.eval()


def numpy(t):
    return t.detach().numpy().astype(np.float32)


def dense(linear):
    """nn.Linear (weight [out, in]) -> a Dense's params (kernel [in, out])."""
    return {"kernel": numpy(linear.weight).T, "bias": numpy(linear.bias)}


def norm(layer_norm):
    return {"scale": numpy(layer_norm.weight), "bias": numpy(layer_norm.bias)}


def attention(mha):
    """nn.MultiheadAttention -> MultiHeadAttention's params: in_proj rows are q, k, v."""
    w = numpy(mha.in_proj_weight).reshape(3, D, D)
    b = numpy(mha.in_proj_bias).reshape(3, D)
    params = {
        name: {"kernel": w[i].T, "bias": b[i]} for i, name in enumerate(("query", "key", "value"))
    }
    return {**params, "out": dense(mha.out_proj)}


def layer_params(torch_layer):
    """nn.TransformerEncoderLayer / DecoderLayer -> EncoderLayer / DecoderLayer params."""
    params = {
        "self_attn": attention(torch_layer.self_attn),
        "self_norm": norm(torch_layer.norm1),
        "ff_in": dense(torch_layer.linear1),
        "ff_out": dense(torch_layer.linear2),
    }
    if hasattr(torch_layer, "multihead_attn"):  # a decoder layer
        params["cross_attn"] = attention(torch_layer.multihead_attn)
        params["cross_norm"] = norm(torch_layer.norm2)
        params["ff_norm"] = norm(torch_layer.norm3)
    else:
        params["ff_norm"] = norm(torch_layer.norm2)
    return {"params": params}


def inputs(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def padding_mask(lengths, width):
    """[B, width] bool, True on real positions (jaxattn's); torch's key_padding_mask is ~it."""
    return np.arange(width)[None] < lengths[:, None]


CAUSAL = np.tril(np.ones((T, T), bool))  # True where a query may attend (torch: ~it)


@pytest.mark.parametrize("masking", ["padding", "causal", "both"])
def test_multi_head_attention(masking):
    mha = randomized(torch.nn.MultiheadAttention(D, HEADS, batch_first=True))
    q = inputs(0, B, T, D)
    kv_len = T if masking != "padding" else S  # causal: self-attention positions
    k, v = inputs(1, B, kv_len, D), inputs(2, B, kv_len, D)
    lengths = np.array([kv_len, 3, 1])
    key_mask = padding_mask(lengths, kv_len) if masking != "causal" else None
    attn_mask = CAUSAL if masking != "padding" else None
    with torch.no_grad():
        want, want_w = mha(
            torch.from_numpy(q),
            torch.from_numpy(k),
            torch.from_numpy(v),
            key_padding_mask=None if key_mask is None else torch.from_numpy(~key_mask),
            attn_mask=None if attn_mask is None else torch.from_numpy(~attn_mask),
            need_weights=True,
            average_attn_weights=False,
        )
    if masking == "padding":
        mask = key_mask  # [B, S]
    elif masking == "causal":
        mask = np.broadcast_to(CAUSAL, (B, T, T))
    else:
        mask = CAUSAL[None] & key_mask[:, None, :]  # [B, T, T]
    ours, weights = jax.jit(
        lambda p, q, k, v, m: MultiHeadAttention(HEADS, D).apply(p, q, k, v, mask=m)
    )({"params": attention(mha)}, q, k, v, mask)
    assert weights.shape == want_w.shape == (B, HEADS, T, kv_len)
    close(weights, want_w)
    close(ours, want)
    seen = mask[:, None, None] if mask.ndim == 2 else mask[:, None]  # [B, 1, T|1, S]
    assert not np.any(np.asarray(weights)[~np.broadcast_to(seen, weights.shape)])


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_encoder_layer(norm_first):
    layer = randomized(
        torch.nn.TransformerEncoderLayer(
            D, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first
        ),
        seed=1,
    )
    x, mask = inputs(3, B, S, D), padding_mask(SRC_LEN, S)
    with torch.no_grad():
        want = layer(torch.from_numpy(x), src_key_padding_mask=torch.from_numpy(~mask))
    ours = jax.jit(
        lambda p, x, m: EncoderLayer(D, HEADS, FF, dropout=0.0, norm_first=norm_first).apply(
            p, x, m
        )
    )(layer_params(layer), x, mask)
    close(np.asarray(ours)[mask], want.detach().numpy()[mask])  # real positions only


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_decoder_layer(norm_first):
    layer = randomized(
        torch.nn.TransformerDecoderLayer(
            D, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first
        ),
        seed=2,
    )
    x, memory = inputs(4, B, T, D), inputs(5, B, S, D)
    mem_mask, causal = padding_mask(SRC_LEN, S), torch.from_numpy(~CAUSAL)
    with torch.no_grad():
        want = layer(
            torch.from_numpy(x),
            torch.from_numpy(memory),
            tgt_mask=causal,
            memory_key_padding_mask=torch.from_numpy(~mem_mask),
        )
        # the cross-attention's per-head weights: torch's block on its query
        xt, mem = torch.from_numpy(x), torch.from_numpy(memory)
        if norm_first:  # x1 = x + SA(LN1(x)); query LN2(x1)
            h = layer.norm1(xt)
            query = layer.norm2(xt + layer.self_attn(h, h, h, attn_mask=causal)[0])
        else:  # query x1 = LN1(x + SA(x))
            query = layer.norm1(xt + layer.self_attn(xt, xt, xt, attn_mask=causal)[0])
        _, want_cross = layer.multihead_attn(
            query,
            mem,
            mem,
            key_padding_mask=torch.from_numpy(~mem_mask),
            average_attn_weights=False,
        )
    module = DecoderLayer(D, HEADS, FF, dropout=0.0, norm_first=norm_first)

    def run(layer, x, memory, causal, mem_mask):  # as TransformerDecoder.__call__ calls it
        return layer(x, layer.self_kv(x), causal, layer.cross_kv(memory), mem_mask)

    ours, cross = jax.jit(lambda p, *a: module.apply(p, *a, method=run))(
        layer_params(layer), x, memory, CAUSAL[None], mem_mask
    )
    close(ours, want)
    assert cross.shape == want_cross.shape == (B, HEADS, T, S)
    close(cross, want_cross)
    assert not np.any(np.asarray(cross)[~np.broadcast_to(mem_mask[:, None, None], cross.shape)])
    close(np.asarray(cross).sum(-1), np.ones((B, HEADS, T)))
