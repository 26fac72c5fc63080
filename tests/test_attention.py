"""Tests for jaxattn.model.attention: every attention type against a direct NumPy computation, plus
masking, padding invariance, gradients, transforms (jit, vmap, nn.scan) and bf16."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxattn.model.attention import ATTENTION_TYPES, make_attention
from jaxattn.model.attention_core import (
    AdditiveAttention,
    DotAttention,
    GeneralAttention,
    LocationAttention,
    ScaledDotAttention,
    masked_softmax,
)
from jaxattn.model.local_attention import LocalAttention
from jaxattn.model.pooling import AttentionPooling, KernelAttention

B, S, DV = 3, 6, 5
LENGTHS = np.array([6, 4, 2])  # valid source positions per row
STEPS = np.array([3, 1, 0], np.int32)  # local-m decoder steps, inside each row's source


# ---------------------------------------------------------------------------------------------
# NumPy references (float64), reading the module's own parameters
# ---------------------------------------------------------------------------------------------


def np_softmax(scores, mask):
    scores = np.where(mask, scores, -np.inf)
    top = np.max(scores, axis=-1, keepdims=True)
    e = np.where(mask, np.exp(scores - np.where(np.isfinite(top), top, 0)), 0)
    total = e.sum(-1, keepdims=True)
    return np.where(total > 0, e / np.where(total > 0, total, 1), 0)


def dense(p, x):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p.get("bias", 0.0), np.float64)


def ref_additive(p, q, k):
    return dense(
        p["energy"], np.tanh(dense(p["query_proj"], q)[:, None] + dense(p["key_proj"], k))
    )[..., 0]


def ref_general(p, q, k):
    return np.einsum("bd,bsd->bs", q, dense(p["key_proj"], k))


def ref_dot(p, q, k):
    return np.einsum("bd,bsd->bs", q, k)


def ref_scaled_dot(p, q, k):
    return ref_dot(p, q, k) / np.sqrt(q.shape[-1])


def ref_location(p, q, k):
    return dense(p["attn"], q)[:, : k.shape[1]]


def ref_pooling(p, q, k):
    h = np.tanh(dense(p["proj"], k)) if "proj" in p else k
    return dense(p["energy"], h)[..., 0]


def softmax_ref(score_fn):
    def ref(p, q, k, v, mask, step):
        w = np_softmax(score_fn(p, q, k), mask)
        return np.einsum("bs,bsd->bd", w, v), w

    return ref


def local_ref(score_fn, window, predictive):
    def ref(p, q, k, v, mask, step):
        if predictive:
            gate = dense(p["position_energy"], np.tanh(dense(p["position_proj"], q)))[:, 0]
            p_t = mask.sum(-1) / (1 + np.exp(-gate))
        else:
            p_t = np.broadcast_to(step, (q.shape[0],)).astype(np.float64)
        s = np.arange(k.shape[1])[None] - p_t[:, None]
        w = np_softmax(score_fn(p.get("align", {}), q, k), mask & (np.abs(s) <= window))
        w = w * np.exp(-(s**2) / (2 * (window / 2) ** 2))
        return np.einsum("bs,bsd->bd", w, v), w

    return ref


def kernel_ref(kernel, width):
    def ref(p, q, k, v, mask, step):
        w_ = np.exp(p["log_width"]) if "log_width" in p else width
        d = np.sqrt(((q[:, None] - k) ** 2).sum(-1)) / w_
        unnorm = {
            "gaussian": np.exp(-(d**2) / 2),
            "boxcar": (d <= 1).astype(np.float64),
            "epanechnikov": np.maximum(0, 1 - d),
        }[kernel] * mask
        total = unnorm.sum(-1, keepdims=True)
        w = np.where(total > 0, unnorm / np.where(total > 0, total, 1), 0)
        return np.einsum("bs,bsd->bd", w, v), w

    return ref


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], nn.Module]
    ref: Callable
    dq: int = 4
    dk: int = 4
    partial_sum: bool = False  # local attention: Gaussian-scaled weights sum to <= 1


CASES = [
    Case("additive", lambda: AdditiveAttention(7), softmax_ref(ref_additive)),
    Case(
        "additive_nobias", lambda: AdditiveAttention(7, use_bias=False), softmax_ref(ref_additive)
    ),
    Case("dot", DotAttention, softmax_ref(ref_dot)),
    Case("scaled_dot", ScaledDotAttention, softmax_ref(ref_scaled_dot)),
    Case("general", lambda: GeneralAttention(), softmax_ref(ref_general)),
    Case(
        "general_bias_3to4",
        lambda: GeneralAttention(query_dim=3, use_bias=True),
        softmax_ref(ref_general),
        dq=3,
    ),
    Case("location", lambda: LocationAttention(12), softmax_ref(ref_location), dq=8),
    Case(
        "local_m",
        lambda: LocalAttention(window=2),
        local_ref(ref_general, 2, False),
        partial_sum=True,
    ),
    Case(
        "local_p",
        lambda: LocalAttention(window=2, predictive=True, hidden=5),
        local_ref(ref_general, 2, True),
        partial_sum=True,
    ),
    Case(
        "local_p_additive",
        lambda: LocalAttention(window=1, predictive=True, score="additive", hidden=5),
        local_ref(ref_additive, 1, True),
        partial_sum=True,
    ),
    Case(
        "local_m_dot",
        lambda: LocalAttention(window=3, score="dot"),
        local_ref(ref_dot, 3, False),
        partial_sum=True,
    ),
    Case(  # use_bias reaches the base score only; W_p and v_p stay bias-free
        "local_p_bias",
        lambda: LocalAttention(window=2, predictive=True, hidden=5, use_bias=True),
        local_ref(ref_general, 2, True),
        partial_sum=True,
    ),
    *(
        Case(
            case_id,
            lambda kernel=kernel, width=width, learn=learn: KernelAttention(
                kernel, width=width, learnable_width=learn
            ),
            kernel_ref(kernel, width),
            dq=dim,
            dk=dim,
        )
        for case_id, kernel, width, learn, dim in [
            ("kernel_gaussian", "gaussian", 0.7, True, 1),
            ("kernel_boxcar", "boxcar", 1.5, False, 1),
            ("kernel_epanechnikov_2d", "epanechnikov", 2.0, False, 2),
        ]
    ),
    Case("pooling", lambda: AttentionPooling(), softmax_ref(ref_pooling)),
    Case("pooling_hidden", lambda: AttentionPooling(hidden=6), softmax_ref(ref_pooling)),
]
CASE_IDS = [c.id for c in CASES]


def lengths_mask(lengths, src_len=S):
    return np.arange(src_len)[None] < np.asarray(lengths)[:, None]  # [batch, src_len]


def make_inputs(case: Case, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, case.dq)).astype(np.float32)
    k = rng.normal(size=(B, S, case.dk)).astype(np.float32)
    v = rng.normal(size=(B, S, DV)).astype(np.float32)
    if case.id.startswith("kernel"):
        k[:, 0] = q + 0.1  # a key in range of every kernel, so no row is all zeros
        k[:, 1] = q  # q == k exactly: the Epanechnikov gradient must stay finite there
    return q, k, v, lengths_mask(LENGTHS)


def init(case: Case, q, k, mask):
    module = case.make()
    variables = module.init(jax.random.key(0), q, k, mask=mask, step=STEPS)
    return module, variables


def np_params(variables):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), dict(variables.get("params", {})))


# ---------------------------------------------------------------------------------------------
# masked_softmax
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_masked_softmax(dtype):
    scores = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)) * 4, dtype)
    mask = jnp.asarray(lengths_mask([5, 2, 0], 5))
    w = masked_softmax(scores, mask)
    assert w.dtype == jnp.float32  # computed in float32 whatever the scores' dtype
    np.testing.assert_allclose(
        np.asarray(w, np.float32),
        np_softmax(np.asarray(scores, np.float64), np.asarray(mask)),
        atol=1e-6,
    )
    assert np.all(np.asarray(w)[~np.asarray(mask)] == 0)  # exactly zero on padding
    assert np.all(np.asarray(w)[2] == 0)  # fully masked row: zeros, not NaN
    np.testing.assert_allclose(
        masked_softmax(scores, None), jax.nn.softmax(scores.astype(jnp.float32))
    )

    g = jax.grad(lambda s: jnp.sum(masked_softmax(s, mask).astype(jnp.float32) * jnp.arange(5)))
    grads = np.asarray(g(scores), np.float32)
    assert np.all(np.isfinite(grads))
    assert np.all(grads[~np.asarray(mask)] == 0)


def test_masked_softmax_huge_scores():
    scores = jnp.array([[1e30, -1e30, 3.0e38], [jnp.inf, 0.0, 0.0]])
    mask = jnp.array([[True, True, False], [False, True, True]])
    w = masked_softmax(scores, mask)
    np.testing.assert_allclose(w, [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])


# ---------------------------------------------------------------------------------------------
# Every attention type
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_mask", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_numpy(case, use_mask):
    q, k, v, mask = make_inputs(case)
    module, variables = init(case, q, k, mask)
    m = mask if use_mask else None
    ctx, w = module.apply(variables, q, k, v, m, step=STEPS)
    assert ctx.shape == (B, DV) and w.shape == (B, S)
    ref_ctx, ref_w = case.ref(
        np_params(variables),
        *(x.astype(np.float64) for x in (q, k, v)),
        mask=(mask if use_mask else np.ones_like(mask)),
        step=STEPS,
    )
    np.testing.assert_allclose(w, ref_w, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ctx, ref_ctx, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mask_weights(case):
    q, k, v, mask = make_inputs(case)
    module, variables = init(case, q, k, mask)
    _, w = module.apply(variables, q, k, v, mask, step=STEPS)
    w = np.asarray(w)
    assert np.all(w[~mask] == 0)  # exactly zero on padding
    assert np.all(w >= 0)
    totals = w.sum(-1)
    if case.partial_sum:  # Gaussian-scaled (Luong local): 0 < sum <= 1
        assert np.all(totals > 0) and np.all(totals <= 1 + 1e-6)
    else:
        np.testing.assert_allclose(totals, 1.0, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_padding_invariance(case):
    """Appending padded positions holding garbage changes nothing on the real positions."""
    q, k, v, mask = make_inputs(case)
    module, variables = init(case, q, k, mask)
    ctx, w = module.apply(variables, q, k, v, mask, step=STEPS)
    rng = np.random.default_rng(1)
    pad = 3
    k2 = np.concatenate([k, 50 + 30 * rng.normal(size=(B, pad, case.dk))], 1).astype(np.float32)
    v2 = np.concatenate([v, 1e3 * rng.normal(size=(B, pad, DV))], 1).astype(np.float32)
    mask2 = np.concatenate([mask, np.zeros((B, pad), bool)], 1)
    ctx2, w2 = module.apply(variables, q, k2, v2, mask2, step=STEPS)
    np.testing.assert_allclose(ctx2, ctx, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(w2[:, :S], w, atol=1e-7)
    assert np.all(np.asarray(w2[:, S:]) == 0)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradients_finite_with_fully_masked_row(case):
    q, k, v, mask = make_inputs(case)
    mask = mask.copy()
    mask[2] = False  # a fully masked row
    module, variables = init(case, q, k, mask)

    def loss(variables, q, k, v, mask):
        ctx, w = module.apply(variables, q, k, v, mask, step=STEPS)
        return jnp.sum(ctx**2) + jnp.sum(w * jnp.arange(S))

    ctx, w = module.apply(variables, q, k, v, mask, step=STEPS)
    assert np.all(np.asarray(ctx[2]) == 0) and np.all(np.asarray(w[2]) == 0)
    for m in (mask, None):
        grads = jax.grad(loss, argnums=(0, 1, 2, 3))(variables, q, k, v, m)
        for leaf in jax.tree.leaves(grads):
            assert np.all(np.isfinite(leaf))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cache_jit_vmap(case):
    q, k, v, mask = make_inputs(case)
    module, variables = init(case, q, k, mask)
    ctx, w = module.apply(variables, q, k, v, mask, step=STEPS)

    # precompute + cache gives the same numbers, under jit
    @jax.jit
    def cached(variables, q, k, v, mask):
        cache = module.apply(variables, k, method="precompute")
        return module.apply(variables, q, k, v, mask, step=STEPS, cache=cache)

    ctx_c, w_c = cached(variables, q, k, v, mask)
    np.testing.assert_allclose(ctx_c, ctx, atol=1e-6)
    np.testing.assert_allclose(w_c, w, atol=1e-6)

    # extra leading batch axes
    ctx_l, w_l = module.apply(variables, q[None], k[None], v[None], mask[None], step=STEPS[None])
    np.testing.assert_allclose(ctx_l[0], ctx, atol=1e-6)
    np.testing.assert_allclose(w_l[0], w, atol=1e-6)

    # vmap over an extra leading axis (a second, different set of inputs)
    q2, k2, v2, _ = make_inputs(case, seed=5)
    stack = lambda a, b: jnp.stack([jnp.asarray(a), jnp.asarray(b)])
    fn = lambda q, k, v, mask, step: module.apply(variables, q, k, v, mask, step=step)
    ctx_v, w_v = jax.vmap(fn)(
        stack(q, q2), stack(k, k2), stack(v, v2), stack(mask, mask), stack(STEPS, STEPS)
    )
    np.testing.assert_allclose(ctx_v[0], ctx, atol=1e-6)
    np.testing.assert_allclose(w_v[0], w, atol=1e-6)
    ctx_2, _ = module.apply(variables, q2, k2, v2, mask, step=STEPS)
    np.testing.assert_allclose(ctx_v[1], ctx_2, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bf16_inputs(case):
    q, k, v, mask = make_inputs(case)
    mask = mask.copy()
    mask[2] = False
    module, variables = init(case, q, k, mask)
    bf = lambda x: jnp.asarray(x, jnp.bfloat16)
    ctx, w = module.apply(variables, bf(q), bf(k), bf(v), mask, step=STEPS)
    assert np.all(np.isfinite(np.asarray(ctx, np.float32)))
    assert np.all(np.isfinite(np.asarray(w, np.float32)))
    ctx32, _ = module.apply(variables, q, k, v, mask, step=STEPS)
    np.testing.assert_allclose(np.asarray(ctx, np.float32), ctx32, atol=0.15, rtol=0.05)


def test_bf16_params_and_compute():
    """Modules built with dtype/param_dtype bfloat16 compute without NaN, masked rows too; the
    weights come out float32 (softmax in float32), the context in the values' dtype."""
    case = CASES[0]
    q, k, v, mask = make_inputs(case)
    mask = mask.copy()
    mask[2] = False
    for module in (
        AdditiveAttention(7, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16),
        LocalAttention(2, predictive=True, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16),
    ):
        variables = module.init(jax.random.key(0), q, k, mask=mask)
        ctx, w = module.apply(variables, q, k, jnp.asarray(v, jnp.bfloat16), mask)
        assert ctx.dtype == jnp.bfloat16 and w.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(ctx, np.float32)))
        assert np.all(np.asarray(w[2], np.float32) == 0)


