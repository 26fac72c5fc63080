"""jaxattn: attention sequence-to-sequence models in JAX/Flax.

The modules import from here for use in other JAX code; training, data, checkpoints and
evaluation live in their own submodules (`jaxattn.train`, `jaxattn.data`, ...).

Every attention module shares one call, so decoders swap them by name (`make_attention`):
``context, weights = attention(query, keys, values=None, mask=None, step=t, cache=cache)``
with query [batch, q_dim], keys [batch, src_len, k_dim], values [batch, src_len, v_dim] (None
= keys), mask [batch, src_len] bool (True = a real token; None = no masking), returning
context [batch, v_dim] and weights [batch, src_len]; ``cache = attention.precompute(keys)``
holds the key-only work, done once per sentence.
"""

from jaxattn.attention import (
    AdditiveAttention,
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
from jaxattn.decoders import BahdanauDecoder, LegacyDecoder, LuongDecoder, PlainDecoder
from jaxattn.encoders import Encoder
from jaxattn.models import Seq2Seq, build_model, default_model_config
from jaxattn.rnn import RNN, GRUCell, LSTMCell

__version__ = "0.1.0"

__all__ = [
    "AdditiveAttention",
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
    "Seq2Seq",
    "build_model",
    "default_model_config",
    "make_attention",
    "masked_softmax",
]
