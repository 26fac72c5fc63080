"""The Transformer family (d2l 11.5-11.7; Vaswani et al. 2017): multi-head attention,
positional encoding, encoder and decoder layers and their stacks, as an encoder and a decoder
of the same protocol as the RNN ones, so any mix of them is a `Seq2Seq`::

    outputs, finals = TransformerEncoder(...)(src, lengths, train=...)   # like the RNN Encoder
    cache = decoder.precompute(keys)            # every layer's cross-attention keys and values
    state = decoder.init_state(memory, steps)   # a key/value cache of `steps` positions
    state, logits, weights = decoder.step(memory, state, prev_tokens, t, train=...)

Decoding a step writes the new position's keys and values at index t of a fixed-size cache
(`TransformerState`, batch first, so beam search reorders it like an RNN state); the
teacher-forced pass runs all positions at once under a causal mask and gives the same logits.

Layers are post-LN (the paper, d2l: x = LN(x + sublayer(x))) or pre-LN (`norm_first`: x = x +
sublayer(LN(x)), with a final LN on the stack), as `torch.nn.TransformerEncoderLayer`. With
`scan_layers` the stack runs under `nn.scan` (one compiled layer, parameters stacked on a
leading layer axis) with the results of the unrolled stack.

Attention views: every `MultiHeadAttention` sows its weights [B, heads, T, S] in the
'intermediates' collection (`Seq2Seq.attention_views`). The weights a decoder step returns
[B, S] (the alignment used for heatmaps, coverage and unknown-word replacement) are one layer's
cross-attention, its heads' mean or one head (`alignment_layer`, `alignment_head`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxattn.model.attention_core import masked_softmax
from jaxattn.model.rnn import compute_dtype, valid_mask

POSITIONAL = ("sinusoidal", "learned")
LN_EPS = 1e-5  # torch.nn.LayerNorm's (flax's default is 1e-6)


# ---------------------------------------------------------------------------------------------
# Multi-head attention and positional encoding (d2l 11.5, 11.6)
# ---------------------------------------------------------------------------------------------


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (d2l 11.5).

    Per head h: softmax(q_h k_h^T / sqrt(d_h)) v_h with q_h, k_h, v_h the query, key and value
    projected to `width / heads` each (one Dense each, split into heads); the heads'
    contexts are concatenated and projected (`out`). As `torch.nn.MultiheadAttention`:
    in_proj_weight rows = the query, key, value kernels transposed; out_proj = `out`.
    """

    heads: int
    width: int  # d_model: heads * head width
    dropout: float = 0.0  # on the attention weights
    use_bias: bool = True
    dtype: Any = None

    def setup(self):
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide the width ({self.width}).")
        dense = dict(use_bias=self.use_bias, dtype=self.dtype)
        self.query = nn.Dense(self.width, **dense)
        self.key = nn.Dense(self.width, **dense)
        self.value = nn.Dense(self.width, **dense)
        self.out = nn.Dense(self.width, **dense)
        self.drop = nn.Dropout(self.dropout)

    def _split(self, x):
        return x.reshape(*x.shape[:-1], self.heads, self.width // self.heads)  # [..., h, d_h]

    def project_kv(self, keys, values=None):
        """Keys and values [B, S, D_k] -> projected, per head: ([B, S, h, d_h], [B, S, h, d_h])."""
        values = keys if values is None else values
        return self._split(self.key(keys)), self._split(self.value(values))

    def __call__(self, query, keys=None, values=None, *, mask=None, kv=None, train=False):
        """Attends from every query position to the keys.

        Args:
            query: [B, T, D_q].
            keys, values: [B, S, D_k] (values None: the keys); or None when `kv` is given.
            mask: Bool, True where a query may attend a key: [B, S] (key padding), [B, T, S]
                (e.g. causal and padding) or None (everywhere).
            kv: `project_kv`'s output, instead of keys and values (a decoder's cache).
            train: Apply dropout to the weights (needs a 'dropout' rng).

        Returns:
            (context [B, T, width], weights [B, heads, T, S] float32).
        """
        k, v = kv if kv is not None else self.project_kv(keys, values)  # [B, S, h, d_h] each
        q = self._split(self.query(query))  # [B, T, h, d_h]
        scores = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])  # [B, h, T, S]
        if mask is not None:
            mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None]  # [B, 1, T|1, S]
        weights = masked_softmax(scores, mask)  # [B, h, T, S] float32
        self.sow("intermediates", "weights", weights)
        dropped = self.drop(weights, deterministic=not train)
        context = jnp.einsum("bhts,bshd->bthd", dropped.astype(v.dtype), v)  # [B, T, h, d_h]
        return self.out(context.reshape(*context.shape[:2], self.width)), weights  # [B, T, D]


