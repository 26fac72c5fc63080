"""The attention family: one call signature, a registry by name, and where each member lives.

Every module shares one call, so a decoder can swap them by name (see `make_attention`)::

    cache = attention.precompute(keys)              # once per sentence, outside the time loop
    context, weights = attention(query, keys, values, mask, step=t, cache=cache)

Shapes: query [B, D_q]; keys [B, S, D_k]; values [B, S, D_v] (None means values = keys, as in
the tutorial); mask [B, S] bool, True = a real token, None = no masking (the tutorial's
faithful behaviour). Returns context [B, D_v] and weights [B, S]. Any number of leading batch
axes works, and all modules are jit/vmap/scan friendly.

`precompute` holds the work that depends only on the keys (U_a k for additive attention, k W
for general attention); passing its result as `cache` gives the same numbers as leaving it
out, only cheaper inside a decoder's `nn.scan`. Parameters are declared in `setup()`, so
`precompute` and `__call__` on the same bound instance share them.

The family is split by concept into flat modules, imported one way (no cycles):

    scoring.py          the shared call (`Attention`), `masked_softmax` and the scoring
                        attentions: additive, dot, scaled dot, general, location
    local_attention.py  Luong's local-m / local-p attention (a scoring attention in a window)
    pooling.py          Nadaraya-Watson `KernelAttention` (`KERNELS`, `kernel_name`) and the
                        query-free `AttentionPooling`
    attention.py        this front door: every public name of the family, and the registry
                        (`make_attention`, `ATTENTIONS`, `ATTENTION_TYPES`)

`scoring` imports none of the others; `local_attention` and `pooling` import `scoring`; this
module imports all three. A new attention type is a subclass of `scoring.Attention` (or of a
scoring attention, writing only `score`) in the module of its concept, plus one line in
`_BY_NAME` below, which also makes it a valid `config.model.attention`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from jaxattn.model.attention_core import (
    AdditiveAttention,
    Attention,
    DotAttention,
    GeneralAttention,
    LocationAttention,
    ScaledDotAttention,
    masked_softmax,
)
from jaxattn.model.local_attention import LocalAttention
from jaxattn.model.pooling import (
    KERNEL_ALIASES,
    KERNELS,
    AttentionPooling,
    KernelAttention,
    kernel_name,
)

__all__ = [
    "ATTENTIONS",
    "ATTENTION_TYPES",
    "KERNELS",
    "KERNEL_ALIASES",
    "AdditiveAttention",
    "Attention",
    "AttentionPooling",
    "DotAttention",
    "GeneralAttention",
    "KernelAttention",
    "LocalAttention",
    "LocationAttention",
    "ScaledDotAttention",
    "kernel_name",
    "make_attention",
    "masked_softmax",
]

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


def make_attention(name: str, *, dtype: Any = None, **kwargs: Any) -> nn.Module:
    """Builds an attention module by name.

    Args:
        name: 'additive'/'bahdanau'/'mlp', 'dot', 'scaled_dot', 'general'/'luong', 'location',
            'local_m', 'local_p', 'kernel' or 'pooling' (any case, '-' or '_').
        dtype: The compute dtype (e.g. jnp.bfloat16) of the modules with parameters; the
            parameter-free ones compute in their inputs' dtype. None: float32.
        **kwargs: The module's fields, e.g. hidden=128 for additive, max_length=10 for
            location, kernel='epanechnikov' for kernel.

    Returns:
        The (unbound) Flax module. Called as ``context, weights = attn(query, keys, values,
        mask)`` with query [B, D_q], keys [B, S, D_k], values [B, S, D_v] or None (= keys),
        mask [B, S] bool or None; context [B, D_v], weights [B, S].

    Raises:
        ValueError: For an unknown name. TypeError: For fields the module does not have.
    """
    key = name.lower().replace("-", "_")
    if key not in _BY_NAME:
        raise ValueError(f"Unknown attention {name!r}; choose one of {sorted(_BY_NAME)}.")
    cls, fixed = _BY_NAME[key]
    if dtype is not None and "dtype" in cls.__dataclass_fields__:
        kwargs["dtype"] = dtype
    try:
        return cls(**fixed, **kwargs)
    except TypeError as e:
        raise TypeError(f"make_attention({name!r}) -> {cls.__name__}: {e}") from e
