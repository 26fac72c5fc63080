"""Attention pooling without a learned score of the query: Nadaraya-Watson kernels and
query-free pooling.

Members of the attention family (`jaxattn.model.attention` is its front door and registry, names
'kernel' and 'pooling'), built on the shared call of `scoring.Attention`. `KernelAttention`
is d2l's Nadaraya-Watson regression (weights from the distance between query and keys, no
parameters unless the width is learned); `AttentionPooling` summarizes a sequence into one
vector for classification (scores from the keys alone, the query ignored).
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from jaxattn.model.attention_core import (
    Array,
    Attention,
    Dtype,
    check_same_dim,
    dense_kwargs,
    masked_softmax,
)

KERNELS = ("gaussian", "boxcar", "epanechnikov", "constant")
KERNEL_ALIASES = {"epanechikov": "epanechnikov"}  # d2l's spelling


def kernel_name(name: str) -> str:
    """The canonical name of a Nadaraya-Watson kernel.

    Args:
        name: A name in `KERNELS` or `KERNEL_ALIASES`, in any case.

    Returns:
        The name in `KERNELS`, e.g. 'epanechnikov' for 'Epanechikov'.

    Raises:
        ValueError: For an unknown kernel.
    """
    key = name.lower()
    key = KERNEL_ALIASES.get(key, key)
    if key not in KERNELS:
        raise ValueError(f"Unknown kernel {name!r}; use one of {KERNELS} (or 'epanechikov').")
    return key


def _normalize(weights: Array, mask: Array | None) -> Array:
    """Divide non-negative weights [B, S] by their sum over S; a zero sum gives all zeros."""
    if mask is not None:
        weights = jnp.where(mask, weights, jnp.zeros((), weights.dtype))
    total = weights.sum(axis=-1, keepdims=True)  # [B, 1]
    ok = total > 0
    return jnp.where(ok, weights / jnp.where(ok, total, 1), jnp.zeros((), weights.dtype))


class KernelAttention(Attention):
    """Nadaraya-Watson attention pooling (d2l ch. 11): weights_s proportional to K(d_s).

    d_s = ||q - k_s|| / width (scalar queries and keys as [B, 1] and [B, S, 1] give the 1-D
    case). Kernels (`KERNELS`): 'gaussian' exp(-d^2 / 2), 'boxcar' 1(d <= 1), 'epanechnikov'
    max(0, 1 - d) (d2l's spelling 'epanechikov' is accepted too), 'constant' 1 (every valid
    key weighs the same: the average of the values). Weights are normalized over valid
    positions: the Gaussian through masked_softmax(-d^2 / 2) (stable for far-away keys), the
    others by their sum, with all zeros when no key is within range. learnable_width makes the
    width a parameter `log_width` (initialised to log(width), so the width stays positive).

    Attributes:
        kernel: Kernel name, one of `KERNELS` or an alias in `KERNEL_ALIASES` (any case).
        width: Kernel width (the Gaussian's sigma); must be > 0.
        learnable_width: Learn the width as the parameter `log_width`.
    """

    kernel: str = "gaussian"
    width: float = 1.0
    learnable_width: bool = False
    same_size: ClassVar[bool] = True  # the distance ||q - k_s|| needs D_q = D_k

    @classmethod
    def config_fields(cls, c, query_dim):
        return {
            "kernel": c.kernel,
            "width": c.kernel_width,
            "learnable_width": c.learn_kernel_width,
        }

    def setup(self):
        self._kernel = kernel_name(self.kernel)
        if self.width <= 0:
            raise ValueError(f"KernelAttention needs width > 0, got {self.width}.")
        if self.learnable_width:
            init = math.log(self.width)
            self.log_width = self.param("log_width", nn.initializers.constant(init), ())

    def attention_weights(self, query, keys, mask, *, step, cache):
        del step, cache  # no key-only work: the distances need the query
        check_same_dim("KernelAttention", query, keys)
        width = jnp.exp(self.log_width) if self.learnable_width else self.width
        diff = query[..., None, :] - keys  # [B, S, D]
        d2 = jnp.sum(diff * diff, axis=-1) / width**2  # [B, S], squared scaled distance
        if self._kernel == "gaussian":
            return masked_softmax(-d2 / 2, mask)
        if self._kernel == "boxcar":
            return _normalize((d2 <= 1).astype(d2.dtype), mask)
        if self._kernel == "constant":
            return _normalize(jnp.ones_like(d2), mask)
        # epanechnikov; sqrt only where d2 > 0 keeps the gradient finite at q == k
        pos = d2 > 0
        dist = jnp.where(pos, jnp.sqrt(jnp.where(pos, d2, 1)), 0)  # [B, S]
        return _normalize(jnp.maximum(1 - dist, 0), mask)


class AttentionPooling(Attention):
    """Query-free attention pooling for classification: a summary vector of a sequence.

    score_s = w^T k_s (hidden None) or w^T tanh(W k_s) (hidden given); weights are the masked
    softmax over time, context their weighted sum of values. Same call signature as the rest
    of the family; `query` may be None and is ignored. Parameters: `energy` (w) and, with
    hidden, `proj` (W). precompute returns the scores, which depend only on the keys.
    """

    hidden: int | None = None
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    reads_query: ClassVar[bool] = False

    def setup(self):
        kw = dense_kwargs(self, use_bias=self.use_bias)
        if self.hidden is not None:
            self.proj = nn.Dense(self.hidden, **kw)
        self.energy = nn.Dense(1, **kw)

    def precompute(self, keys):
        h = keys if self.hidden is None else jnp.tanh(self.proj(keys))  # [B, S, hidden]
        return self.energy(h)[..., 0]  # [B, S] scores

    def attention_weights(self, query, keys, mask, *, step, cache):
        del query, keys, step  # the scores (the cache) depend on the keys alone
        return masked_softmax(cache, mask)  # [B, S]
