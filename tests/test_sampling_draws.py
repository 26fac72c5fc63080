"""Tests for the search kernels on explicit logits: the argmax, the sort-free
top-k/top-p filter against a sorting reference, the two-level inverse-CDF draw, and the
nucleus draw by rejection (with and without its fallback)."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn.search import filter_logits

S = importlib.import_module("jaxattn.search.sample")


def reference_keep(x, top_k, top_p):
    """Kept tokens by sorting (float64 probabilities): the top_k best, then the fewest best
    whose mass reaches top_p; tokens tied with the last kept one are kept too."""
    keep = np.isfinite(x)
    if top_k:
        keep &= x >= np.sort(x)[::-1][top_k - 1]
    p = np.where(keep, np.exp(x - x.max()), 0.0)
    p /= p.sum()
    better = np.array([p[x > v].sum() for v in x])  # mass strictly above each token
    return keep & (better < top_p - 1e-6) if top_p < 1 else keep


def random_logits(rng, n, v):
    """Rows with ties (rounded values), -inf entries and scales from flat to peaked."""
    x = rng.normal(size=(n, v)) * rng.choice([0.1, 1.0, 4.0], size=(n, 1))
    x = np.where(rng.random((n, 1)) < 0.3, np.round(x, 1), x)  # many ties
    x[rng.random((n, v)) < 0.2] = -np.inf
    x[:, 0] = np.maximum(x[:, 0], -1.0)  # every row keeps a finite token
    return x.astype(np.float32)


@pytest.mark.parametrize("top_k, top_p", [(5, 1.0), (0, 0.9), (0, 0.35), (12, 0.7), (1, 1.0)])
def test_filter_keeps_what_sorting_keeps(top_k, top_p):
    x = random_logits(np.random.default_rng(top_k), 40, 150)
    kept = np.isfinite(np.asarray(filter_logits(jnp.asarray(x), 1.0, top_k, top_p)))
    for row, k in zip(x, kept, strict=True):
        ref = reference_keep(row.astype(np.float64), top_k, top_p)
        near = abs(np.array([ref_mass(row, v) for v in row]) - top_p) < 1e-5
        np.testing.assert_array_equal(k[~near], ref[~near])  # exact but for rounding at the cut
        assert k[np.argmax(row)]


def ref_mass(row, v):
    p = np.exp(row.astype(np.float64) - row.max())
    return p[row > v].sum() / p.sum()


def test_inverse_cdf_draws_match_the_softmax_and_skip_zero_weights():
    """V = 200 spans four blocks of the two-level CDF; 20,000 rows of the same logits with
    -inf entries (a whole block of them) each draw once."""
    rng = np.random.default_rng(0)
    row = rng.normal(size=200).astype(np.float32)
    row[rng.random(200) < 0.3] = -np.inf
    row[64:128] = -np.inf
    n = 20000
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(0), jnp.arange(n))
    drawn = np.asarray(S._draw(keys, jnp.broadcast_to(jnp.asarray(row), (n, 200))))
    assert np.isfinite(row[drawn]).all()
    p = np.exp(row - row[np.isfinite(row)].max())
    p /= p.sum()
    freq = np.bincount(drawn, minlength=200) / n
    np.testing.assert_array_less(abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-9)
    one = np.full((3, 130), -np.inf, np.float32)
    one[:, 129] = 0.0  # the only finite token, in the last (padded) block
    assert np.asarray(S._draw(keys[:3], jnp.asarray(one))).tolist() == [129] * 3


@pytest.mark.parametrize("tries", [16, 1])
def test_nucleus_draws_are_in_the_nucleus_with_its_frequencies(monkeypatch, tries):
    """Every draw is a token the exact filter keeps, with the filtered softmax's frequency;
    with one try many rows take the fallback (exact filter), with 16 almost none."""
    monkeypatch.setattr(S, "_TRIES", tries)
    rng = np.random.default_rng(1)
    row = (rng.normal(size=90) * 1.5).astype(np.float32)
    n, top_p = 20000, 0.6
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(1), jnp.arange(n))
    x = jnp.broadcast_to(jnp.asarray(row), (n, 90))
    drawn = np.asarray(jax.jit(S._draw_nucleus, static_argnums=2)(keys, x, top_p))
    kept = np.isfinite(np.asarray(filter_logits(jnp.asarray(row[None]), 1.0, top_p=top_p)))[0]
    assert kept[drawn].all() and 1 < kept.sum() < 90
    p = np.where(kept, np.exp(row - row.max()), 0.0)
    p /= p.sum()
    freq = np.bincount(drawn, minlength=90) / n
    np.testing.assert_array_less(abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-9)


def test_argmax_is_jnps_with_ties_nan_and_inf():
    """The search's two-reduction argmax: the first maximal index, as jnp.argmax."""
    from jaxattn.search.core import argmax

    x = np.round(np.random.default_rng(2).normal(size=(50, 3000)), 1).astype(np.float32)
    x[1] = -np.inf
    x[2, [7, 2999]] = np.inf
    x[3, 1234] = np.nan
    x[4, :] = x[4, 0]
    np.testing.assert_array_equal(argmax(jnp.asarray(x)), jnp.argmax(jnp.asarray(x), axis=-1))
    assert argmax(jnp.asarray(x))[4] == 0 and argmax(jnp.asarray(x))[3] == 1234