def sinusoidal_encoding(positions, width: int):
    """d2l 11.6's P: P[t, 2j] = sin(t / 10000^(2j/d)), P[t, 2j+1] = cos(...); positions [...]
    int -> [..., width] float32."""
    j = jnp.arange(0, width, 2, dtype=jnp.float32)  # [ceil(d/2)]
    angles = positions[..., None].astype(jnp.float32) / jnp.power(10000.0, j / width)
    pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # [..., ceil(d/2), 2]
    return pe.reshape(*positions.shape, -1)[..., :width]


class Embedding(nn.Module):
    """Token embedding * sqrt(width) + positional encoding, then dropout (d2l 11.7)."""

    vocab_size: int
    width: int
    positional: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 256  # learned: the table's size (positions 0 .. max_positions - 1)
    dropout: float = 0.1
    dtype: Any = None
    table: Any = None  # a shared nn.Embed (share_embeddings); None: its own

    def setup(self):
        if self.positional not in POSITIONAL:
            raise ValueError(f"Unknown positional {self.positional!r}; choose one of {POSITIONAL}.")
        if self.table is not None:
            self.embed = self.table
        else:
            self.embed = nn.Embed(self.vocab_size, self.width)
        if self.positional == "learned":
            self.position = nn.Embed(self.max_positions, self.width)
        self.drop = nn.Dropout(self.dropout)

    def check_positions(self, n: int, what: str):
        """ValueError when n positions exceed the learned table; a symbolic n (a width under
        jax.export) is not checked here: the export's callers limit their inputs."""
        if (
            self.positional == "learned"
            and isinstance(n, numbers.Integral)
            and n > self.max_positions
        ):
            raise ValueError(
                f"{what} has {n} positions; this model's learned positional encoding has "
                f"{self.max_positions} (model.max_positions): shorten it, or train with a "
                "larger max_positions or positional='sinusoidal'."
            )

    def __call__(self, tokens, positions, *, train: bool = False):
        """tokens, positions [B, T] (or [B]) int -> [B, T, width] (or [B, width])."""
        x = self.embed(tokens) * math.sqrt(self.width)
        if self.positional == "learned":
            x = x + self.position(positions)
        else:
            x = x + sinusoidal_encoding(positions, self.width)
        x = self.drop(x, deterministic=not train)
        return x if self.dtype is None else x.astype(self.dtype)

    def logits(self, h):
        """Tied output layer: h [..., width] @ embedding^T -> [..., V] float32."""
        return self.embed.attend(h.astype(jnp.float32))


# ---------------------------------------------------------------------------------------------
# Layers: self-attention (+ cross-attention) + feed-forward, each a residual sublayer
# ---------------------------------------------------------------------------------------------


