"""Score-based attention: the shared call, the masked softmax and the scoring functions.

The bottom layer of the attention family (`jaxattn.model.attention` is its front door, with the
registry): every attention module subclasses `Attention`, whose one `__call__` is

    values = keys if values is None else values
    cache = precompute(keys) if cache is None else cache    # key-only work, once per sentence
    weights = attention_weights(query, keys, mask, step=step, cache=cache)  # [B, S]
    context = sum_s weights_s values_s                                      # [B, D_v]

so a subclass writes only `precompute` (optional) and `attention_weights`. The scoring
attentions here (`_ScoreAttention`) go one step further: weights = masked_softmax(score(q, k)),
and a subclass writes only `score` (Bahdanau's additive, Luong's dot / general / location, and
the scaled dot product). Local attention (`jaxattn.model.local_attention`) and query-free or kernel
pooling (`jaxattn.model.pooling`) build on the same base and helpers; nothing here imports them, so
the family has no import cycle.

Shapes: query [B, D_q]; keys [B, S, D_k]; values [B, S, D_v] (None = keys); mask [B, S] bool,
True = a real token (None = no masking); context [B, D_v], weights [B, S]. Any number of
leading batch axes works.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any


# ---------------------------------------------------------------------------------------------
# Helpers shared by the family
# ---------------------------------------------------------------------------------------------


def masked_softmax(scores: Array, mask: Array | None, axis: int = -1) -> Array:
    """Softmax over `axis` that gives masked positions (mask False) weight exactly 0.

    Masked scores are replaced by the dtype's most negative finite value rather than -inf, and
    the result is zeroed again afterwards, so a fully masked row gives all zeros (not NaN), in
    the forward pass and in gradients. mask None is a plain softmax.

    Args:
        scores: Unnormalized scores, e.g. [B, S].
        mask: Bool array broadcastable to `scores`, True = a real position; None = no mask.
        axis: The axis to normalize over.

    Returns:
        Float32 weights of the shape of `scores`, summing to 1 over `axis` (0 for a fully
        masked row): computed in float32 whatever the scores' dtype.
    """
    if mask is None:
        return jax.nn.softmax(scores.astype(jnp.float32), axis=axis)
    mask = jnp.asarray(mask, bool)
    fill = jnp.finfo(scores.dtype).min
    weights = jax.nn.softmax(jnp.where(mask, scores, fill).astype(jnp.float32), axis=axis)
    return jnp.where(mask, weights, jnp.zeros((), weights.dtype))


def pool(weights: Array, values: Array) -> Array:
    """Attention pooling: sum_s weights_s values_s, [B, S] x [B, S, D_v] -> [B, D_v], in the
    values' dtype (the compute dtype; the weights may be float32)."""
    return jnp.einsum("...s,...sd->...d", weights.astype(values.dtype), values)


def dot_scores(query: Array, keys: Array) -> Array:
    """q . k_s for every position: [B, D] x [B, S, D] -> [B, S]."""
    return jnp.einsum("...d,...sd->...s", query, keys)


def check_same_dim(name: str, query: Array, keys: Array, hint: str = "") -> None:
    """Raise a clear error when query and keys differ in their last (feature) size."""
    if query.shape[-1] != keys.shape[-1]:
        raise ValueError(
            f"{name} needs query and key sizes to match, got query {query.shape[-1]} and key "
            f"{keys.shape[-1]}{hint}."
        )


def dense_kwargs(module: nn.Module, **extra: Any) -> dict[str, Any]:
    """The dtype/param_dtype (and e.g. use_bias) a module passes to each of its Dense layers."""
    return dict(extra, dtype=module.dtype, param_dtype=module.param_dtype)


