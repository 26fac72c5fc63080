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

    attention_core.py   the shared call (`Attention`), `masked_softmax` and the scoring
                        attentions: additive, dot, scaled dot, general, location
    local_attention.py  Luong's local-m / local-p attention (a scoring attention in a window)
    pooling.py          Nadaraya-Watson `KernelAttention` (`KERNELS`, `kernel_name`) and the
                        query-free `AttentionPooling`
    attention.py        this front door: every public name of the family, and the registry
                        (`ATTENTIONS`, `make_attention`, `from_config`, `ATTENTION_TYPES`)

`attention_core` imports none of the others; `local_attention` and `pooling` import it; this
module imports all three. A new attention type is a subclass of `attention_core.Attention` (or
of a scoring attention, writing only `score`) in the module of its concept, which says what it
reads from a model config (`Attention.config_fields`) and which sizes it cannot join
(`same_size`, `Attention.config_conflict`), plus one line in `ATTENTIONS` below; that line also
makes it a valid `config.model.attention`, and decoders build it from the config.
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
    "config_conflict",
    "decoder_attentions",
    "from_config",
    "kernel_name",
    "make_attention",
    "masked_softmax",
]

ATTENTION_TYPES: tuple[type[Attention], ...] = (
    AdditiveAttention,
    DotAttention,
    ScaledDotAttention,
    GeneralAttention,
    LocationAttention,
    LocalAttention,
    KernelAttention,
    AttentionPooling,
)

# The registry, name -> (class, fixed fields): `make_attention` builds every name; a decoder
# can use those whose class reads a query (`decoder_attentions`: not 'pooling').
ATTENTIONS: dict[str, tuple[type[Attention], dict[str, Any]]] = {
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


def _entry(name: str) -> tuple[type[Attention], dict[str, Any]]:
    """The registry entry of `name` (any case, '-' or '_'); ValueError for an unknown one."""
    key = name.lower().replace("-", "_")
    if key not in ATTENTIONS:
        raise ValueError(f"Unknown attention {name!r}; choose one of {sorted(ATTENTIONS)}.")
    return ATTENTIONS[key]


def decoder_attentions() -> tuple[str, ...]:
    """The names a decoder can attend with (the valid `config.model.attention` values)."""
    return tuple(name for name, (cls, _) in ATTENTIONS.items() if cls.reads_query)


def make_attention(name: str, *, dtype: Any = None, **kwargs: Any) -> nn.Module:
    """Builds an attention module by name.

    Args:
        name: A name in `ATTENTIONS` ('additive'/'bahdanau'/'mlp', 'dot', 'scaled_dot',
            'general'/'luong', 'location', 'local_m', 'local_p', 'kernel', 'pooling'), in any
            case, with '-' or '_'.
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
    cls, fixed = _entry(name)
    if dtype is not None and "dtype" in cls.__dataclass_fields__:
        kwargs["dtype"] = dtype
    try:
        return cls(**fixed, **kwargs)
    except TypeError as e:
        raise TypeError(f"make_attention({name!r}) -> {cls.__name__}: {e}") from e


def config_conflict(c, query_dim: int, key_dim: int) -> str | None:
    """Why model config c's attention cannot compare decoder queries [B, query_dim] with
    encoder outputs [B, S, key_dim], or None (asked of the registered class)."""
    cls, _ = _entry(c.attention)
    return cls.config_conflict(c.attention, query_dim, key_dim)


def source_positions(c) -> int:
    """Source positions (EOS included) model config c's attention can score; 0 = any (asked
    of the registered class: location attention's fixed number)."""
    cls, _ = _entry(c.attention)
    return cls.source_positions(c)


def from_config(c, query_dim: int, key_dim: int, *, dtype: Any = None) -> nn.Module:
    """Model config c's attention (`c.attention`, with the fields its class reads from c) for
    decoder queries [B, query_dim] over encoder outputs [B, S, key_dim].

    Raises:
        ValueError: For an unknown name, or sizes the attention cannot compare.
    """
    why = config_conflict(c, query_dim, key_dim)
    if why:
        raise ValueError(why)
    cls, _ = _entry(c.attention)
    return make_attention(c.attention, dtype=dtype, **cls.config_fields(c, query_dim))