class _Layer(nn.Module):
    """The fields and the residual sublayer both layer kinds share."""

    width: int
    heads: int
    ff_dim: int
    dropout: float = 0.1  # on each sublayer's output and inside the feed-forward
    attention_dropout: float = 0.0  # on the attention weights
    norm_first: bool = False  # pre-LN; False: post-LN (the paper)
    dtype: Any = None

    def _attention(self, name):
        return MultiHeadAttention(
            self.heads, self.width, dropout=self.attention_dropout, dtype=self.dtype, name=name
        )

    def _norm(self, name):
        return nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name=name)

    def _setup_ff(self):
        self.ff_in = nn.Dense(self.ff_dim, dtype=self.dtype)
        self.ff_out = nn.Dense(self.width, dtype=self.dtype)
        self.ff_norm = self._norm("ff_norm")
        self.drop = nn.Dropout(self.dropout)

    def _residual(self, x, norm, sublayer, train):
        """Post-LN: LN(x + drop(f(x))); pre-LN: x + drop(f(LN(x)))."""
        if self.norm_first:
            return x + self.drop(sublayer(norm(x)), deterministic=not train)
        return norm(x + self.drop(sublayer(x), deterministic=not train))

    def _feed_forward(self, x, train):
        def ff(h):  # [B, T, D] -> [B, T, F] -> [B, T, D]
            return self.ff_out(self.drop(nn.relu(self.ff_in(h)), deterministic=not train))

        return self._residual(x, self.ff_norm, ff, train)


class EncoderLayer(_Layer):
    """Self-attention over the source, then feed-forward (torch.nn.TransformerEncoderLayer)."""

    def setup(self):
        self.self_attn = self._attention("self_attn")
        self.self_norm = self._norm("self_norm")
        self._setup_ff()

    def __call__(self, x, mask, *, train: bool = False):
        """x [B, S, D], mask [B, S] bool or None -> [B, S, D]."""
        x = self._residual(
            x, self.self_norm, lambda h: self.self_attn(h, h, mask=mask, train=train)[0], train
        )
        return self._feed_forward(x, train)


class DecoderLayer(_Layer):
    """Masked self-attention, cross-attention on the memory, feed-forward
    (torch.nn.TransformerDecoderLayer). One body serves the parallel pass and the cached step:
    the self-attention reads keys and values `self_kv` built by the caller."""

    def setup(self):
        self.self_attn = self._attention("self_attn")
        self.self_norm = self._norm("self_norm")
        self.cross_attn = self._attention("cross_attn")
        self.cross_norm = self._norm("cross_norm")
        self._setup_ff()

    def cross_kv(self, keys):
        """The cross-attention's projected memory ([B, S, h, d_h], [B, S, h, d_h])."""
        return self.cross_attn.project_kv(keys)

    def self_input(self, x):
        """What the self-attention projects to keys and values: LN(x) pre-LN, else x."""
        return self.self_norm(x) if self.norm_first else x

    def self_kv(self, x):
        return self.self_attn.project_kv(self.self_input(x))

    def __call__(self, x, self_kv, self_mask, cross_kv, cross_mask, *, train: bool = False):
        """x [B, T, D]; self_kv: keys/values [B, T', h, d_h] of the positions x may see, under
        self_mask [B, T, T']; cross_kv [B, S, h, d_h] each under cross_mask [B, S] or None.
        Returns (x [B, T, D], cross-attention weights [B, h, T, S])."""
        x = self._residual(
            x,
            self.self_norm,
            lambda h: self.self_attn(h, kv=self_kv, mask=self_mask, train=train)[0],
            train,
        )
        cross = []

        def attend(h):
            context, weights = self.cross_attn(h, kv=cross_kv, mask=cross_mask, train=train)
            cross.append(weights)
            return context

        x = self._residual(x, self.cross_norm, attend, train)
        return self._feed_forward(x, train), cross[0]


def _width_conflict(c) -> str | None:
    if c.hidden % c.heads:
        return f"heads ({c.heads}) must divide hidden ({c.hidden}), the Transformer's width."
    return None


def _stack_fields(c, num_layers: int) -> dict[str, Any]:
    """The fields both stacks read from model config c."""
    return dict(
        num_layers=num_layers,
        width=c.hidden,
        heads=c.heads,
        ff_dim=c.ff_dim,
        dropout=c.dropout,
        attention_dropout=c.attention_dropout,
        norm_first=c.norm_first,
        positional=c.positional,
        max_positions=c.max_positions,
        scan_layers=c.scan_layers,
        dtype=compute_dtype(c),
    )


