"""jaxattn: attention sequence-to-sequence models in JAX/Flax.

The modules import from here for use in other JAX code, with the decoding entry points
(`decode`, `greedy_search`, `beam_search`, `SearchResult`) and the `Translator` of a trained
run; training, data, checkpoints and evaluation live in their own submodules
(`jaxattn.training.loop`,
`jaxattn.data`, ...).

Every attention module shares one call, so decoders swap them by name (`make_attention`):
``context, weights = attention(query, keys, values=None, mask=None, step=t, cache=cache)``
with query [B, D_q], keys [B, S, D_k], values [B, S, D_v] (None = keys), mask [B, S] bool
(True = a real token; None = no masking), returning context [B, D_v] and weights [B, S];
``cache = attention.precompute(keys)`` holds the key-only work, done once per sentence.

`Translator` is imported on first use (PEP 562 module `__getattr__`): it needs Orbax and the
data pipeline, which would double the time of `import jaxattn` for users of the modules alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from jaxattn.config import default_model_config
from jaxattn.model.attention import (
    AdditiveAttention,
    Attention,
    AttentionPooling,
    DotAttention,
    GeneralAttention,
    KernelAttention,
    LocalAttention,
    LocationAttention,
    ScaledDotAttention,
    make_attention,
    masked_softmax,
)
from jaxattn.model.decoders import BahdanauDecoder, LegacyDecoder, LuongDecoder, PlainDecoder
from jaxattn.model.encoders import Encoder
from jaxattn.model.rnn import RNN, GRUCell, LSTMCell
from jaxattn.model.seq2seq import Seq2Seq, build_model
from jaxattn.search import SearchResult, beam_search, decode, greedy_search

if TYPE_CHECKING:
    from jaxattn.inference.translator import Translator

__version__ = "0.1.0"

# Heavy names, imported by `__getattr__` on first access: name -> the module defining it.
_LAZY = {"Translator": "jaxattn.inference.translator"}

__all__ = [
    "AdditiveAttention",
    "Attention",
    "AttentionPooling",
    "BahdanauDecoder",
    "DotAttention",
    "Encoder",
    "GRUCell",
    "GeneralAttention",
    "KernelAttention",
    "LSTMCell",
    "LegacyDecoder",
    "LocalAttention",
    "LocationAttention",
    "LuongDecoder",
    "PlainDecoder",
    "RNN",
    "ScaledDotAttention",
    "SearchResult",
    "Seq2Seq",
    "Translator",
    "beam_search",
    "build_model",
    "decode",
    "default_model_config",
    "greedy_search",
    "make_attention",
    "masked_softmax",
]


def __getattr__(name: str):
    """PEP 562: import a heavy name (`_LAZY`) on first access and keep it."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