# ---------------------------------------------------------------------------------------------
# Inside a decoder-style nn.scan, with precompute outside the scan
# ---------------------------------------------------------------------------------------------


class TinyDecoder(nn.Module):
    """Carries h, attends with query h at each step; precompute happens once, before the scan."""

    attention: nn.Module

    def __call__(self, h0, keys, mask, steps):
        cache = self.attention.precompute(keys)

        def body(mdl, h, step, keys, mask, cache):
            ctx, w = mdl.attention(h, keys, mask=mask, step=step, cache=cache)
            return jnp.tanh(h + ctx), (h, w)

        scan = nn.scan(
            body,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
            out_axes=1,
        )
        return scan(self, h0, steps, keys, mask, cache)


SCAN_CASES = [
    c
    for c in CASES
    if c.id
    in ("additive", "general", "dot", "local_m", "local_p_additive", "kernel_gaussian", "pooling")
]


@pytest.mark.parametrize("case", SCAN_CASES, ids=[c.id for c in SCAN_CASES])
def test_inside_scan(case):
    q, k, _, mask = make_inputs(case)
    decoder = TinyDecoder(case.make())
    steps = jnp.arange(4, dtype=jnp.int32)
    variables = jax.jit(decoder.init)(jax.random.key(0), q, k, mask, steps)
    h_last, (hs, ws) = jax.jit(decoder.apply)(variables, q, k, mask, steps)  # ws [B, T, S]
    assert ws.shape == (B, 4, S)

    # the same recurrence step by step, with the bare module and no cache
    module = case.make()
    attn_vars = {"params": variables["params"]["attention"]} if "params" in variables else {}
    h = jnp.asarray(q)
    for t in range(4):
        ctx, w = module.apply(attn_vars, h, k, mask=mask, step=t)
        np.testing.assert_allclose(ws[:, t], w, atol=1e-5)
        h = jnp.tanh(h + ctx)
    np.testing.assert_allclose(h_last, h, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Specifics
# ---------------------------------------------------------------------------------------------


def test_additive_maps_tutorial_bahdanau():
    """Parameter tree matches the tutorial's Wa, Ua: Linear(H, H), Va: Linear(H, 1)."""
    h = 8
    q = jnp.zeros((2, h))
    k = jnp.zeros((2, 3, h))
    params = AdditiveAttention(h).init(jax.random.key(0), q, k)["params"]
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes == {
        "query_proj": {"kernel": (h, h), "bias": (h,)},
        "key_proj": {"kernel": (h, h), "bias": (h,)},
        "energy": {"kernel": (h, 1), "bias": (1,)},
    }
    no_bias = AdditiveAttention(h, use_bias=False).init(jax.random.key(0), q, k)["params"]
    assert all(set(p) == {"kernel"} for p in no_bias.values())


def test_local_m_window_and_empty_window():
    """local-m puts weight only inside [t - D, t + D]; a window past the source gives zeros."""
    q, k, v, mask = make_inputs(CASES[0])
    module = LocalAttention(window=1)
    variables = module.init(jax.random.key(0), q, k, mask=mask, step=0)
    _, w = module.apply(variables, q, k, v, mask, step=jnp.array([3, 3, 3]))
    w = np.asarray(w)
    assert np.all(w[0, [0, 1, 5]] == 0) and np.all(w[0, 2:5] > 0)
    assert np.all(w[1, 4:] == 0) and np.all(w[2] == 0)  # rows of length 4 and 2
    ctx, w = module.apply(variables, q, k, v, mask, step=10)
    assert np.all(np.asarray(w) == 0) and np.all(np.asarray(ctx) == 0)


def test_local_p_position_within_source():
    q, k, v, mask = make_inputs(CASES[0])
    module = LocalAttention(window=2, predictive=True)
    variables = module.init(jax.random.key(0), q, k, mask=mask)
    p_t = module.apply(variables, q, S, mask, None, method="aligned_position")
    assert np.all(p_t > 0) and np.all(p_t < LENGTHS)


def test_kernel_widths():
    """A wide Gaussian averages (nearly) uniformly; a narrow one picks the nearest key."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(B, 1)).astype(np.float32)
    k = rng.normal(size=(B, S, 1)).astype(np.float32)
    _, w_wide = KernelAttention(width=1e3).apply({}, q, k)
    np.testing.assert_allclose(w_wide, 1 / S, atol=1e-5)
    _, w_narrow = KernelAttention(width=1e-3).apply({}, q, k)
    nearest = np.argmin(np.abs(k[..., 0] - q), axis=-1)
    np.testing.assert_allclose(w_narrow, np.eye(S)[nearest], atol=1e-6)
    # boxcar with no key within range: zeros, not NaN
    ctx, w = KernelAttention("boxcar", width=1e-3).apply({}, q + 100, k)
    assert np.all(np.asarray(w) == 0) and np.all(np.asarray(ctx) == 0)


def test_nadaraya_watson_learns_width():
    """d2l 11.2: y = 2 sin x + x^0.8 + noise; leave-one-out training of a Gaussian width."""
    rng = np.random.default_rng(0)
    f = lambda x: 2 * np.sin(x) + x**0.8
    n = 50
    x_train = np.sort(rng.uniform(0, 5, n)).astype(np.float32)
    y_train = (f(x_train) + rng.normal(0, 0.5, n)).astype(np.float32)
    x_test = np.arange(0, 5, 0.1, dtype=np.float32)
    y_test = f(x_test)

    module = KernelAttention("gaussian", width=3.0, learnable_width=True)
    keys = jnp.broadcast_to(x_train[None, :, None], (n, n, 1))  # every query sees all points
    values = jnp.broadcast_to(y_train[None, :, None], (n, n, 1))
    loo_mask = ~np.eye(n, dtype=bool)  # leave one out: a point may not attend to itself
    params = module.init(jax.random.key(0), x_train[:, None], keys)["params"]

    def train_loss(params):
        pred, _ = module.apply({"params": params}, x_train[:, None], keys, values, loo_mask)
        return jnp.mean((pred[:, 0] - y_train) ** 2)

    @jax.jit
    def test_mse(params):
        m = len(x_test)
        pred, _ = module.apply(
            {"params": params},
            x_test[:, None],
            jnp.broadcast_to(x_train[None, :, None], (m, n, 1)),
            jnp.broadcast_to(y_train[None, :, None], (m, n, 1)),
        )
        return jnp.mean((pred[:, 0] - y_test) ** 2)

    opt = optax.adam(0.05)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(train_loss)(params)
            updates, state = opt.update(grads, state)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=300)
        return params

    before = float(test_mse(params))
    trained = train(params)
    after = float(test_mse(trained))
    assert after < 0.5 * before, (before, after)
    assert float(train_loss(trained)) < float(train_loss(params))
    assert 0.05 < float(jnp.exp(trained["log_width"])) < 1.5


def test_attention_pooling_ignores_query():
    q, k, v, mask = make_inputs(CASES[0])
    module = AttentionPooling(hidden=4)
    variables = module.init(jax.random.key(0), None, k, mask=mask)
    ctx_none, w_none = module.apply(variables, None, k, v, mask)
    ctx_q, w_q = module.apply(variables, q, k, v, mask)
    np.testing.assert_array_equal(ctx_none, ctx_q)
    np.testing.assert_array_equal(w_none, w_q)


# ---------------------------------------------------------------------------------------------
# Factory and errors
# ---------------------------------------------------------------------------------------------


def test_make_attention_names():
    expected = {
        "additive": (AdditiveAttention, dict(hidden=4)),
        "bahdanau": (AdditiveAttention, dict(hidden=4)),
        "mlp": (AdditiveAttention, dict(hidden=4)),
        "dot": (DotAttention, {}),
        "scaled_dot": (ScaledDotAttention, {}),
        "general": (GeneralAttention, {}),
        "luong": (GeneralAttention, {}),
        "location": (LocationAttention, dict(max_length=10)),
        "local_m": (LocalAttention, dict(window=2)),
        "local-p": (LocalAttention, dict(window=2)),
        "kernel": (KernelAttention, {}),
        "pooling": (AttentionPooling, {}),
    }
    for name, (cls, kwargs) in expected.items():
        module = make_attention(name, **kwargs)
        assert type(module) is cls and isinstance(module, nn.Module)
    assert make_attention("local_m", window=2).predictive is False
    assert make_attention("local_p", window=2).predictive is True
    assert make_attention("Bahdanau", hidden=3, use_bias=False).use_bias is False
    assert {cls for cls, _ in expected.values()} == set(ATTENTION_TYPES)
    with pytest.raises(ValueError, match="Unknown attention"):
        make_attention("nope")
    with pytest.raises(TypeError, match="DotAttention"):
        make_attention("dot", hidden=3)


def test_errors():
    q = jnp.zeros((2, 3))
    k = jnp.zeros((2, 5, 4))
    with pytest.raises(ValueError, match="sizes to match"):
        DotAttention().init(jax.random.key(0), q, k)
    with pytest.raises(ValueError, match="query_dim=3"):
        GeneralAttention().init(jax.random.key(0), q, k)
    with pytest.raises(ValueError, match="raise max_length"):
        LocationAttention(max_length=4).init(jax.random.key(0), q, k)
    with pytest.raises(ValueError, match="step"):
        LocalAttention(window=2, query_dim=3).init(jax.random.key(0), q, k)
    with pytest.raises(ValueError, match="hidden"):
        LocalAttention(window=2, score="additive").init(jax.random.key(0), q, k, step=0)
    with pytest.raises(ValueError, match="Unknown kernel"):
        KernelAttention("cosine").init(jax.random.key(0), q, q[:, None])