class _Stack(nn.Module):
    """What both stacks share: the embedding, `num_layers` layers of `layer_class` (unrolled,
    or one under `nn.scan` with `scan_layers`) and, pre-LN, a final LayerNorm."""

    vocab_size: int = 0
    width: int = 256  # d_model
    heads: int = 4
    ff_dim: int = 1024  # the feed-forward's inner width
    num_layers: int = 6
    dropout: float = 0.1  # on the embeddings, every sublayer's output and in the feed-forward
    attention_dropout: float = 0.0  # on the attention weights
    norm_first: bool = False  # pre-LN; False: post-LN (the paper)
    positional: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 256  # the learned table's size
    scan_layers: bool = False
    dtype: Any = None
    embedding: Any = None  # a shared nn.Embed (share_embeddings); None: its own
    layer_class: ClassVar[type[_Layer]]
    self_attention: ClassVar[bool] = True  # its layers self-attend (AttentionViews)

    @classmethod
    def embedding_width(cls, c) -> int:
        """Its embedding table's width (what a shared table must have): the width."""
        return c.hidden

    def setup(self):
        self.embed = Embedding(
            self.vocab_size,
            self.width,
            self.positional,
            self.max_positions,
            self.dropout,
            self.dtype,
            table=self.embedding,
        )
        fields = dict(
            width=self.width,
            heads=self.heads,
            ff_dim=self.ff_dim,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            norm_first=self.norm_first,
            dtype=self.dtype,
        )
        if self.scan_layers:
            self.layer = self.layer_class(**fields, name="layers")
        else:
            self.layers = [
                self.layer_class(**fields, name=f"layer_{i}") for i in range(self.num_layers)
            ]
        if self.norm_first:
            self.final_norm = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype)

    def _over_layers(self, body, carry, xs=None):
        """Runs body(layer, carry, xs_i) -> (carry, ys_i) through the layers; xs and ys
        leaves have the layer axis second ([B, L, ...], batch first)."""
        if self.scan_layers:
            scan = nn.scan(
                body,
                variable_axes={"params": 0, "intermediates": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=1,
                out_axes=1,
                length=self.num_layers,
            )
            return scan(self.layer, carry, xs)
        ys = []
        for i, layer in enumerate(self.layers):
            carry, y = body(layer, carry, jax.tree.map(lambda a, i=i: a[:, i], xs))
            ys.append(y)
        return carry, jax.tree.map(lambda *a: jnp.stack(a, axis=1), *ys)


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------


class TransformerEncoder(_Stack):
    """Embedding + positional encoding, `num_layers` encoder layers (+ a final LN pre-LN).

    Called like the RNN `Encoder`: ``outputs, finals = encoder(src, lengths, train=...)``,
    outputs [B, S, width] (zero on padding); finals: one carry, the mean of the outputs over
    the real positions ((mean [B, width],)), which an RNN decoder's bridge may start from.
    """

    layer_class: ClassVar[type[_Layer]] = EncoderLayer

    @classmethod
    def from_config(cls, c, vocab_size: int) -> TransformerEncoder:
        """The encoder model config c describes, for a source vocabulary of vocab_size."""
        return cls(vocab_size=vocab_size, **_stack_fields(c, c.encoder_layers))

    @classmethod
    def config_conflict(cls, c) -> str | None:
        """Why model config c cannot build this encoder (a message), or None."""
        return _width_conflict(c)

    @classmethod
    def source_positions(cls, c) -> int:
        """Source positions it can encode: the learned table's size, or 0 (any)."""
        return c.max_positions if c.positional == "learned" else 0

    @property
    def output_dim(self) -> int:
        return self.width

    def __call__(self, src, lengths=None, *, train: bool = False):
        """src [B, S] int, lengths [B] or None (all real) -> (outputs [B, S, D], finals)."""
        batch, width = src.shape
        self.embed.check_positions(width, "The source")
        positions = jnp.broadcast_to(jnp.arange(width), (batch, width))
        x = self.embed(src, positions, train=train)  # [B, S, D]
        mask = None if lengths is None else valid_mask(lengths, width)  # [B, S]

        def body(layer, x, _):
            return layer(x, mask, train=train), None

        x, _ = self._over_layers(body, x)
        if self.norm_first:
            x = self.final_norm(x)
        if mask is None:
            mean = x.mean(axis=1)
        else:
            x = jnp.where(mask[..., None], x, 0.0)
            mean = x.sum(axis=1) / jnp.maximum(mask.sum(axis=1, keepdims=True), 1)
        return x, ((mean.astype(jnp.float32),),)


# ---------------------------------------------------------------------------------------------
# The decoder
# ---------------------------------------------------------------------------------------------


@struct.dataclass
class TransformerState:
    """The decoder's key/value cache: every layer's self-attention keys and values of the
    positions decoded so far, written at the step index (position t holds step t's)."""

    keys: jax.Array  # [B, L, T, h, d_h]; T = the steps the cache was made for
    values: jax.Array  # [B, L, T, h, d_h]


class TransformerDecoder(_Stack):
    """Embedding + positional encoding, `num_layers` decoder layers (+ a final LN pre-LN),
    output projection (or the embedding, tied). A decoder of the `Decoder` protocol
    (`precompute`, `init_state`, `step`, `__call__`), over any encoder's outputs."""

    layer_class: ClassVar[type[_Layer]] = DecoderLayer
    tie_embeddings: bool = False  # the output layer is the embedding (transposed)
    alignment_layer: int = -1  # the cross-attention a step returns as its weights: this layer
    alignment_head: int = -1  # ... this head; -1: the mean of the heads
    attention: Any = None  # unused: cross-attention is the layers' (the Decoder protocol's)
    needs_attention: ClassVar[bool] = False

    # ------------------------------------------------- the registry entry: from a model config
    @classmethod
    def query_size(cls, c) -> int:
        return c.hidden

    @classmethod
    def config_conflict(cls, c, key_dim: int) -> str | None:
        del key_dim  # the cross-attention projects any key width
        if _width_conflict(c):
            return _width_conflict(c)
        if c.alignment_layer >= c.decoder_layers:
            return (
                f"alignment_layer {c.alignment_layer} is not a layer of the "
                f"{c.decoder_layers}-layer decoder (0..{c.decoder_layers - 1}, or -1 for the last)."
            )
        if not -1 <= c.alignment_head < c.heads:
            return (
                f"alignment_head {c.alignment_head} is not one of the {c.heads} heads "
                f"(0..{c.heads - 1}, or -1 for their mean)."
            )
        return None

    @classmethod
    def from_config(cls, c, vocab_size: int, key_dim: int) -> TransformerDecoder:
        """The decoder model config c describes (over encoder outputs of any width)."""
        del key_dim
        return cls(
            vocab_size=vocab_size,
            tie_embeddings=c.tie_embeddings,
            alignment_layer=c.alignment_layer,
            alignment_head=c.alignment_head,
            **_stack_fields(c, c.decoder_layers),
        )

    @classmethod
    def target_positions(cls, c) -> int:
        """Decoding steps it can take: the learned table's size, or 0 (any)."""
        return c.max_positions if c.positional == "learned" else 0

    def setup(self):
        super().setup()
        if not self.tie_embeddings:
            self.out = nn.Dense(self.vocab_size, dtype=self.dtype)

    @property
    def _head_dim(self) -> int:
        return self.width // self.heads

    def precompute(self, keys):
        """Every layer's cross-attention keys and values of the memory, once per sentence:
        ([B, L, S, h, d_h], [B, L, S, h, d_h])."""
        _, kv = self._over_layers(lambda layer, c, _: (c, layer.cross_kv(keys)), None)
        return kv

    def init_state(self, memory, steps: int | None = None) -> TransformerState:
        """An empty cache for `steps` decoding steps (search code passes its max_len)."""
        if steps is None:
            raise ValueError(
                "The Transformer decoder's cache has a fixed size: init_state(memory, steps) "
                "needs the number of decoding steps."
            )
        self.embed.check_positions(steps, "Decoding")
        batch = memory.keys.shape[0]
        shape = (batch, self.num_layers, steps, self.heads, self._head_dim)
        dtype = self.dtype or jnp.float32
        return TransformerState(keys=jnp.zeros(shape, dtype), values=jnp.zeros(shape, dtype))

    def _alignment(self, cross):
        """cross [B, L, h, T, S] -> the step's weights [B, T, S] float32."""
        layer = cross[:, self.alignment_layer]  # [B, h, T, S]
        if self.alignment_head < 0:
            return layer.mean(axis=1)
        return layer[:, self.alignment_head]

    def _logits(self, x):
        if self.norm_first:
            x = self.final_norm(x)
        if self.tie_embeddings:
            return self.embed.logits(x)
        return self.out(x).astype(jnp.float32)  # [B, (T,) V]

    def step(self, memory, state: TransformerState, prev_tokens, t, *, train: bool = False):
        """One step: (state, prev_tokens [B], t int or [B]) -> (state, logits [B, V], weights
        [B, S]); writes position t's keys and values into the cache."""
        batch, steps = state.keys.shape[0], state.keys.shape[2]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), (batch,))  # [B]
        x = self.embed(prev_tokens[:, None], t[:, None], train=train)  # [B, 1, D]
        write = (jnp.arange(steps) == t[:, None])[:, :, None, None]  # [B, T, 1, 1]
        seen = (jnp.arange(steps) <= t[:, None])[:, None, :]  # [B, 1, T]

        def body(layer, x, xs):
            cache_k, cache_v, cross_k, cross_v = xs  # [B, T, h, d_h] x2, [B, S, h, d_h] x2
            k, v = layer.self_kv(x)  # [B, 1, h, d_h]
            cache_k = jnp.where(write, k.astype(cache_k.dtype), cache_k)
            cache_v = jnp.where(write, v.astype(cache_v.dtype), cache_v)
            x, cross = layer(
                x, (cache_k, cache_v), seen, (cross_k, cross_v), memory.mask, train=train
            )
            return x, (cache_k, cache_v, cross)

        cross_k, cross_v = memory.cache
        x, (keys, values, cross) = self._over_layers(
            body, x, (state.keys, state.values, cross_k, cross_v)
        )
        weights = self._alignment(cross)[:, 0]  # [B, S]
        return TransformerState(keys=keys, values=values), self._logits(x[:, 0]), weights

    def __call__(self, memory, targets, *, bos_id: int, teacher_forcing=None, train=False):
        """Decodes len(targets) steps: all at once under a causal mask when always teacher
        forced (teacher_forcing None), else step by step with the cache (scheduled sampling,
        free running). Returns logits [B, T, V], weights [B, T, S], the final state (None for
        the parallel pass)."""
        batch, steps = targets.shape
        bos = jnp.full((batch, 1), bos_id, targets.dtype)
        gold_inputs = jnp.concatenate([bos, targets[:, :-1]], axis=1)  # [B, T]
        if teacher_forcing is not None:
            from jaxattn.model.decoders import step_loop  # (decoders imports this module)

            state0 = self.init_state(memory, steps)
            return step_loop(self, memory, state0, gold_inputs, teacher_forcing, train=train)
        self.embed.check_positions(steps, "The target")
        positions = jnp.broadcast_to(jnp.arange(steps), (batch, steps))
        x = self.embed(gold_inputs, positions, train=train)  # [B, T, D]
        causal = jnp.tril(jnp.ones((steps, steps), bool))[None]  # [1, T, T]

        def body(layer, x, xs):
            cross_k, cross_v = xs
            x, cross = layer(
                x, layer.self_kv(x), causal, (cross_k, cross_v), memory.mask, train=train
            )
            return x, cross

        x, cross = self._over_layers(body, x, memory.cache)  # cross [B, L, h, T, S]
        return self._logits(x), self._alignment(cross), None
