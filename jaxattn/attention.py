"""The attention family: scoring functions, masked softmax and attention pooling.

Every module shares one call signature, so a decoder can swap them by name
(see `make_attention`)::

    cache = attention.precompute(keys)              # once per sentence, outside the time loop
    context, weights = attention(query, keys, values, mask, step=t, cache=cache)

Shapes: query [batch, q_dim]; keys [batch, src_len, k_dim]; values [batch, src_len, v_dim]
(None means values = keys, as in the tutorial); mask [batch, src_len] bool, True = a real
token, None = no masking (the tutorial's faithful behaviour). Returns context [batch, v_dim]
and weights [batch, src_len]. Any number of leading batch axes works, and all modules are
jit/vmap/scan friendly.

`precompute` holds the work that depends only on the keys (U_a k for additive attention, k W
for general attention); passing its result as `cache` gives the same numbers as leaving it
out, only cheaper inside a decoder's `nn.scan`. Parameters are declared in `setup()`, so
`precompute` and `__call__` on the same bound instance share them.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any


# ---------------------------------------------------------------------------------------------
# Masked softmax and pooling
# ---------------------------------------------------------------------------------------------


def masked_softmax(scores: Array, mask: Array | None, axis: int = -1) -> Array:
    """Softmax over `axis` that gives masked positions (mask False) weight exactly 0.

    Masked scores are replaced by the dtype's most negative finite value rather than -inf, and
    the result is zeroed again afterwards, so a fully masked row gives all zeros (not NaN), in
    the forward pass and in gradients. mask None is a plain softmax.

    Args:
        scores: Unnormalized scores, e.g. [batch, src_len].
        mask: Bool array broadcastable to `scores`, True = a real position; None = no mask.
        axis: The axis to normalize over.

    Returns:
        Weights of the shape of `scores`, summing to 1 over `axis` (0 for a fully masked row).
    """
    if mask is None:
        return jax.nn.softmax(scores, axis=axis)
    mask = jnp.asarray(mask, bool)
    fill = jnp.finfo(scores.dtype).min
    weights = jax.nn.softmax(jnp.where(mask, scores, fill), axis=axis)
    return jnp.where(mask, weights, jnp.zeros((), weights.dtype))


def _normalize(weights: Array, mask: Array | None) -> Array:
    """Divide non-negative weights by their sum over the last axis; zero sum -> all zeros."""
    if mask is not None:
        weights = jnp.where(mask, weights, jnp.zeros((), weights.dtype))
    total = weights.sum(axis=-1, keepdims=True)
    ok = total > 0
    return jnp.where(ok, weights / jnp.where(ok, total, 1), jnp.zeros((), weights.dtype))


def _pool(weights: Array, values: Array) -> Array:
    """Attention pooling sum_s weights_s values_s."""
    return jnp.einsum("...s,...sd->...d", weights, values)  # [batch, v_dim]


def _dot_scores(query: Array, keys: Array) -> Array:
    return jnp.einsum("...d,...sd->...s", query, keys)  # [batch, src_len]


def _check_same_dim(name: str, query: Array, keys: Array, hint: str = "") -> None:
    """Raise a clear error when query and keys differ in their last (feature) size."""
    if query.shape[-1] != keys.shape[-1]:
        raise ValueError(
            f"{name} needs query and key sizes to match, got query {query.shape[-1]} and key "
            f"{keys.shape[-1]}{hint}."
        )


class _Dense(nn.Module):
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
        y = jnp.einsum("...i,io->...o", x, kernel)
        return y if bias is None else y + bias


# ---------------------------------------------------------------------------------------------
# Score-based (global) attention: weights = masked_softmax(score(q, k)), context = weights @ v
# ---------------------------------------------------------------------------------------------


class _ScoreAttention(nn.Module):
    """Shared `__call__` for attention defined by a score function a(q, k_s)."""

    def precompute(self, keys: Array) -> Array | None:
        """Key-only work, done once per sentence; None when there is none."""
        del keys
        return None

    def score(self, query: Array, keys: Array, cache: Array | None) -> Array:
        """Unnormalized scores [batch, src_len] from query [batch, q_dim], keys and cache."""
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
        del step  # only local-m attention uses the time step
        values = keys if values is None else values
        if cache is None:
            cache = self.precompute(keys)
        scores = self.score(query, keys, cache)  # [batch, src_len]
        weights = masked_softmax(scores, mask)  # [batch, src_len]
        return _pool(weights, values), weights


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

    def setup(self):
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        self.query_proj = nn.Dense(self.hidden, **kw)  # Wa
        self.key_proj = nn.Dense(self.hidden, **kw)  # Ua
        self.energy = nn.Dense(1, **kw)  # Va

    def precompute(self, keys):
        return self.key_proj(keys)  # [batch, src_len, hidden]

    def score(self, query, keys, cache):
        q = self.query_proj(query)[..., None, :]  # [batch, 1, hidden]
        return self.energy(jnp.tanh(q + cache))[..., 0]  # [batch, src_len]


_PROJECT_HINT = "; use 'general' or 'additive' attention to learn a projection"


class DotAttention(_ScoreAttention):
    """Dot-product attention (Luong "dot"): a(q, k) = q . k. No parameters."""

    def score(self, query, keys, cache):
        _check_same_dim("DotAttention", query, keys, _PROJECT_HINT)
        return _dot_scores(query, keys)


class ScaledDotAttention(_ScoreAttention):
    """Scaled dot-product attention: a(q, k) = q . k / sqrt(d), keeping score variance ~1."""

    def score(self, query, keys, cache):
        _check_same_dim("ScaledDotAttention", query, keys, _PROJECT_HINT)
        return _dot_scores(query, keys) / math.sqrt(query.shape[-1])


class GeneralAttention(_ScoreAttention):
    """Luong "general" attention: a(q, k) = q^T W k.

    `key_proj` maps keys to the query size (its kernel [k_dim, q_dim] is Luong's W_a
    transposed), so `precompute` caches k W^T and each decoder step costs one dot product.
    query_dim None means the query is as wide as the keys; set it when they differ (e.g. a
    bidirectional encoder). use_bias adds q . b, a per-query bias Luong does not have.
    """

    query_dim: int | None = None
    use_bias: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.key_proj = _Dense(
            self.query_dim, self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype
        )

    def precompute(self, keys):
        return self.key_proj(keys)  # [batch, src_len, q_dim]

    def score(self, query, keys, cache):
        if query.shape[-1] != cache.shape[-1]:
            raise ValueError(
                f"GeneralAttention projects keys to size {cache.shape[-1]} but the query has "
                f"size {query.shape[-1]}; set query_dim={query.shape[-1]}."
            )
        if self.dtype is not None:
            query = query.astype(self.dtype)
        return _dot_scores(query, cache)


class LocationAttention(_ScoreAttention):
    """Location-based attention: weights = softmax(W_a q) over the first src_len positions.

    The score ignores the keys (they only serve as values). This is Luong's "location" score
    and the older PyTorch tutorial's decoder attention, whose `attn` = Linear(2H, max_length)
    was applied to query = concat(embedded, hidden) (the decoder builds that query). The
    tutorial padded every sentence to max_length, where this is the same softmax; here the
    scores beyond src_len are dropped before the softmax, and the mask applies to the rest.
    """

    max_length: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.attn = nn.Dense(
            self.max_length, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype
        )

    def score(self, query, keys, cache):
        src_len = keys.shape[-2]
        if src_len > self.max_length:
            raise ValueError(
                f"LocationAttention has max_length={self.max_length} scores but the source "
                f"has {src_len} positions; raise max_length to at least {src_len}."
            )
        return self.attn(query)[..., :src_len]  # [batch, src_len]


# ---------------------------------------------------------------------------------------------
# Local attention (Luong et al. 2015, section 3.2)
# ---------------------------------------------------------------------------------------------


class LocalAttention(nn.Module):
    """Luong local attention, monotonic (local-m) or predictive (local-p).

    Aligned position p_t: local-m uses the decoder step (p_t = t, pass `step`); local-p
    predicts p_t = L * sigmoid(v_p^T tanh(W_p q)), L = source length (from the mask, else
    src_len). The base score (`score`: 'general', 'dot', 'scaled_dot' or 'additive') is
    softmaxed over the window [p_t - D, p_t + D] (intersected with the mask) and then multiplied
    by a Gaussian exp(-(s - p_t)^2 / (2 (D/2)^2)) centred on p_t. As in Luong et al. the
    weights therefore sum to at most 1 (not exactly 1). A window with no valid position (e.g.
    local-m past the end of the source) gives zero weights and a zero context, never NaN.

    Scores are computed for all positions and masked (cheap for sentence-length inputs).
    Fields: window D; hidden = width of W_p (None: the query size) and of the additive score
    (required there); query_dim and use_bias go to the base score (use_bias None: its default).
    Parameters: `align` (the base score module), and for local-p `position_proj` (W_p) and
    `position_energy` (v_p), both bias-free as in the paper.
    """

    window: int
    predictive: bool = False
    score: str = "general"
    hidden: int | None = None
    query_dim: int | None = None
    use_bias: bool | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def setup(self):
        if self.window < 1:
            raise ValueError(f"LocalAttention needs window >= 1, got {self.window}.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.use_bias is not None:
            kw["use_bias"] = self.use_bias
        name = self.score.lower().replace("-", "_")
        if name in ("general", "luong"):
            self.align = GeneralAttention(query_dim=self.query_dim, **kw)
        elif name in ("additive", "bahdanau", "mlp"):
            if self.hidden is None:
                raise ValueError("LocalAttention with an additive score needs hidden=<int>.")
            self.align = AdditiveAttention(self.hidden, **kw)
        elif name == "dot":
            self.align = DotAttention()
        elif name == "scaled_dot":
            self.align = ScaledDotAttention()
        else:
            raise ValueError(
                f"Unknown local attention score {self.score!r}; "
                "use 'general', 'dot', 'scaled_dot' or 'additive'."
            )
        if self.predictive:
            self.position_proj = _Dense(self.hidden, use_bias=False, **kw)  # W_p
            self.position_energy = _Dense(1, use_bias=False, **kw)  # v_p

    def precompute(self, keys):
        return self.align.precompute(keys)

    def aligned_position(self, query, src_len, mask, step):
        """p_t [batch]: the step (local-m) or L * sigmoid(v_p^T tanh(W_p q)) (local-p)."""
        batch_shape = query.shape[:-1]
        if not self.predictive:
            if step is None:
                raise ValueError("Local-m attention needs the decoder time step: pass step=t.")
            return jnp.broadcast_to(jnp.asarray(step), batch_shape).astype(jnp.float32)
        length = (
            jnp.full(batch_shape, src_len, jnp.float32)
            if mask is None
            else jnp.asarray(mask, bool).sum(axis=-1).astype(jnp.float32)
        )
        gate = self.position_energy(jnp.tanh(self.position_proj(query)))[..., 0]  # [batch]
        return length * jax.nn.sigmoid(gate.astype(jnp.float32))

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
        values = keys if values is None else values
        if cache is None:
            cache = self.precompute(keys)
        src_len = keys.shape[-2]
        p_t = self.aligned_position(query, src_len, mask, step)  # [batch]
        offset = jnp.arange(src_len, dtype=jnp.float32) - p_t[..., None]  # [batch, src_len]
        valid = jnp.abs(offset) <= self.window  # [batch, src_len]
        if mask is not None:
            valid = valid & jnp.asarray(mask, bool)
        scores = self.align.score(query, keys, cache)  # [batch, src_len]
        sigma = self.window / 2
        gauss = jnp.exp(-(offset**2) / (2 * sigma**2))  # [batch, src_len]
        weights = masked_softmax(scores, valid) * gauss.astype(scores.dtype)
        return _pool(weights, values), weights


# ---------------------------------------------------------------------------------------------
# Nadaraya-Watson kernel regression and attention pooling
# ---------------------------------------------------------------------------------------------


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


class KernelAttention(nn.Module):
    """Nadaraya-Watson attention pooling (d2l ch. 11): weights_s proportional to K(d_s).

    d_s = ||q - k_s|| / width (scalar queries and keys as [batch, 1] and [batch, src_len, 1]
    give the 1-D case). Kernels (`KERNELS`): 'gaussian' exp(-d^2 / 2), 'boxcar' 1(d <= 1),
    'epanechnikov' max(0, 1 - d) (d2l's spelling 'epanechikov' is accepted too), 'constant' 1
    (every valid key weighs the same: the average of the values). Weights are normalized over
    valid positions: the Gaussian through masked_softmax(-d^2 / 2) (stable for far-away keys),
    the others by their sum, with all zeros when no key is within range. learnable_width makes
    the width a parameter `log_width` (initialised to log(width), so the width stays positive).

    Attributes:
        kernel: Kernel name, one of `KERNELS` or an alias in `KERNEL_ALIASES` (any case).
        width: Kernel width (the Gaussian's sigma); must be > 0.
        learnable_width: Learn the width as the parameter `log_width`.
    """

    kernel: str = "gaussian"
    width: float = 1.0
    learnable_width: bool = False

    def setup(self):
        self._kernel = kernel_name(self.kernel)
        if self.width <= 0:
            raise ValueError(f"KernelAttention needs width > 0, got {self.width}.")
        if self.learnable_width:
            init = math.log(self.width)
            self.log_width = self.param("log_width", nn.initializers.constant(init), ())

    def precompute(self, keys):
        del keys
        return None

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
        del step, cache
        values = keys if values is None else values
        _check_same_dim("KernelAttention", query, keys)
        width = jnp.exp(self.log_width) if self.learnable_width else self.width
        diff = query[..., None, :] - keys  # [batch, src_len, dim]
        d2 = jnp.sum(diff * diff, axis=-1) / width**2  # [batch, src_len], squared distance
        if self._kernel == "gaussian":
            weights = masked_softmax(-d2 / 2, mask)
        elif self._kernel == "boxcar":
            weights = _normalize((d2 <= 1).astype(d2.dtype), mask)
        elif self._kernel == "constant":
            weights = _normalize(jnp.ones_like(d2), mask)
        else:  # epanechnikov; sqrt only where d2 > 0 keeps the gradient finite at q == k
            pos = d2 > 0
            dist = jnp.where(pos, jnp.sqrt(jnp.where(pos, d2, 1)), 0)
            weights = _normalize(jnp.maximum(1 - dist, 0), mask)
        return _pool(weights, values), weights


class AttentionPooling(nn.Module):
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

    def setup(self):
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.hidden is not None:
            self.proj = nn.Dense(self.hidden, **kw)
        self.energy = nn.Dense(1, **kw)

    def precompute(self, keys):
        h = keys if self.hidden is None else jnp.tanh(self.proj(keys))
        return self.energy(h)[..., 0]  # [batch, src_len] scores

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
        del query, step
        values = keys if values is None else values
        scores = self.precompute(keys) if cache is None else cache  # [batch, src_len]
        weights = masked_softmax(scores, mask)
        return _pool(weights, values), weights


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------

ATTENTION_TYPES: tuple[type[nn.Module], ...] = (
    AdditiveAttention,
    DotAttention,
    ScaledDotAttention,
    GeneralAttention,
    LocationAttention,
    LocalAttention,
    KernelAttention,
    AttentionPooling,
)

_BY_NAME: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "additive": (AdditiveAttention, {}),
    "bahdanau": (AdditiveAttention, {}),
    "mlp": (AdditiveAttention, {}),
    "dot": (DotAttention, {}),
    "scaled_dot": (ScaledDotAttention, {}),
    "general": (GeneralAttention, {}),
    "luong": (GeneralAttention, {}),
    "location": (LocationAttention, {}),
    "local_m": (LocalAttention, {"predictive": False}),
    "local_p": (LocalAttention, {"predictive": True}),
    "kernel": (KernelAttention, {}),
    "pooling": (AttentionPooling, {}),
}


# The scoring functions a decoder can use (config.model.attention); 'pooling' summarizes a
# sequence without a query.
ATTENTIONS = tuple(name for name in _BY_NAME if name != "pooling")


def make_attention(name: str, **kwargs: Any) -> nn.Module:
    """Builds an attention module by name.

    Args:
        name: 'additive'/'bahdanau'/'mlp', 'dot', 'scaled_dot', 'general'/'luong', 'location',
            'local_m', 'local_p', 'kernel' or 'pooling' (any case, '-' or '_').
        **kwargs: The module's fields, e.g. hidden=128 for additive, max_length=10 for
            location, kernel='epanechnikov' for kernel.

    Returns:
        The (unbound) Flax module. Called as ``context, weights = attn(query, keys, values,
        mask)`` with query [batch, q_dim], keys [batch, src_len, k_dim], values [batch,
        src_len, v_dim] or None (= keys), mask [batch, src_len] bool or None; context
        [batch, v_dim], weights [batch, src_len].

    Raises:
        ValueError: For an unknown name. TypeError: For fields the module does not have.
    """
    key = name.lower().replace("-", "_")
    if key not in _BY_NAME:
        raise ValueError(f"Unknown attention {name!r}; choose one of {sorted(_BY_NAME)}.")
    cls, fixed = _BY_NAME[key]
    try:
        return cls(**fixed, **kwargs)
    except TypeError as e:
        raise TypeError(f"make_attention({name!r}) -> {cls.__name__}: {e}") from e
