"""Nadaraya-Watson kernels of `KernelAttention` against d2l's own code (d2l.ai ch. 11.2, JAX
version): gaussian, boxcar, Epanechnikov (also under d2l's spelling "Epanechikov") and the
constant kernel; names in any case, through `make_attention` too, and a clear error otherwise."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn import KernelAttention, make_attention
from jaxattn.model.attention import KERNEL_ALIASES, KERNELS, kernel_name


# d2l's kernels and regression, verbatim but for the names.
def gaussian(x):
    return jnp.exp(-(x**2) / 2)


def boxcar(x):
    return jnp.abs(x) < 1.0


def constant(x):
    return 1.0 + 0 * x


def epanechikov(x):
    return jnp.maximum(1 - jnp.abs(x), 0)


def nadaraya_watson(x_train, y_train, x_val, kernel):
    dists = x_train.reshape((-1, 1)) - x_val.reshape((1, -1))
    k = kernel(dists).astype(jnp.float32)  # [n_train, n_val]
    attention_w = k / k.sum(0)
    y_hat = y_train @ attention_w
    return y_hat, attention_w


D2L = {"gaussian": gaussian, "boxcar": boxcar, "constant": constant, "epanechikov": epanechikov}


def toy(seed=0):
    """d2l's toy: y = 2 sin(x) + x^0.8 + noise on 50 sorted points of [0, 5)."""
    rng = np.random.default_rng(seed)
    x_train = np.sort(rng.uniform(0, 5, 50)).astype(np.float32)
    y_train = (2 * np.sin(x_train) + x_train**0.8 + rng.normal(0, 0.5, 50)).astype(np.float32)
    x_val = np.arange(0, 5, 0.1, dtype=np.float32) + 0.013  # off the boxcar's edge
    return jnp.asarray(x_train), jnp.asarray(y_train), jnp.asarray(x_val)


def jaxattn_fit(x_train, y_train, x_val, kernel, width=1.0):
    """Queries x_val [n_val, 1], keys x_train [n_val, n_train, 1] -> y_hat, weights."""
    n_val = x_val.shape[0]
    keys = jnp.broadcast_to(x_train[None, :, None], (n_val, x_train.shape[0], 1))
    values = jnp.broadcast_to(y_train[None, :, None], keys.shape)
    attn = KernelAttention(kernel=kernel, width=width)
    context, weights = attn.apply({}, x_val[:, None], keys, values)
    return context[:, 0], weights  # [n_val], [n_val, n_train]


@pytest.mark.parametrize("d2l_name", sorted(D2L))
def test_matches_d2l(d2l_name):
    x_train, y_train, x_val = toy()
    ref_y, ref_w = nadaraya_watson(x_train, y_train, x_val, D2L[d2l_name])
    y_hat, weights = jaxattn_fit(x_train, y_train, x_val, d2l_name)
    np.testing.assert_allclose(weights, ref_w.T, atol=1.4e-6)
    np.testing.assert_allclose(y_hat, ref_y, atol=1.4e-5)


def test_constant_kernel_is_the_masked_mean():
    x_train, y_train, x_val = toy(1)
    y_hat, weights = jaxattn_fit(x_train, y_train, x_val, "constant", width=0.01)
    np.testing.assert_allclose(y_hat, np.full(x_val.shape, float(y_train.mean())), rtol=1e-5)
    # With a mask, only valid keys count, equally.
    mask = jnp.arange(5)[None] < jnp.array([[3]])
    keys = jnp.arange(5.0)[None, :, None]
    context, w = KernelAttention(kernel="constant").apply({}, jnp.zeros((1, 1)), keys, None, mask)
    np.testing.assert_allclose(w, [[1 / 3, 1 / 3, 1 / 3, 0, 0]], atol=1e-7)
    np.testing.assert_allclose(context, [[1.0]], atol=1e-6)


@pytest.mark.parametrize("spelling", ["Epanechikov", "epanechikov", "EPANECHNIKOV"])
def test_epanechnikov_spellings_are_one_kernel(spelling):
    x_train, y_train, x_val = toy(2)
    expected = jaxattn_fit(x_train, y_train, x_val, "epanechnikov", width=0.7)
    got = jaxattn_fit(x_train, y_train, x_val, spelling, width=0.7)
    np.testing.assert_array_equal(got[1], expected[1])
    assert kernel_name(spelling) == "epanechnikov"
    via_factory = make_attention("kernel", kernel=spelling, width=0.7)
    keys = x_train[None, :, None]
    _, w = via_factory.apply({}, x_val[:1, None], keys)
    np.testing.assert_array_equal(w, expected[1][:1])


def test_names_and_errors():
    assert set(KERNELS) == {"gaussian", "boxcar", "epanechnikov", "constant"}
    assert KERNEL_ALIASES == {"epanechikov": "epanechnikov"}
    with pytest.raises(ValueError, match="Unknown kernel 'triangle'.*epanechikov"):
        KernelAttention(kernel="triangle").apply({}, jnp.zeros((1, 1)), jnp.zeros((1, 3, 1)))