class AutoDense(nn.Module):
    """`nn.Dense` whose width may be left None, meaning "as wide as the input".

    Same parameter layout as `nn.Dense` (kernel [in, out], bias [out]); needed where the width
    is only known from the data, because `setup()` sees no inputs.
    """

    features: int | None = None
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        features = x.shape[-1] if self.features is None else self.features
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (x.shape[-1], features), self.param_dtype
        )
        bias = (
            self.param("bias", nn.initializers.zeros_init(), (features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jnp.einsum("...i,io->...o", x, kernel)  # [B, ..., out]
        return y if bias is None else y + bias


# ---------------------------------------------------------------------------------------------
# The shared call
# ---------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Base of every attention module: one call signature, so decoders swap them by name.

    Subclasses provide `attention_weights` and, when some work depends only on the keys,
    `precompute` (its result, passed back as `cache`, gives the same numbers as leaving it out,
    only cheaper inside a decoder's `nn.scan`). Parameters are declared in `setup()`, so
    `precompute` and `__call__` on one bound instance share them.

    As a registry entry (`jaxattn.model.attention.ATTENTIONS`) a class also says what it takes
    from a model config (`config_fields`) and which decoder/encoder sizes it cannot join
    (`config_conflict`), so that a decoder builds any of them alike.
    """

    # The query and the keys are compared directly (a dot product, a distance), so the
    # decoder's query must be as wide as the encoder outputs.
    same_size: ClassVar[bool] = False
    # False: the query is ignored (pooling), so a decoder cannot attend with it.
    reads_query: ClassVar[bool] = True

    @classmethod
    def config_fields(cls, c, query_dim: int) -> dict[str, Any]:
        """This attention's fields from model config `c`, for a decoder query [B, query_dim]."""
        del c, query_dim
        return {}

    @classmethod
    def config_conflict(cls, name: str, query_dim: int, key_dim: int) -> str | None:
        """Why attention `name` (this class) cannot compare decoder queries of query_dim with
        encoder outputs of key_dim, or None."""
        if cls.same_size and query_dim != key_dim:
            return (
                f"attention={name!r} compares the decoder state ({query_dim}) with encoder "
                f"outputs ({key_dim}) directly, so their sizes must match; use 'general' or "
                "'additive', or set hidden/bidirectional so that they match."
            )
        return None

    @classmethod
    def source_positions(cls, c) -> int:
        """Source positions (EOS included) this attention can score under model config `c`;
        0 = any (location attention has a fixed number)."""
        del c
        return 0

    def precompute(self, keys: Array) -> Array | None:
        """Key-only work [B, S, ...], done once per sentence; None when there is none."""
        del keys
        return None

    def attention_weights(
        self,
        query: Array | None,
        keys: Array,
        mask: Array | None,
        *,
        step: Array | int | None,
        cache: Array | None,
    ) -> Array:
        """Weights [B, S] over the source positions (query [B, D_q], keys [B, S, D_k])."""
        raise NotImplementedError

    def __call__(
        self,
        query: Array | None,
        keys: Array,
        values: Array | None = None,
        mask: Array | None = None,
        *,
        step: Array | int | None = None,
        cache: Array | None = None,
    ) -> tuple[Array, Array]:
        """context [B, D_v], weights [B, S]; `step` is the decoder time step (local-m only)."""
        values = keys if values is None else values  # [B, S, D_v]
        if cache is None:
            cache = self.precompute(keys)
        weights = self.attention_weights(query, keys, mask, step=step, cache=cache)  # [B, S]
        return pool(weights, values), weights


# ---------------------------------------------------------------------------------------------
# Score-based (global) attention: weights = masked_softmax(score(q, k)), context = weights @ v
# ---------------------------------------------------------------------------------------------


class _ScoreAttention(Attention):
    """Attention defined by a score function a(q, k_s): weights = masked_softmax(scores)."""

    def score(self, query: Array, keys: Array, cache: Array | None) -> Array:
        """Unnormalized scores [B, S] from query [B, D_q], keys [B, S, D_k] and the cache."""
        raise NotImplementedError

    def attention_weights(self, query, keys, mask, *, step, cache):
        del step  # only local-m attention uses the time step
        return masked_softmax(self.score(query, keys, cache), mask)  # [B, S]


class AdditiveAttention(_ScoreAttention):
    """Additive (Bahdanau, "mlp") attention: a(q, k) = v^T tanh(W_q q + U_k k).

    Parameters map 1:1 onto the PyTorch tutorial's BahdanauAttention: `query_proj` = Wa,
    `key_proj` = Ua (both Linear(H, hidden)), `energy` = Va (Linear(hidden, 1)); a PyTorch
    Linear weight [out, in] is the transpose of the Flax kernel [in, out]. use_bias=False gives
    the bias-free form of Bahdanau et al. and d2l (a bias on `energy` is a constant shift and
    cancels in the softmax anyway).
    """

    hidden: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @classmethod
    def config_fields(cls, c, query_dim):
        return {"hidden": c.hidden, "use_bias": c.attention_bias}

    def setup(self):
        kw = dense_kwargs(self, use_bias=self.use_bias)
        self.query_proj = nn.Dense(self.hidden, **kw)  # Wa
        self.key_proj = nn.Dense(self.hidden, **kw)  # Ua
        self.energy = nn.Dense(1, **kw)  # Va

    def precompute(self, keys):
        return self.key_proj(keys)  # [B, S, hidden]

    def score(self, query, keys, cache):
        q = self.query_proj(query)[..., None, :]  # [B, 1, hidden]
        return self.energy(jnp.tanh(q + cache))[..., 0]  # [B, S]


_PROJECT_HINT = "; use 'general' or 'additive' attention to learn a projection"


class DotAttention(_ScoreAttention):
    """Dot-product attention (Luong "dot"): a(q, k) = q . k. No parameters."""

    same_size: ClassVar[bool] = True

    def score(self, query, keys, cache):
        check_same_dim("DotAttention", query, keys, _PROJECT_HINT)
        return dot_scores(query, keys)  # [B, S]


class ScaledDotAttention(_ScoreAttention):
    """Scaled dot-product attention: a(q, k) = q . k / sqrt(d), keeping score variance ~1."""

    same_size: ClassVar[bool] = True

    def score(self, query, keys, cache):
        check_same_dim("ScaledDotAttention", query, keys, _PROJECT_HINT)
        return dot_scores(query, keys) / math.sqrt(query.shape[-1])  # [B, S]


class GeneralAttention(_ScoreAttention):
    """Luong "general" attention: a(q, k) = q^T W k.

    `key_proj` maps keys to the query size (its kernel [D_k, D_q] is Luong's W_a transposed),
    so `precompute` caches k W^T and each decoder step costs one dot product. query_dim None
    means the query is as wide as the keys; set it when they differ (e.g. a bidirectional
    encoder). use_bias adds q . b, a per-query bias Luong does not have.
    """

    query_dim: int | None = None
    use_bias: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @classmethod
    def config_fields(cls, c, query_dim):
        return {"use_bias": False, "query_dim": query_dim}  # Luong's W_a has no bias

    def setup(self):
        self.key_proj = AutoDense(self.query_dim, self.use_bias, **dense_kwargs(self))

    def precompute(self, keys):
        return self.key_proj(keys)  # [B, S, D_q]

    def score(self, query, keys, cache):
        if query.shape[-1] != cache.shape[-1]:
            raise ValueError(
                f"GeneralAttention projects keys to size {cache.shape[-1]} but the query has "
                f"size {query.shape[-1]}; set query_dim={query.shape[-1]}."
            )
        if self.dtype is not None:
            query = query.astype(self.dtype)
        return dot_scores(query, cache)  # [B, S]


class LocationAttention(_ScoreAttention):
    """Location-based attention: weights = softmax(W_a q) over the first S positions.

    The score ignores the keys (they only serve as values). This is Luong's "location" score
    and the older PyTorch tutorial's decoder attention, whose `attn` = Linear(2H, max_length)
    was applied to query = concat(embedded, hidden) (the decoder builds that query). The
    tutorial padded every sentence to max_length, where this is the same softmax; here the
    scores beyond S are dropped before the softmax, and the mask applies to the rest.
    """

    max_length: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @classmethod
    def config_fields(cls, c, query_dim):
        return {"max_length": c.attention_max_length, "use_bias": c.attention_bias}

    @classmethod
    def source_positions(cls, c) -> int:
        return c.attention_max_length  # 0 (auto): not known before the data is read

    def setup(self):
        if self.max_length < 1:
            raise ValueError(
                f"LocationAttention needs max_length >= 1, got {self.max_length} "
                "(model.attention_max_length=0, auto, is set from the data when training "
                "starts: build the model from the run's saved config)."
            )
        self.attn = nn.Dense(self.max_length, **dense_kwargs(self, use_bias=self.use_bias))

    def score(self, query, keys, cache):
        src_len = keys.shape[-2]
        if src_len > self.max_length:
            raise ValueError(
                f"LocationAttention has max_length={self.max_length} scores but the source "
                f"has {src_len} positions; raise max_length to at least {src_len}."
            )
        return self.attn(query)[..., :src_len]  # [B, S]
